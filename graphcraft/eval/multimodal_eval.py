"""Scoring multimodal answers against the generated report, and the text-only baseline.

Shared by benchmarks/multimodal.py and notebooks/04_multimodal_rag.ipynb so both report the
same numbers. The baseline is what graphcraft does without the multimodal ingest: the
ordinary loader (PDF text layer only), hybrid retrieval, and the same strip refinement and
extractive answer chain the multimodal graph uses for non-table answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from graphcraft.chains.answer import generate_answer
from graphcraft.chains.refine import refine_documents
from graphcraft.config import get_settings
from graphcraft.eval.multimodal_data import Question
from graphcraft.graphs.multimodal_rag import answer_body
from graphcraft.retrievers.hybrid import HybridRetriever
from graphcraft.stores.vector import open_store

_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def text_only_answerer(store_dir: str | Path) -> Callable[[str], dict]:
    """question -> {"answer", "sources"} over a store built by the ordinary (text-layer) ingest."""
    settings = get_settings(store=Path(store_dir))
    store = open_store(store_dir, settings, create=False)
    retriever = HybridRetriever(store=store, k=settings.top_k)

    def ask(question: str) -> dict:
        docs = retriever.search(question)
        qvec = np.asarray(store.embeddings.embed_query(question), dtype=np.float32)
        strips = refine_documents(
            question, qvec, docs, [float(d.metadata.get("score", 0)) for d in docs], store, settings.strip_threshold
        )
        answer = generate_answer(question, strips, None)
        return {"answer": answer.text, "sources": answer.sources}

    return ask


def score(question: Question, answer: str, sources: list[dict]) -> dict[str, bool]:
    """hit: the expected string is in the answer (citation footer excluded); page: the first
    cited source is on the expected page; exact: the answer's first number is the expected one
    (for table questions: it named the cell rather than pasting a row that contains it)."""
    body = answer_body(answer)
    first = _NUMBER.search(body)
    return {
        "hit": question.answer in body,
        "page": bool(sources) and sources[0].get("page") == question.page,
        "exact": first is not None and first.group() == question.answer,
    }


def summarize(
    rows: list[dict[str, Any]], systems: tuple[str, ...] = ("multimodal", "text_only")
) -> dict[str, dict[str, float]]:
    """Per question kind: n, and each system's hit/page/exact rates and mean answer length."""
    summary: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        group = [r for r in rows if r["kind"] == kind]
        entry: dict[str, float] = {"n": len(group)}
        for system in systems:
            for metric in ("hit", "page", "exact"):
                entry[f"{system}_{metric}"] = round(sum(r[system][metric] for r in group) / len(group), 3)
            entry[f"{system}_answer_chars"] = round(sum(len(r[system]["answer"]) for r in group) / len(group))
        summary[kind] = entry
    return summary


def compare(graph: Any, baseline: Callable[[str], dict], questions: list[Question]) -> list[dict[str, Any]]:
    """Ask every question of both systems; one row per question with both scores and answers."""
    import time

    rows: list[dict[str, Any]] = []
    for q in questions:
        start = time.perf_counter()
        state = graph.invoke({"question": q.question})
        seconds = time.perf_counter() - start
        base = baseline(q.question)
        rows.append(
            {
                "kind": q.kind,
                "question": q.question,
                "expected": q.answer,
                "multimodal": {
                    **score(q, state["answer"], state["sources"]),
                    "s": round(seconds, 3),
                    "answer": answer_body(state["answer"]),
                },
                "text_only": {**score(q, base["answer"], base["sources"]), "answer": base["answer"]},
            }
        )
    return rows
