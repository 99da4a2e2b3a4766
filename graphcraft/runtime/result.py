"""The one result shape every graph returns: answer, sources with provenance, and a trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document

from graphcraft.runtime.accounting import Usage, empty_usage
from graphcraft.runtime.tokens import token_counter_name


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
    """LLM calls, tokens, cost, and how structured outputs went (calls, repairs, deterministic fallbacks)."""
    usage = usage or empty_usage()
    return {
        "llm_calls": int(usage.get("llm_calls", 0)),
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
        "cost_usd": float(usage.get("cost_usd", 0.0)),
        "token_counter": token_counter_name(),
        "structured_outputs": {
            "calls": int(usage.get("structured_calls", 0)),
            "repairs": int(usage.get("structured_repairs", 0)),
            "fallbacks": int(usage.get("structured_fallbacks", 0)),
        },
    }


def make_trace(graph: str, state: Mapping[str, Any], **decisions: Any) -> dict[str, Any]:
    """graph, iterations, LLM calls and tokens (from the state's usage), plus the graph's decisions."""
    return {
        "graph": graph,
        "iterations": int(state.get("iterations", 0)),
        **usage_trace(state.get("usage")),
        **decisions,
    }


def result_of(question: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The public JSON shape: {"question", "answer", "sources", "trace"}."""
    return {
        "question": question,
        "answer": state.get("answer", ""),
        "sources": list(state.get("sources", [])),
        "trace": dict(state.get("trace", {})),
    }
