"""Loop bounds that every graph checks in its routing functions, and the start of a run (its clock).

A `Bounds` comes from the run's Settings (`Context.bounds`); a graph state carries
its `Usage` (reduced with `add_usage`), an iteration counter and the run's start time, and
`Bounds.exhausted` says which bound, if any, ends the loop. The reason goes into the trace, so
a stopped run explains itself.

Wall-clock bound: the first node of a run returns `start_clock()` (``{"started_at": <epoch
seconds>}``), the State declares ``started_at: float``, and routing functions pass
the state to `Bounds.reached` (or ``started_at=...`` to `Bounds.exhausted`, or call `out_of_time`
directly), which then returns "max_seconds" once `max_seconds` have passed. Epoch seconds, not a
monotonic clock, because the state may be checkpointed and resumed in another process. The
bound is checked between steps: a model call already running is bounded by the model's own
timeout, not interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from typing_extensions import TypedDict

from graphcraft.config import Settings, get_settings
from graphcraft.runtime.accounting import Usage, total_tokens

STARTED_AT: Final = "started_at"  # the state key holding the run's start (epoch seconds)


class Clock(TypedDict, total=False):
    """The wall-clock part of a state update: `started_at` from the run's first node, empty after it."""

    started_at: float


def start_clock() -> Clock:
    """The state update that starts a run's wall clock; returned by the run's first node."""
    return {STARTED_AT: time.time()}


def fresh_run(**channels: Any) -> dict[str, Any]:
    """The update a run's first node returns: the clock started, no usage, no steps, no answer yet.

    Channels without reducers keep their value on a thread between runs (Studio, LangGraph
    Server), so a second question must reset them; `channels` are the graph's own to reset.
    """
    from graphcraft.runtime.accounting import empty_usage

    return {**start_clock(), "usage": empty_usage(), "steps": [], "answer": "", "sources": [], "trace": {}, **channels}


def elapsed(state: Mapping[str, Any]) -> float:
    """Seconds since the run started (0.0 if the clock was never started)."""
    started = state.get(STARTED_AT)
    return max(0.0, time.time() - float(started)) if started is not None else 0.0


def out_of_time(state: Mapping[str, Any], max_seconds: float) -> bool:
    """True once the run has used `max_seconds` of wall-clock time."""
    return state.get(STARTED_AT) is not None and elapsed(state) >= max_seconds


@dataclass(frozen=True)
class Bounds:
    max_iterations: int = 3
    max_llm_calls: int = 20
    token_budget: int = 20_000
    max_seconds: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Bounds:
        """Settings' bounds, with any of max_iterations / max_llm_calls / token_budget / max_seconds overridden."""
        s = settings or get_settings()
        values: dict[str, Any] = {
            "max_iterations": s.max_iterations,
            "max_llm_calls": s.max_llm_calls,
            "token_budget": s.token_budget,
            "max_seconds": s.max_seconds,
        }
        values.update({k: v for k, v in overrides.items() if k in values and v is not None})
        return cls(**values)

    def exhausted(
        self, usage: Usage | None, iterations: int | None = None, *, started_at: float | None = None
    ) -> str | None:
        """The name of the first bound reached, or None if the loop may continue.

        `started_at` is the run's start (the state's "started_at"); without it time is not checked.
        """
        usage = usage or {}
        if iterations is not None and iterations >= self.max_iterations:
            return "max_iterations"
        if usage.get("llm_calls", 0) >= self.max_llm_calls:
            return "max_llm_calls"
        if total_tokens(usage) >= self.token_budget:
            return "token_budget"
        if out_of_time({STARTED_AT: started_at}, self.max_seconds):
            return "max_seconds"
        return None

    def reached(self, state: Mapping[str, Any], iterations: int | None = None) -> str | None:
        """`exhausted` for a graph state: its usage and start time, and the given iteration count."""
        return self.exhausted(state.get("usage"), iterations, started_at=state.get(STARTED_AT))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
