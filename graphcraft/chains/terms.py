"""Cheap lexical signals: content terms (stemmed, stop words removed) without an NLP pipeline.

Used where a full spaCy parse would cost more than the retrieval it supports: keyword
coverage in the local relevance evaluator and BM25 tokenisation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import Stemmer
from spacy.lang.en.stop_words import STOP_WORDS

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,]\d+)*")
QUESTION_WORDS = {
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "many",
    "much",
    "does",
    "did",
    "is",
    "are",
    "was",
    "were",
}
STOP = (
    frozenset(w.lower() for w in STOP_WORDS) | QUESTION_WORDS | {"tell", "describe", "explain", "list", "name", "give"}
)


@lru_cache(maxsize=1)
def stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def content_terms(text: str) -> list[str]:
    """Stemmed, lower-cased content words in order (duplicates kept)."""
    kept = [w.lower().replace("'s", "") for w in words(text) if w.lower() not in STOP]
    return stemmer().stemWords(kept) if kept else []


def salient_terms(text: str, idf: Callable[[str], float] | None = None) -> dict[str, float]:
    """Distinct query terms with weights.

    Names and numbers count double (they pin down facts); with an `idf` function, terms rare in
    the corpus weigh more than terms every chunk shares (the corpus' own topic words).
    """
    weights: dict[str, float] = {}
    for word in words(text):
        low = word.lower()
        if low in STOP:
            continue
        term = stemmer().stemWord(low.replace("'s", ""))
        weight = 2.0 if (word[0].isupper() or word[0].isdigit()) else 1.0
        if idf is not None:
            weight *= idf(term)
        weights[term] = max(weights.get(term, 0.0), weight)
    return weights


def _present(term: str, text_terms: set[str]) -> bool:
    """Exact stem, or a shared stem of 4+ letters (founded/founders: 'found'/'founder')."""
    if term in text_terms:
        return True
    if len(term) < 4 or term.isdigit():
        return False
    return any((t.startswith(term) or (len(t) >= 4 and term.startswith(t))) for t in text_terms)


def coverage(query_terms: dict[str, float], text_terms: set[str]) -> float:
    """Weighted share of query terms present in a text's term set (0 when the query has none)."""
    total = sum(query_terms.values())
    if total == 0:
        return 0.0
    return sum(w for t, w in query_terms.items() if _present(t, text_terms)) / total


def informative(text: str) -> bool:
    """False for strips that state no fact: headings, table rulers, lone labels."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    body = " ".join(lines).replace("|", " ")
    return len(words(body)) >= 3
