"""Cheap lexical signals: content terms (stemmed, stop words removed) without an NLP pipeline.

Used where a full spaCy parse would cost more than the retrieval it supports: keyword
coverage in the local relevance evaluator and BM25 tokenisation.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import Stemmer

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


def _spacy_stop_words() -> frozenset[str]:
    """spaCy's English stop words, read from their module file without importing the spacy package.

    `import spacy` pulls in thinc, which imports torch: seconds of start-up for a word list. The
    list lives in a plain module with no imports of its own, so it is loaded on its own.
    """
    if "spacy.lang.en.stop_words" in sys.modules:
        return frozenset(sys.modules["spacy.lang.en.stop_words"].STOP_WORDS)
    spec = importlib.util.find_spec("spacy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("spaCy is not installed: pip install 'spacy>=3.7,<3.9'")
    path = Path(next(iter(spec.submodule_search_locations))) / "lang" / "en" / "stop_words.py"
    module_spec = importlib.util.spec_from_file_location("_graphcraft_spacy_stop_words", path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"spaCy's English stop words are missing ({path})")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return frozenset(module.STOP_WORDS)


STOP = (
    frozenset(w.lower() for w in _spacy_stop_words())
    | QUESTION_WORDS
    | {"tell", "describe", "explain", "list", "name", "give"}
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
