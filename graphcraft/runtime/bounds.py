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

Cost bound: `max_cost_usd` (GRAPHCRAFT_MAX_COST_USD, 0 = none) against the usage's `cost_usd`,
which `UsageCallback` prices from prompt and completion tokens (GRAPHCRAFT_PROMPT_COST_PER_MTOK /
GRAPHCRAFT_COMPLETION_COST_PER_MTOK); "max_cost_usd" is then the stop reason.

Whole-run budgets: a node that runs another graph as a subgraph wraps the call in
`within_run(state["usage"])`, so the subgraph's checks count what the enclosing run already spent
and the budgets hold for the run as a whole, not per graph.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Final

from typing_extensions import TypedDict

from graphcraft.config import Settings, get_settings
from graphcraft.runtime.accounting import Usage, add_usage, total_tokens

STARTED_AT: Final = "started_at"  # the state key holding the run's start (epoch seconds)

# What the runs enclosing the current one (a subgraph's parents) had spent when they started it.
# A context variable: LangGraph runs each node in a copy of the caller's context, so a subgraph's
# nodes see it and nothing outside the `within_run` block does.
_enclosing: ContextVar[Usage | None] = ContextVar("graphcraft_enclosing_usage", default=None)


@contextmanager
def within_run(spent: Usage | None) -> Iterator[None]:
    """Run a subgraph as part of a run that has already spent `spent`: while the block runs, every
    `Bounds` check adds it (and what any outer run spent), so budgets hold for the whole run.

        with within_run(state["usage"]):
            out = subgraph.invoke({"question": question}, config=config)
    """
    token = _enclosing.set(add_usage(_enclosing.get(), spent))
    try:
        yield
    finally:
        _enclosing.reset(token)


def enclosing_usage() -> Usage | None:
    """What the enclosing runs had spent (None outside `within_run`)."""
    return _enclosing.get()


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
    max_cost_usd: float = 0.0  # 0 = no cost budget

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Bounds:
        """Settings' bounds, with any of max_iterations / max_llm_calls / token_budget / max_seconds /
        max_cost_usd overridden."""
        s = settings or get_settings()
        values: dict[str, Any] = {
            "max_iterations": s.max_iterations,
            "max_llm_calls": s.max_llm_calls,
            "token_budget": s.token_budget,
            "max_seconds": s.max_seconds,
            "max_cost_usd": s.max_cost_usd,
        }
        values.update({k: v for k, v in overrides.items() if k in values and v is not None})
        return cls(**values)

    def exhausted(
        self, usage: Usage | None, iterations: int | None = None, *, started_at: float | None = None
    ) -> str | None:
        """The name of the first bound reached, or None if the loop may continue.

        `started_at` is the run's start (the state's "started_at"); without it time is not checked.
        Inside `within_run` (a subgraph) the enclosing run's spending counts too.
        """
        usage = add_usage(_enclosing.get(), usage)
        if iterations is not None and iterations >= self.max_iterations:
            return "max_iterations"
        if usage.get("llm_calls", 0) >= self.max_llm_calls:
            return "max_llm_calls"
        if total_tokens(usage) >= self.token_budget:
            return "token_budget"
        if self.max_cost_usd > 0 and usage.get("cost_usd", 0.0) >= self.max_cost_usd:
            return "max_cost_usd"
        if out_of_time({STARTED_AT: started_at}, self.max_seconds):
            return "max_seconds"
        return None

    def reached(self, state: Mapping[str, Any], iterations: int | None = None) -> str | None:
        """`exhausted` for a graph state: its usage and start time, and the given iteration count."""
        return self.exhausted(state.get("usage"), iterations, started_at=state.get(STARTED_AT))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
