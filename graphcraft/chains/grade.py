"""Retrieval evaluation: a relevance score in [0, 1] for every retrieved document.

Two strategies behind one interface (`evaluate(question, docs) -> Grading`):

- `LocalEvaluator` needs no LLM. The CRAG paper's evaluator is a small fine-tuned scorer, not
  an LLM; ours combines three cheap, complementary signals, because query-chunk cosine alone
  does not separate answerable from unanswerable questions: the best *strip* similarity (does
  one sentence say what is asked?), the whole-chunk similarity, and weighted keyword coverage
  (are the question's names and numbers there?). Strip vectors come from late chunking at
  ingest, so scoring costs no model call. Weights and thresholds are calibrated by
  benchmarks/evaluator_calibration.py, which prints the answered-vs-abstained trade-off.
- `LLMEvaluator` grades ALL documents in ONE structured call (not one call per document, as in
  the LangGraph tutorial), and falls back to the local scores, recorded, on a malformed reply.

`decide_action` applies the paper's rule: Correct if any score > upper, Incorrect if all
scores < lower, Ambiguous otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, create_model

from graphcraft.chains.terms import content_terms, coverage, salient_terms
from graphcraft.models import structured_call
from graphcraft.retrievers.keyword import idf_function
from graphcraft.runtime.accounting import Usage, empty_usage
from graphcraft.stores.vector import ChunkStore

Action = Literal["correct", "incorrect", "ambiguous"]


@dataclass
class Grading:
    scores: list[float]
    strategy: str
    usage: Usage = field(default_factory=empty_usage)
    details: dict = field(default_factory=dict)
    strip_scores: list[list[float]] | None = None  # per document, when the local evaluator scored strips


class Evaluator(Protocol):
    name: str
    upper: float
    lower: float

    def evaluate(self, question: str, docs: list[Document]) -> Grading: ...


def decide_action(scores: list[float], upper: float, lower: float) -> Action:
    """CRAG's three-way decision from per-document scores and two thresholds."""
    if any(s > upper for s in scores):
        return "correct"
    if all(s < lower for s in scores):
        return "incorrect"
    return "ambiguous"


@dataclass
class StripScores:
    """Per-strip relevance of one document: the strip texts and their scores."""

    texts: list[str]
    scores: np.ndarray


def score_strips(
    store: ChunkStore | None,
    query_vec: np.ndarray,
    question: str,
    doc: Document,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    terms: dict[str, float] | None = None,
) -> StripScores:
    """Strip relevance = cosine(query, strip) + a bonus for the question's terms in the strip.

    `terms` are the question's weighted terms when the caller already has them.
    """
    if store is not None:
        texts, vecs = store.strips(doc)
    else:
        texts, vecs = [doc.page_content], None
    from_store = vecs is not None
    if vecs is None:  # external documents: embed their strips now (one batched call)
        from graphcraft.ingestion.strips import strip_spans

        texts = [doc.page_content[s:e] for s, e in strip_spans(doc)]
        vecs = embed(texts) if embed is not None else np.zeros((len(texts), len(query_vec)), dtype=np.float32)
    sims = vecs @ query_vec
    if terms is None:
        terms = salient_terms(question, idf_function(store) if store is not None else None)
    # A stored chunk's strip terms are memoised by the store; other documents are tokenised here.
    strip_terms = store.strip_terms(doc) if from_store and store is not None else [set(content_terms(t)) for t in texts]
    lexical = np.array([coverage(terms, t) for t in strip_terms], dtype=np.float32)
    return StripScores(texts=texts, scores=0.75 * sims + 0.25 * lexical)


class LocalEvaluator:
    """Embedding + lexical relevance, no LLM (see module docstring)."""

    name = "local"

    def __init__(
        self,
        store: ChunkStore | None,
        embeddings: Embeddings,
        upper: float = 0.62,
        lower: float = 0.42,
        weights: tuple[float, float, float] = (0.5, 0.2, 0.3),
    ) -> None:
        self.store, self.embeddings = store, embeddings
        self.upper, self.lower, self.weights = upper, lower, weights

    def embed(self, texts: list[str]) -> np.ndarray:
        from graphcraft.models import embed_texts

        return embed_texts(self.embeddings, texts)

    def query_vector(self, question: str) -> np.ndarray:
        return np.asarray(self.embeddings.embed_query(question), dtype=np.float32)

    def _terms(self, doc: Document) -> list[set[str]]:
        if self.store is not None and doc.metadata.get("chunk_id") in self.store.strip_vectors:
            return self.store.strip_terms(doc)
        return [set(content_terms(doc.page_content))]

    def chunk_similarity(self, doc: Document, qv: np.ndarray) -> float:
        """Cosine of query and chunk: from the stored vector when the chunk is ours, else embedded."""
        vec = self.store.chunk_vector(str(doc.metadata.get("chunk_id"))) if self.store is not None else None
        if vec is None:
            vec = self.embed([doc.page_content])[0]
        return float(vec @ qv)

    def evaluate(self, question: str, docs: list[Document], query_vec: np.ndarray | None = None) -> Grading:
        if not docs:
            return Grading(scores=[], strategy=self.name)
        qv = self.query_vector(question) if query_vec is None else query_vec
        terms = salient_terms(question, idf_function(self.store) if self.store is not None else None)
        w_strip, w_chunk, w_cov = self.weights
        scores, parts, per_strip = [], [], []
        for doc in docs:
            strips = score_strips(self.store, qv, question, doc, self.embed, terms)
            per_strip.append([round(float(x), 4) for x in strips.scores])
            best_strip = float(np.max(strips.scores))
            chunk_sim = self.chunk_similarity(doc, qv)
            cov = coverage(terms, set().union(*strips_terms) if (strips_terms := self._terms(doc)) else set())
            score = float(np.clip(w_strip * best_strip + w_chunk * chunk_sim + w_cov * cov, 0.0, 1.0))
            scores.append(round(score, 4))
            parts.append({"strip": round(best_strip, 3), "chunk": round(chunk_sim, 3), "coverage": round(cov, 3)})
        return Grading(scores=scores, strategy=self.name, details={"signals": parts}, strip_scores=per_strip)


