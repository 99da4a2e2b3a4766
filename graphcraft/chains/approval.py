"""Human in the loop: a person approves, edits or rejects what a graph is about to do.

A node that needs a decision calls `ask_person(payload)`, which pauses the run with LangGraph's
`interrupt` (the run must have a checkpointer and a thread) and returns the person's `Decision`
when the run is resumed with ``Command(resume=decision)``. Payloads are plain JSON so that any
client (the CLI, a script, a LangGraph Server SDK client) can show them:
``{"kind": "plan" | "tool_call" | "final", "question": ..., ..., "choices": [...]}``.

LangGraph re-executes an interrupted node from its start when the run resumes, so a node that
asks must do nothing with side effects before asking: the graphs keep each question in its own
node, ahead of the work it guards.

A decision is one of:
- ``"approve"`` (or ``True``, ``{"action": "approve"}``);
- ``{"action": "edit", "value": ...}``: the edited plan (a list of steps), tool arguments (an
  object) or final answer (text); "plan", "args" and "answer" are accepted for "value";
- ``"reject"``, ``"reject: reason"`` (or ``False``, ``{"action": "reject", "reason": ...}``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.types import interrupt

from graphcraft.errors import GraphcraftError

Action = Literal["approve", "edit", "reject"]
CHOICES: list[str] = ["approve", "edit", "reject"]
VALUE_KEYS = ("value", "plan", "args", "answer")
SENSITIVE_TOOLS = ("write_file", "python")  # what approve_tools="sensitive" means: tools that change things
_APPROVE = {"approve", "approved", "yes", "y", "ok", "a"}
_REJECT = {"reject", "rejected", "no", "n", "r"}


class ApprovalError(GraphcraftError):
    """A decision that is not approve, edit or reject."""


@dataclass(frozen=True)
class Decision:
    """What a person decided at an interrupt."""

    action: Action
    value: Any = None  # the edited plan, arguments or answer
    reason: str = ""  # why a reject was rejected

    def record(self) -> dict[str, Any]:
        """The decision as the trace shows it (the edited value is shown by the graph itself)."""
        return {"decision": self.action, **({"reason": self.reason} if self.reason else {})}


def parse_decision(raw: Any) -> Decision:
    """A Decision from what a person or client sent; a one-line ApprovalError for anything else."""
    if isinstance(raw, Decision):
        return raw
    if isinstance(raw, bool):
        return Decision("approve" if raw else "reject")
    if isinstance(raw, str):
        word, _, reason = raw.partition(":")
        key = word.strip().lower()
        if key in _APPROVE and not reason:
            return Decision("approve")
        if key in _REJECT:
            return Decision("reject", reason=reason.strip())
    if isinstance(raw, Mapping):
        action = str(raw.get("action", "")).strip().lower()
        if action in _APPROVE:
            return Decision("approve")
        if action in _REJECT:
            return Decision("reject", reason=str(raw.get("reason") or "").strip())
        given = [k for k in VALUE_KEYS if k in raw]
        if action == "edit" and given:
            return Decision("edit", value=raw[given[0]])
    raise ApprovalError(
        f"unknown decision {str(raw)[:80]!r}: send 'approve', 'reject: <reason>' or "
        '{"action": "edit", "value": <the edited plan, arguments or answer>}'
    )


def ask_person(payload: dict[str, Any]) -> Decision:
    """Pause the run with `payload` (plain JSON) and return the decision it is resumed with."""
    return parse_decision(interrupt({**payload, "choices": CHOICES}))


def tool_names(approve_tools: Any) -> tuple[str, ...]:
    """approve_tools as a tuple of names, from a list or one comma-separated string ("sensitive,shell")."""
    names = approve_tools.split(",") if isinstance(approve_tools, str) else list(approve_tools or ())
    return tuple(n for n in (str(n).strip() for n in names) if n)


def sensitive(approve_tools: Any) -> set[str]:
    """The tool names that need approval: a list of names, where "sensitive" stands for SENSITIVE_TOOLS."""
    out: set[str] = set()
    for name in tool_names(approve_tools):
        out.update(SENSITIVE_TOOLS if name == "sensitive" else [name])
    return out


def rejection_answer(what: str, reason: str) -> str:
    """The answer of a run a person stopped."""
    return f"Stopped: the reviewer rejected {what}" + (f" ({reason})." if reason else ".")


def resume_clock(state: Mapping[str, Any]) -> dict[str, Any]:
    """Move the run's clock (started_at) forward by the time the run waited for a person since
    `asked_at`, so a slow reviewer does not use up max_seconds; nothing when either is unknown."""
    started, asked = state.get("started_at"), state.get("asked_at")
    if started is None or asked is None:
        return {}
    return {"started_at": float(started) + max(0.0, time.time() - float(asked)), "asked_at": time.time()}


def after_plan_review(state: Mapping[str, Any], max_edits: int) -> str:
    """What a plan review decided: "reject" (end the run), "again" (an edit, shown again while edits are
    left: a person who keeps editing cannot loop forever) or "proceed" (run the plan)."""
    decision = state["approval"][-1]["decision"] if state.get("approval") else "approve"
    if decision == "reject":
        return "reject"
    if decision == "edit" and state.get("plan_edits", 0) < max_edits:
        return "again"
    return "proceed"


def ask_plan_review(graph: str, state: Mapping[str, Any], max_edits: int) -> Decision:
    """Pause for a person to review the plan in `state` (payload kind "plan", with the edits left and the
    reason an earlier edit was not used); returns their decision once the run is resumed."""
    payload: dict[str, Any] = {
        "kind": "plan",
        "graph": graph,
        "question": state["question"],
        "plan": state.get("plan_steps", []),
        "edits_left": max(0, max_edits - state.get("plan_edits", 0)),
    }
    if state.get("review_error"):
        payload["error"] = state["review_error"]
    return ask_person(payload)
