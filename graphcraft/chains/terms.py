"""Cheap lexical signals: content terms (stemmed, stop words removed) without an NLP pipeline.

Used where a full spaCy parse would cost more than the retrieval it supports: keyword
coverage in the local relevance evaluator and BM25 tokenisation.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer
from spacy.lang.en.stop_words import STOP_WORDS

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,]\d+)*")
QUESTION_WORDS = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "many", "much", "does", "did", "is", "are", "was", "were"}
STOP = frozenset(w.lower() for w in STOP_WORDS) | QUESTION_WORDS | {"tell", "describe", "explain", "list", "name", "give"}


@lru_cache(maxsize=1)
def stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def content_terms(text: str) -> list[str]:
    """Stemmed, lower-cased content words in order (duplicates kept)."""
    kept = [w.lower().replace("'s", "") for w in words(text) if w.lower() not in STOP]
    return stemmer().stemWords(kept) if kept else []


def salient_terms(text: str) -> dict[str, float]:
    """Distinct query terms with weights: names and numbers count double (they pin down facts)."""
    weights: dict[str, float] = {}
    for word in words(text):
        low = word.lower()
        if low in STOP:
            continue
        term = stemmer().stemWord(low.replace("'s", ""))
        weight = 2.0 if (word[0].isupper() or word[0].isdigit()) else 1.0
        weights[term] = max(weights.get(term, 0.0), weight)
    return weights


def coverage(query_terms: dict[str, float], text_terms: set[str]) -> float:
    """Weighted share of query terms present in a text's term set (0 when the query has none)."""
    total = sum(query_terms.values())
    if total == 0:
        return 0.0
    return sum(w for t, w in query_terms.items() if t in text_terms) / total
