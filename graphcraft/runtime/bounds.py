"""Loop bounds that agent graphs check in their routing functions, and the trace they return.

A `Bounds` is resolved once per build from Settings and keyword options; a graph state carries
its `Usage` (reduced with `add_usage`) and an iteration counter, and `Bounds.exhausted` says
which bound, if any, ends the loop. The reason goes into the trace, so a stopped run explains
itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphcraft.config import Settings, get_settings
from graphcraft.runtime.accounting import Usage, total_tokens
from graphcraft.runtime.result import usage_trace


@dataclass(frozen=True)
class Bounds:
    max_iterations: int = 3
    max_llm_calls: int = 20
    token_budget: int = 20_000

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> "Bounds":
        """Settings' bounds, with any of max_iterations / max_llm_calls / token_budget overridden."""
        s = settings or get_settings()
        values = {"max_iterations": s.max_iterations, "max_llm_calls": s.max_llm_calls, "token_budget": s.token_budget}
        values.update({k: v for k, v in overrides.items() if k in values and v is not None})
        return cls(**values)

    def exhausted(self, usage: Usage | None, iterations: int | None = None) -> str | None:
        """The name of the first bound reached, or None if the loop may continue."""
        usage = usage or {}
        if iterations is not None and iterations >= self.max_iterations:
            return "max_iterations"
        if usage.get("llm_calls", 0) >= self.max_llm_calls:
            return "max_llm_calls"
        if total_tokens(usage) >= self.token_budget:
            return "token_budget"
        return None

    def as_dict(self) -> dict[str, int]:
        return {"max_iterations": self.max_iterations, "max_llm_calls": self.max_llm_calls, "token_budget": self.token_budget}


def make_trace(graph: str, usage: Usage | None, iterations: int, **decisions: Any) -> dict[str, Any]:
    """The trace every graph returns: graph, iterations, LLM calls and tokens, plus its decisions."""
    return {"graph": graph, "iterations": iterations, **usage_trace(usage), **decisions}
