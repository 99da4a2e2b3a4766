"""Per-store calibration of the local relevance evaluator, from the store's own chunks.

Fixed thresholds do not transfer: a score that means "this chunk answers" on short prose notes
means little on code-heavy reference pages, where every chunk shares the vocabulary. So at
ingest the store measures its own score distributions with pseudo-queries (Ma et al. 2021;
InPars, Bonifacio et al. 2022, do the same with an LLM): a sentence of a chunk, with the
"answer" removed and part of its wording dropped, is asked against

- the whole store (`positive`: the chunk holding it is there), and
- the store without that chunk and without any chunk repeating the sentence (`negative`: an
  on-topic question whose answer is missing: the near miss a user asks).

Real questions are paraphrased, so they score below the pseudo-queries that copy a sentence's
words (measured on the public corpora: real answerable questions sit between the pseudo
negatives and the pseudo positives). The thresholds therefore come from the near misses: below
the lower one a question gets less support than nine in ten near misses do, so abstaining
is what the evidence says; above the upper one it beats nine in ten near misses, so "correct"
means more than "on topic". The lower threshold never exceeds what 95% of the positives reach.
The figures are saved in the manifest and shown by `graphcraft calibration`;
GRAPHCRAFT_UPPER_THRESHOLD / LOWER_THRESHOLD override them.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Chosen on the tuning halves of the public corpora (benchmarks/answer_quality.py --half tune).
LOWER_QUANTILE = 0.10  # of near-miss scores: the lower threshold
UPPER_QUANTILE = 0.90  # of near-miss scores: the upper threshold
POSITIVE_FLOOR = 0.05  # the lower threshold stays below this quantile of positive scores
KEEP_WORDS = 0.5  # share of a sentence's content words a pseudo-question keeps
MIN_SENTENCE_WORDS = 8
DEFAULTS = {"upper": 0.62, "lower": 0.42}  # before any calibration (empty or tiny store)

_ANSWER_LIKE = re.compile(r"^(\d[\d.,:%]*|[A-Z][\w.-]*|\w*[_.()]\w*)$")


@dataclass
class Calibration:
    """The thresholds chosen for one store and the distributions they come from."""

    upper: float
    lower: float
    queries: int
    positives: dict[str, float] = field(default_factory=dict)  # quantiles of the best document score
    negatives: dict[str, float] = field(default_factory=dict)
    separation: float | None = None  # ROC AUC of positive vs negative scores (0.5 = none)
    method: str = "pseudo-queries"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pseudo_question(sentence: str, rng: random.Random) -> str | None:
    """A sentence turned into a question-like query: one answer-like word removed, part of the rest dropped."""
    from graphcraft.chains.terms import STOP, words

    tokens = [w for w in words(sentence) if w.lower() not in STOP]
    if len(tokens) < MIN_SENTENCE_WORDS // 2:
        return None
    answers = [i for i, w in enumerate(tokens) if _ANSWER_LIKE.match(w)]
    drop = rng.choice(answers) if answers else rng.randrange(len(tokens))
    rest = [w for i, w in enumerate(tokens) if i != drop]
    keep = sorted(rng.sample(range(len(rest)), max(3, round(KEEP_WORDS * len(rest)))))
    return "what " + " ".join(rest[i] for i in keep)


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = np.quantile(np.asarray(values), [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    return {k: round(float(v), 4) for k, v in zip(("p05", "p10", "p25", "p50", "p75", "p90", "p95"), q, strict=False)}


def _auc(pos: list[float], neg: list[float]) -> float | None:
    if not pos or not neg:
        return None
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return round(float((p > n).mean() + 0.5 * (p == n).mean()), 4)


def calibrate(store: Any, queries: int = 160, k: int = 5, seed: int = 0) -> Calibration:
    """Thresholds for `store` from pseudo-queries (see the module docstring); about 3 s per 160 queries."""
    docs = [d for d in store.documents() if d.metadata.get("modality", "text") == "text"]
    if len(docs) < 2 * k:
        return _defaults(0, "store too small to calibrate")
    samples = _pseudo_queries(store, docs, queries, random.Random(seed))
    if len(samples) < 20:
        return _defaults(len(samples), "too few sentences to calibrate")
    positives, negatives = _score_samples(store, samples, k)
    if len(positives) < 10 or len(negatives) < 10:
        return _defaults(len(samples), "too few pseudo-queries retrieved their chunk")
    lower = min(float(np.quantile(negatives, LOWER_QUANTILE)), float(np.quantile(positives, POSITIVE_FLOOR)))
    upper = max(lower, float(np.quantile(negatives, UPPER_QUANTILE)))
    return Calibration(
        upper=round(upper, 4),
        lower=round(lower, 4),
        queries=len(samples),
        positives=_quantiles(positives),
        negatives=_quantiles(negatives),
        separation=_auc(positives, negatives),
    )


def _defaults(queries: int, why: str) -> Calibration:
    return Calibration(upper=DEFAULTS["upper"], lower=DEFAULTS["lower"], queries=queries, method=f"defaults ({why})")


def _pseudo_queries(store: Any, docs: list[Any], queries: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(query, chunk id, sentence) made from random sentences of random chunks."""
    samples: list[tuple[str, str, str]] = []
    for doc in rng.sample(docs, min(len(docs), queries * 2)):
        sentences = [t for t in store.strips(doc)[0] if len(t.split()) >= MIN_SENTENCE_WORDS]
        if not sentences:
            continue
        sentence = rng.choice(sentences)
        query = pseudo_question(sentence, rng)
        if query:
            samples.append((query, str(doc.metadata["chunk_id"]), sentence))
        if len(samples) >= queries:
            break
    return samples


