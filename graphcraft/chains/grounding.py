"""Self-reflection on an answer: is it grounded in the sources, and does it answer the question?

Self-RAG (Asai et al. 2023) critiques its own generation with two judgements: *support* (every
claim is backed by the retrieved passages) and *usefulness* (the question is answered). Two
strategies behind one function, `check_answer`:

- local (no LLM): the answer is cut into sentences; each sentence is supported when it is close
  to some source strip (MiniLM cosine, the same embeddings the store uses, combined with the
  share of the sentence's content terms the strip contains). Usefulness: not an abstention,
  contains the kind of thing asked for (a name for "who", a date for "when", a number for
  "how many"), and covers the question's key terms.
- llm: both judgements in ONE structured call; a malformed reply is repaired a bounded number of
  times, then the local check is used and the fallback is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from graphcraft.chains.answer import ABSTAIN
from graphcraft.chains.question import expected_answer_type, has_answer_type
from graphcraft.chains.terms import content_terms, coverage, salient_terms
from graphcraft.models import embed_texts, structured_call
from graphcraft.runtime.accounting import Usage, empty_usage

_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


@dataclass
class AnswerCheck:
    """The verdict on one answer, with the evidence behind it."""

    grounded: bool
    useful: bool
    strategy: str
    support: float = 0.0  # share of answer sentences supported by a source
    usefulness: float = 0.0
    unsupported: list[str] = field(default_factory=list)  # sentences / claims no source backs
    missing: list[str] = field(default_factory=list)  # what the answer lacks (question terms, answer type)
    reason: str = ""
    usage: Usage = field(default_factory=empty_usage)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.grounded and self.useful

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("usage")
        return out


def answer_sentences(answer: str) -> list[str]:
    """The answer's sentences with citation markers removed (empty fragments dropped)."""
    from graphcraft.ingestion.strips import split_strips

    text = _CITATION.sub("", answer).strip()
    return [text[s:e].strip() for s, e in split_strips(text) if len(content_terms(text[s:e])) > 0] if text else []


def is_abstention(answer: str) -> bool:
    return not answer.strip() or answer.strip().rstrip(".").lower() == ABSTAIN.rstrip(".").lower()


# ------------------------------------------------------------------------------ local strategy


def sentence_support(
    sentences: Sequence[str], sources: Sequence[str], embeddings: Any, source_vectors: np.ndarray | None = None
) -> np.ndarray:
    """Best support of each sentence by any source text: 0.7 * cosine + 0.3 * term containment.

    `source_vectors` (normalised, one row per source) are reused when given, e.g. the strip
    vectors stored at ingest; only the answer's sentences are embedded then.
    """
    if not sentences or not sources:
        return np.zeros(len(sentences), dtype=np.float32)
    if source_vectors is not None and len(source_vectors) == len(sources):
        sent, src = embed_texts(embeddings, list(sentences)), source_vectors
    else:
        vectors = embed_texts(embeddings, list(sentences) + list(sources))
        sent, src = vectors[: len(sentences)], vectors[len(sentences) :]
    cosine = sent @ src.T
    source_terms = [set(content_terms(s)) for s in sources]
    contained = np.array(
        [
            [(len(set(content_terms(x)) & st) / max(1, len(set(content_terms(x))))) for st in source_terms]
            for x in sentences
        ],
        dtype=np.float32,
    )
    return np.max(0.7 * cosine + 0.3 * contained, axis=1)


