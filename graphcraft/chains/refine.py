"""Knowledge refinement (CRAG's decompose-then-recompose).

Each relevant document is decomposed into knowledge strips, every strip is scored against the
question, strips below the threshold are dropped, and the survivors are recomposed in document
order. A `Strip` keeps its provenance so the answer can cite chunk, page and score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from langchain_core.documents import Document

from graphcraft.chains.grade import StripScores, score_strips
from graphcraft.chains.question import ANSWER_FIT_BONUS, answer_fit
from graphcraft.chains.terms import informative
from graphcraft.ingestion.strips import strip_spans
from graphcraft.stores.vector import ChunkStore

MAX_STRIPS = 8  # strips kept for the answer (an LLM reads them all; the extractive answer quotes the best)


@dataclass
class Strip:
    text: str
    score: float
    source: str
    chunk_id: str
    page: int | None
    position: int
    origin: str = "internal"  # or "external"
    doc_score: float = 0.0
    start: int = -1  # the strip's character span in its chunk (-1: unknown), marked in the answer's sources
    end: int = -1

    def as_dict(self) -> dict:
        return asdict(self)


def refine_documents(
    question: str,
    query_vec: np.ndarray,
    docs: list[Document],
    doc_scores: list[float],
    store: ChunkStore | None,
    threshold: float,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    max_strips: int = MAX_STRIPS,
    origin: str = "internal",
    strip_scores: list[list[float]] | None = None,
) -> list[Strip]:
    """Keep the strips scoring at least `threshold` (at most `max_strips`), in reading order.

    `strip_scores` (per document) reuses the scores the evaluator already computed.
    """
    candidates: list[Strip] = []
    for i, (doc, doc_score) in enumerate(zip(docs, doc_scores, strict=False)):
        known = strip_scores[i] if strip_scores is not None else None
        if known is not None and store is not None:
            texts = store.strips(doc)[0]
            strips = StripScores(texts, np.asarray(known)) if len(texts) == len(known) else None
        else:
            strips = None
        strips = strips or score_strips(store, query_vec, question, doc, embed)
        spans = strip_spans(doc)
        for position, (text, score) in enumerate(zip(strips.texts, strips.scores, strict=False)):
            if score >= threshold and informative(text):
                start, end = spans[position] if position < len(spans) else (-1, -1)
                candidates.append(
                    Strip(
                        text=text.strip(),
                        score=round(float(score), 4),
                        source=str(doc.metadata.get("source", "")),
                        chunk_id=str(doc.metadata.get("chunk_id", "")),
                        page=doc.metadata.get("page"),
                        position=position,
                        origin=origin,
                        doc_score=float(doc_score),
                        start=start,
                        end=end,
                    )
                )
    # Keep the strips most likely to answer: relevance, plus a bonus for holding the asked-for kind of answer.
    best = sorted(candidates, key=lambda s: s.score + ANSWER_FIT_BONUS * answer_fit(s.text, question), reverse=True)[
        :max_strips
    ]
    order = {id(s): i for i, s in enumerate(candidates)}
    return sorted(best, key=lambda s: order[id(s)])


def recompose(strips: list[Strip]) -> str:
    """The refined knowledge as one text, strips of the same chunk kept together."""
    return "\n".join(s.text for s in strips)
