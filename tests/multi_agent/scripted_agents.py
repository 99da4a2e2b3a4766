"""Scripted agents for the multi-agent tests: each agent has its own fake chat model."""

from __future__ import annotations

from typing import Any

from graphcraft.chains.negotiate import AgentSpec
from graphcraft.testing import ScriptedChatModel


def pos(
    stance: str, confidence: float = 0.8, rationale: str | None = None, ranking: list[str] | None = None
) -> dict[str, Any]:
    """A structured position reply."""
    out: dict[str, Any] = {
        "stance": stance,
        "confidence": confidence,
        "rationale": rationale or f"reasons for {stance}",
    }
    if ranking is not None:
        out["ranking"] = ranking
    return out


def agent(name: str, *replies: Any, latency_s: float = 0.0, **spec: Any) -> AgentSpec:
    """An agent whose model replies in order, repeating its last reply (a stubborn agent)."""
    return AgentSpec(
        name=name, model=ScriptedChatModel(script=list(replies), repeat_last=True, latency_s=latency_s), **spec
    )


def prompts(spec: AgentSpec) -> list[str]:
    """The text of every prompt the agent's model received, in order."""
    return [call.text for call in spec.model.calls]  # type: ignore[union-attr]