def local_check(
    question: str,
    answer: str,
    sources: Sequence[str],
    embeddings: Any,
    *,
    support_threshold: float = 0.6,
    min_supported: float = 0.75,
    min_coverage: float = 0.2,
    nlp: Any = None,
    source_vectors: np.ndarray | None = None,
) -> AnswerCheck:
    """Sentence-level grounding and cheap usefulness, no LLM (see module docstring). `nlp`: spaCy, for names."""
    if is_abstention(answer):
        return AnswerCheck(
            grounded=True,
            useful=False,
            strategy="local",
            support=1.0,
            missing=["an answer"],
            reason="the answer is an abstention: nothing relevant was found",
        )
    sentences = answer_sentences(answer)
    scores = sentence_support(sentences, sources, embeddings, source_vectors)
    supported = [bool(s >= support_threshold) for s in scores]
    share = sum(supported) / len(supported) if supported else 0.0
    unsupported = [s for s, ok in zip(sentences, supported, strict=False) if not ok]
    kind = expected_answer_type(question)
    typed = has_answer_type(_CITATION.sub("", answer), kind, question, nlp)
    terms = salient_terms(question)
    answer_terms = set(content_terms(answer))
    cov = coverage(terms, answer_terms)
    missing = [t for t in terms if t not in answer_terms]
    if not typed:
        missing = [f"a {kind}"] + missing
    grounded = share >= min_supported
    useful = typed and cov >= min_coverage
    reasons = []
    if not grounded:
        reasons.append(f"{len(unsupported)} of {len(sentences)} sentences not supported by the sources")
    if not typed:
        reasons.append(f"the question asks for a {kind} and the answer gives none")
    if cov < min_coverage:
        reasons.append(f"the answer covers {cov:.0%} of the question's key terms")
    return AnswerCheck(
        grounded=grounded,
        useful=useful,
        strategy="local",
        support=round(share, 3),
        usefulness=round(cov, 3),
        unsupported=unsupported,
        missing=missing,
        reason="; ".join(reasons) or "supported and on topic",
        details={
            "sentence_support": [round(float(s), 3) for s in scores],
            "answer_type": kind,
            "support_threshold": support_threshold,
        },
    )


# ------------------------------------------------------------------------------ LLM strategy


class Assessment(BaseModel):
    grounded: bool = Field(description="True if EVERY claim in the answer is supported by the sources.")
    useful: bool = Field(description="True if the answer actually answers the question.")
    unsupported_claims: list[str] = Field(
        default_factory=list,
        description="Claims of the answer that no source supports.",
        json_schema_extra={"maxItems": 3, "items": {"type": "string", "maxLength": 160}},
    )
    missing: list[str] = Field(
        default_factory=list,
        description="What the question asks that the answer does not give.",
        json_schema_extra={"maxItems": 3, "items": {"type": "string", "maxLength": 160}},
    )
    reason: str = Field(
        default="", description="One sentence explaining the verdict.", json_schema_extra={"maxLength": 160}
    )


CHECK_PROMPT = """You check an answer produced by a retrieval-augmented assistant.
1. grounded: is every claim in the answer supported by the numbered sources? (an explicit
   "not found in the sources" is grounded.)
2. useful: does the answer actually answer the question?
List unsupported claims and what is missing.

Question: {question}

Sources:
{sources}

Answer: {answer}"""


def llm_check(
    question: str,
    answer: str,
    sources: Sequence[str],
    model: BaseChatModel,
    embeddings: Any,
    *,
    max_repairs: int = 2,
    **local_options: Any,
) -> AnswerCheck:
    """Both judgements in one structured call; local check on a malformed reply (recorded)."""
    listing = "\n".join(f"[{i}] {s[:1200]}" for i, s in enumerate(sources, start=1)) or "(no sources)"
    result = structured_call(
        model,
        Assessment,
        CHECK_PROMPT.format(question=question, sources=listing, answer=answer),
        fallback=Assessment(grounded=False, useful=False),
        max_repairs=max_repairs,
    )
    if result.fallback:
        local = local_check(question, answer, sources, embeddings, **local_options)
        local.strategy, local.usage = "llm->local_fallback", result.usage
        local.details = {**local.details, **result.trace()}
        return local
    verdict = result.value
    return AnswerCheck(
        grounded=verdict.grounded,
        useful=verdict.useful and not is_abstention(answer),
        strategy="llm",
        support=1.0 if verdict.grounded else 0.0,
        usefulness=1.0 if verdict.useful else 0.0,
        unsupported=verdict.unsupported_claims,
        missing=verdict.missing,
        reason=verdict.reason,
        usage=result.usage,
        details=result.trace(),
    )


def check_answer(
    question: str,
    answer: str,
    sources: Sequence[str],
    *,
    model: BaseChatModel | None = None,
    embeddings: Any = None,
    strategy: str = "auto",
    max_repairs: int = 2,
    **local_options: Any,
) -> AnswerCheck:
    """Grounding + usefulness of `answer` against `sources` (texts). strategy: auto | local | llm."""
    if embeddings is None:
        from graphcraft.models import get_embeddings

        embeddings = get_embeddings()
    use_llm = strategy == "llm" or (strategy == "auto" and model is not None)
    if use_llm:
        from graphcraft.models import require_chat_model

        return llm_check(
            question,
            answer,
            sources,
            require_chat_model(model, "the LLM grounding check"),
            embeddings,
            max_repairs=max_repairs,
            **local_options,
        )
    return local_check(question, answer, sources, embeddings, **local_options)
