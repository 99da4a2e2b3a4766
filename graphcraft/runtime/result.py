"""The one result shape every graph returns: answer, sources with provenance, and a trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Required

from langchain_core.documents import Document
from typing_extensions import TypedDict

from graphcraft.runtime.accounting import Usage, empty_usage
from graphcraft.runtime.tokens import token_counter_name


class InputState(TypedDict):
    """What a user gives every graph: the question (or task)."""

    question: str


class OutputState(TypedDict, total=False):
    """What every graph returns, the `ask` shape: the question, answer, sources with provenance, trace."""

    question: Required[str]
    answer: str
    sources: list[dict[str, Any]]
    trace: dict[str, Any]


def source_dict(doc: Document, text: str | None = None) -> dict[str, Any]:
    """Provenance of one retrieved chunk: source, chunk_id, page, score, text (+ bbox/modality if any)."""
    meta = doc.metadata
    out: dict[str, Any] = {
        "source": meta.get("source", ""),
        "chunk_id": meta.get("chunk_id", ""),
        "page": meta.get("page"),
        "score": meta.get("score"),
        "text": text if text is not None else doc.page_content,
    }
    for extra in ("bbox", "modality", "section"):
        if meta.get(extra) is not None and (extra != "modality" or meta[extra] != "text"):
            out[extra] = meta[extra]
    return out


def usage_trace(usage: Usage | None) -> dict[str, Any]:
    """LLM calls, tokens, cost, and how structured outputs went (calls, repairs, deterministic fallbacks).
    cache_hits: replies served by the LLM response cache, which cost no call and no tokens."""
    usage = usage or empty_usage()
    return {
        "llm_calls": int(usage.get("llm_calls", 0)),
        "cache_hits": int(usage.get("cache_hits", 0)),
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
        "cost": float(usage.get("cost_usd", 0.0)),  # estimated USD
        "token_counter": token_counter_name(),
        "structured_outputs": {
            "calls": int(usage.get("structured_calls", 0)),
            "repairs": int(usage.get("structured_repairs", 0)),
            "fallbacks": int(usage.get("structured_fallbacks", 0)),
        },
    }


def trace_usage(trace: Mapping[str, Any]) -> Usage:
    """A finished graph's usage read back from its trace: what a graph that runs another as a step adds up."""
    structured = trace.get("structured_outputs") or {}
    return Usage(
        llm_calls=int(trace.get("llm_calls", 0)),
        cache_hits=int(trace.get("cache_hits", 0)),
        prompt_tokens=int(trace.get("prompt_tokens", 0)),
        completion_tokens=int(trace.get("completion_tokens", 0)),
        cost_usd=float(trace.get("cost", 0.0)),
        structured_calls=int(structured.get("calls", 0)),
        structured_repairs=int(structured.get("repairs", 0)),
        structured_fallbacks=int(structured.get("fallbacks", 0)),
    )


TRACE_KEYS = (
    "graph",
    "action",
    "iterations",
    "llm_calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "steps",
    "stop_reason",
    "structured_outputs",
)
"""The keys every graph's trace has (README: "The trace"); a graph may add its own after them."""


def make_trace(
    graph: str,
    state: Mapping[str, Any],
    *,
    action: str | None = None,
    stop_reason: str | None = None,
    iterations: int | None = None,
    steps: list[dict[str, Any]] | None = None,
    usage: Usage | None = None,
    **details: Any,
) -> dict[str, Any]:
    """The one trace builder: the TRACE_KEYS, then the graph's own details.

    action: the decision the graph took (CRAG's correct/ambiguous/incorrect, a route, a verdict).
    stop_reason: the bound that ended the run (max_iterations, max_llm_calls, token_budget,
    max_seconds, or a graph's own such as max_tool_calls), None when the graph finished by itself.
    iterations / steps / usage default to the state's "iterations", "steps" and "usage".
    """
    return {
        "graph": graph,
        "action": action,
        "iterations": int(state.get("iterations", 0) if iterations is None else iterations),
        **usage_trace(usage if usage is not None else state.get("usage")),
        "steps": list(state.get("steps", []) if steps is None else steps),
        "stop_reason": stop_reason,
        **details,
    }


def result_of(question: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The public JSON shape: {"question", "answer", "sources", "trace"}."""
    return {
        "question": question,
        "answer": state.get("answer", ""),
        "sources": list(state.get("sources", [])),
        "trace": dict(state.get("trace", {})),
    }