_SCORE: dict[str, Any] = {  # keyword arguments of each score Field
    "ge": 0.0,
    "le": 1.0,
    "description": "1 = contains what is needed to answer; 0.5 = related but incomplete; 0 = irrelevant.",
    "json_schema_extra": {"enum": [i / 10 for i in range(11)]},
}


class _Grades(BaseModel):
    """One score per document, keyed by the document's number ("1", "2", ...)."""

    model_config = ConfigDict(populate_by_name=True)

    def scores(self, n: int) -> list[float]:
        return [float(getattr(self, f"doc_{i}")) for i in range(1, n + 1)]


@lru_cache(maxsize=32)
def grades_schema(n: int) -> type[_Grades]:
    """The grading schema for `n` documents: an object with one required score per document number.

    Keys rather than a list, so that a grammar-constrained model (llama.cpp, json_object with a
    schema) cannot skip or repeat a document; scores are tenths because grammars have enums but no
    numeric ranges. Validation stays lenient (any score in [0, 1]) for providers without grammars.
    """
    fields: dict[str, Any] = {f"doc_{i}": (float, Field(alias=str(i), **_SCORE)) for i in range(1, n + 1)}
    return create_model("_Grades", __base__=_Grades, **fields)  # one name: scripted test models reply by it


GRADER_PROMPT = """You grade retrieved documents for a question-answering system.
For EVERY document give a relevance score between 0 and 1: 1 if it contains information that
answers the question, 0.5 if it is related but incomplete, 0 if it is irrelevant.

Question: {question}

Documents:
{documents}"""


class LLMEvaluator:
    """All documents graded in one structured call; malformed replies repaired, then local fallback."""

    name = "llm"

    def __init__(
        self,
        model: BaseChatModel,
        fallback: LocalEvaluator,
        upper: float = 0.7,
        lower: float = 0.3,
        max_repairs: int = 2,
    ) -> None:
        self.model, self.fallback = model, fallback
        self.upper, self.lower, self.max_repairs = upper, lower, max_repairs

    def evaluate(self, question: str, docs: list[Document], query_vec: np.ndarray | None = None) -> Grading:
        if not docs:
            return Grading(scores=[], strategy=self.name)
        listing = "\n\n".join(f"[{i}] {d.page_content[:1500]}" for i, d in enumerate(docs, start=1))
        schema = grades_schema(len(docs))
        result = structured_call(
            self.model,
            schema,
            GRADER_PROMPT.format(question=question, documents=listing),
            fallback=schema.model_construct(),  # never read: a fallback grades locally instead
            max_repairs=self.max_repairs,
        )
        if result.fallback:
            local = self.fallback.evaluate(question, docs, query_vec)
            # Local scores live on the local scale: map them onto this evaluator's thresholds.
            scores = [
                _rescale(s, (self.fallback.lower, self.fallback.upper), (self.lower, self.upper)) for s in local.scores
            ]
            return Grading(
                scores=scores,
                strategy="llm->local_fallback",
                usage=result.usage,
                details={**result.trace(), "fallback_reason": "malformed grades", "local": local.details},
            )
        return Grading(
            scores=[round(x, 4) for x in result.value.scores(len(docs))],
            strategy=self.name,
            usage=result.usage,
            details=result.trace(),
        )


def _rescale(x: float, src: tuple[float, float], dst: tuple[float, float]) -> float:
    """Piecewise-linear map that sends src thresholds onto dst thresholds (and 0->0, 1->1)."""
    (sl, su), (dl, du) = src, dst
    if x <= sl:
        return round(dl * x / sl if sl else dl, 4)
    if x >= su:
        return round(du + (1 - du) * (x - su) / (1 - su) if su < 1 else du, 4)
    return round(dl + (du - dl) * (x - sl) / (su - sl), 4)
