"""Query classification for adaptive RAG: no_retrieval / single_hop / multi_hop / overview.

Adaptive-RAG (Jeong et al. 2024) routes each query by its complexity. The paper trains a small
classifier; here two strategies stand behind `classify_query`:

- local: cheap signals, in order: an arithmetic expression, or a question far from everything in
  the store (a quick vector probe's best cosine) -> no_retrieval; an overview cue ("summarise",
  "describe", "how is X involved") -> overview; a bridge phrase naming an entity only by a
  relation ("the district where ...") -> multi_hop; a flat similarity spread over many documents
  for an open question -> overview; otherwise single_hop. Every signal is returned for the trace.
- llm: one structured call; a malformed reply falls back to the local class (recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from graphcraft.chains.question import QuestionSignals, question_signals
from graphcraft.models import structured_call
from graphcraft.runtime.accounting import Usage, empty_usage

QueryClass = Literal["no_retrieval", "single_hop", "multi_hop", "overview"]
CLASSES: tuple[str, ...] = ("no_retrieval", "single_hop", "multi_hop", "overview")
UNRELATED_BELOW = 0.33  # best query-chunk cosine under which the store is judged irrelevant (MiniLM)


@dataclass
class Classification:
    kind: QueryClass
    strategy: str
    reasons: list[str]
    signals: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=empty_usage)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "strategy": self.strategy, "reasons": self.reasons, "signals": self.signals}


def probe_store(store: Any, question: str, k: int = 8) -> dict[str, Any]:
    """A quick vector probe: best cosine, its lead over the rest (spread) and distinct sources."""
    if store is None or len(store) == 0:
        return {"max_sim": 0.0, "spread": 0.0, "sources": 0}
    hits = store.search_by_vector(store.embeddings.embed_query(question), k)
    sims = np.array([score for _, score in hits], dtype=np.float32)
    sources = {doc.metadata.get("source") for doc, _ in hits[:5]}
    return {
        "max_sim": round(float(sims[0]), 3),
        "spread": round(float(sims[0] - sims[1:].mean()) if len(sims) > 1 else 0.0, 3),
        "sources": len(sources),
    }


def classify_local(
    signals: QuestionSignals, probe: dict[str, Any] | None = None, unrelated_below: float = UNRELATED_BELOW
) -> Classification:
    """The class from cheap signals (see module docstring); reasons say which rule fired."""
    info = {**signals.as_dict(), **({"probe": probe} if probe else {})}

    def result(kind: QueryClass, reason: str) -> Classification:
        return Classification(kind=kind, strategy="local", reasons=[reason], signals=info)

    if signals.arithmetic:
        return result("no_retrieval", f"arithmetic: {signals.arithmetic}")
    if probe is not None and probe["max_sim"] < unrelated_below:
        return result(
            "no_retrieval", f"unrelated to the store (best similarity {probe['max_sim']:.2f} < {unrelated_below})"
        )
    if signals.overview_cue:
        return result("overview", f"overview cue: {signals.overview_cue!r}")
    if signals.bridges:
        return result("multi_hop", f"bridge entity: {signals.bridges[0]!r}")
    if probe is not None and signals.answer_type is None and probe["sources"] >= 4 and probe["spread"] < 0.05:
        return result("overview", f"open question, flat similarity over {probe['sources']} documents")
    return result("single_hop", f"one fact asked ({signals.answer_type or 'open'} answer), no bridge or overview cue")


class _QueryKind(BaseModel):
    kind: QueryClass = Field(
        description="no_retrieval: general knowledge or arithmetic; single_hop: one fact from one document; "
        "multi_hop: needs facts chained across documents; overview: a broad summary."
    )
    reason: str = Field(default="", max_length=160, description="One short sentence.")


CLASSIFY_PROMPT = (
    "Classify the question for a retrieval system over a private document collection.\n"
    "- no_retrieval: arithmetic or general knowledge that needs no documents\n"
    "- single_hop: one fact that one passage states\n"
    '- multi_hop: an entity is described only through another fact (e.g. "the district where X is based"), '
    "so two lookups are chained\n"
    "- overview: a broad summary of a topic or document\n"
    "\n"
    "Question: {question}"
)


def classify_query(
    question: str,
    *,
    model: BaseChatModel | None = None,
    store: Any = None,
    nlp: Any = None,
    mode: str = "auto",
    max_repairs: int = 2,
) -> Classification:
    """Classify `question` (mode: auto = LLM when a model is given, local, llm). The probe uses `store`."""
    signals = question_signals(question, nlp)
    probe = probe_store(store, question) if store is not None else None
    local = classify_local(signals, probe)
    if not (mode == "llm" or (mode == "auto" and model is not None)):
        return local
    from graphcraft.models import require_chat_model

    result = structured_call(
        require_chat_model(model, "the LLM query classifier"),
        _QueryKind,
        CLASSIFY_PROMPT.format(question=question),
        fallback=_QueryKind(kind=local.kind, reason="fallback to the local classifier"),
        max_repairs=max_repairs,
    )
    strategy = "llm->local_fallback" if result.fallback else "llm"
    reasons = [result.value.reason or "llm"] + ([f"local: {local.reasons[0]}"] if result.fallback else [])
    return Classification(
        kind=result.value.kind,
        strategy=strategy,
        reasons=reasons,
        signals={**local.signals, "local_kind": local.kind, **result.trace()},
        usage=result.usage,
    )
