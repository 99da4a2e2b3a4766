"""Retrieved documents -> graded, refined knowledge strips (the CRAG evaluate + refine steps as one call).

self_rag, adaptive_rag and router all need "grade what was retrieved, keep the relevant strips";
this is that path, built from chains.grade and chains.refine, so no graph re-wires it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.documents import Document

from graphcraft.chains.grade import Action, LLMEvaluator, LocalEvaluator, decide_action
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.runtime.accounting import Usage, empty_usage


@dataclass
class Evidence:
    scores: list[float]
    action: Action
    strips: list[Strip]
    evaluator: str
    upper: float
    lower: float
    usage: Usage = field(default_factory=empty_usage)
    details: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str = "grade") -> dict[str, Any]:
        """A compact trace record of this grading."""
        return {
            "step": name,
            "evaluator": self.evaluator,
            "scores": self.scores,
            "action": self.action,
            "strips_kept": len(self.strips),
            **({"fallback": self.details.get("fallback_reason")} if self.details.get("fallback_reason") else {}),
        }


def make_evaluator(res: Any, mode: str = "auto") -> LocalEvaluator | LLMEvaluator:
    """The relevance evaluator for these Resources: "auto" (LLM when a model exists), "local" or "llm"."""
    from graphcraft.ingestion.calibration import evaluator_thresholds

    s = res.settings
    upper, lower, _ = evaluator_thresholds(s, res.store)
    local = LocalEvaluator(res.store, res.embeddings, upper, lower)
    if mode == "llm" or (mode == "auto" and res.model is not None):
        return LLMEvaluator(
            res.require_model("the LLM evaluator"),
            local,
            s.llm_upper_threshold,
            s.llm_lower_threshold,
            s.max_structured_repairs,
        )
    return local


def gather_evidence(question: str, docs: list[Document], res: Any, mode: str = "auto") -> Evidence:
    """Grade `docs` for `question`, decide Correct/Ambiguous/Incorrect, keep the relevant strips."""
    judge = make_evaluator(res, mode)
    query_vec = np.asarray(res.embeddings.embed_query(question), dtype=np.float32)
    grading = judge.evaluate(question, docs, query_vec)
    action = decide_action(grading.scores, judge.upper, judge.lower) if docs else "incorrect"
    kept = [(d, s) for d, s in zip(docs, grading.scores, strict=False) if s >= judge.lower]
    strips = refine_documents(
        question, query_vec, [d for d, _ in kept], [s for _, s in kept], res.store, res.settings.strip_threshold
    )
    return Evidence(
        scores=grading.scores,
        action=action,
        strips=strips,
        evaluator=grading.strategy,
        upper=judge.upper,
        lower=judge.lower,
        usage=grading.usage,
        details=grading.details,
    )


def strip_vectors(store: Any, strips: list[Strip] | list[dict]) -> np.ndarray | None:
    """The stored (late-chunked) vectors of knowledge strips, so checks need not re-embed them.

    None when any strip is not from this store (external) or has no stored vector.
    """
    rows = []
    for strip in strips:
        chunk_id, position = (
            (strip["chunk_id"], strip["position"]) if isinstance(strip, dict) else (strip.chunk_id, strip.position)
        )
        docs = store.get([chunk_id]) if store is not None else []
        if not docs:
            return None
        _, vectors = store.strips(docs[0])
        if vectors is None or position >= len(vectors):
            return None
        rows.append(vectors[position])
    return np.vstack(rows).astype(np.float32) if rows else None