def _score_samples(store: Any, samples: list[tuple[str, str, str]], k: int) -> tuple[list[float], list[float]]:
    """The evaluator's best score with the source chunk retrieved (positives) and over the others (negatives)."""
    from graphcraft.chains.grade import LocalEvaluator
    from graphcraft.models import embed_texts
    from graphcraft.retrievers import make_retriever

    retriever = make_retriever("hybrid", store, k + 5)
    evaluator = LocalEvaluator(store, store.embeddings, DEFAULTS["upper"], DEFAULTS["lower"])
    vectors = embed_texts(store.embeddings, [q for q, _, _ in samples])
    positives, negatives = [], []
    for (query, chunk_id, sentence), qv in zip(samples, vectors, strict=False):
        found = retriever.search(query, vector=qv)
        if chunk_id not in [d.metadata["chunk_id"] for d in found[:k]]:
            continue  # a retrieval miss says nothing about the evaluator
        positives.append(max(evaluator.evaluate(query, found[:k], qv).scores))
        others = [d for d in found if d.metadata["chunk_id"] != chunk_id and sentence not in d.page_content][:k]
        if others:
            negatives.append(max(evaluator.evaluate(query, others, qv).scores))
    return positives, negatives


def store_thresholds(store: Any) -> tuple[float, float, str]:
    """(upper, lower, origin) for a store: its calibration when it has one, else the defaults."""
    cal = (getattr(store, "manifest", None) or {}).get("calibration") if store is not None else None
    if cal and cal.get("queries"):
        return float(cal["upper"]), float(cal["lower"]), "calibrated"
    return DEFAULTS["upper"], DEFAULTS["lower"], "default"


def evaluator_thresholds(settings: Any, store: Any) -> tuple[float, float, str]:
    """The local evaluator's (upper, lower, origin): settings override the store's calibration."""
    upper, lower, origin = store_thresholds(store)
    if settings.upper_threshold is not None or settings.lower_threshold is not None:
        origin = "settings"
    upper = settings.upper_threshold if settings.upper_threshold is not None else upper
    lower = settings.lower_threshold if settings.lower_threshold is not None else lower
    return upper, min(lower, upper), origin


def recalibrate(store: Any) -> Calibration:
    """Calibrate `store` and save the result in its manifest (committed as a new generation)."""
    cal = calibrate(store)
    store.manifest["calibration"] = cal.as_dict()
    store.mark_dirty()
    store.commit()
    return cal
