"""Per-question metrics of one graph result against a reference: retrieval, answer, citations, abstention.

Everything here is offline and mechanical except `judge`, which asks a chat model. The rules
reuse the ones the answer-quality benchmark grades by (graphcraft.eval.grading): file names for
sources, keyword groups for containment, the same abstention test, and Self-RAG's sentence
support (graphcraft.chains.grounding) for faithfulness, so one question is judged the same
way by every tool in the repository.

A metric that does not apply to a question is None (recall without gold sources, token F1 on an
unanswerable question, faithfulness of an abstention) and is left out of the averages.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from graphcraft.eval.grading import is_abstention, is_correct, normalize, recall_at_k, source_name

SUPPORT_THRESHOLD = 0.6
"""A sentence is grounded when its support (0.7 * MiniLM cosine + 0.3 * term containment) reaches
this; the value Self-RAG's local grounding check uses (graphcraft.chains.grounding.local_check)."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans(dict.fromkeys(string.punctuation, " "))


def answer_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation: lowercase, punctuation and articles removed, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(answer: str, reference: str) -> float:
    """Harmonic mean of token precision and recall between answer and reference (SQuAD's F1)."""
    got, want = answer_tokens(answer), answer_tokens(reference)
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def reciprocal_rank(sources: Sequence[Any], gold_sources: Iterable[str]) -> float | None:
    """1 / rank of the first source from a gold file (ranks count chunks from 1); 0.0 if none; None without gold."""
    gold = {source_name(g) for g in gold_sources}
    if not gold:
        return None
    for rank, source in enumerate(sources, start=1):
        if source_name(source) in gold:
            return 1.0 / rank
    return 0.0


def contains_answer(answer: str, reference: str, keywords: Sequence[Sequence[str]] = ()) -> bool:
    """The answer holds the reference: every keyword group (grading.is_correct) or, without keywords,
    the whole normalised reference text."""
    if keywords:
        return is_correct(answer, keywords)
    return bool(reference.strip()) and normalize(reference) in normalize(answer)


def cited_sources(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The sources an answer cites: those with a citation number, or all of them when none is numbered
    (a graph that numbers none presents every source as support)."""
    sources = [s for s in result.get("sources") or [] if isinstance(s, Mapping)]
    if any("citation" in s for s in sources):
        return [s for s in sources if s.get("citation") is not None]
    return sources


def supports(
    source: Mapping[str, Any], gold_sources: Iterable[str], keywords: Sequence[Sequence[str]], hop: bool
) -> bool:
    """A cited chunk holds the support: it comes from a gold file and, unless the question is multi-hop
    (where a chunk may hold only the bridge) or has no keywords, holds at least one keyword group."""
    if source_name(source) not in {source_name(g) for g in gold_sources}:
        return False
    if hop or not keywords:
        return True
    text = str(source.get("text", ""))
    return any(is_correct(text, [group]) for group in keywords)


def citation_precision(
    result: Mapping[str, Any], gold_sources: Sequence[str], keywords: Sequence[Sequence[str]], hop: bool = False
) -> float | None:
    """Share of cited chunks that hold the support; None without gold sources or without citations."""
    cited = cited_sources(result)
    if not gold_sources or not cited:
        return None
    return sum(supports(s, gold_sources, keywords, hop) for s in cited) / len(cited)


def faithfulness(answer: str, cited_texts: Sequence[str], embeddings: Any) -> float | None:
    """Share of the answer's sentences grounded in some cited chunk (Self-RAG's sentence support);
    None for an empty answer. An answer that cites nothing has no grounded sentence."""
    from graphcraft.chains.grounding import answer_sentences, sentence_support

    sentences = answer_sentences(answer)
    if not sentences:
        return None
    scores = sentence_support(sentences, list(cited_texts), embeddings)
    return float(sum(bool(s >= SUPPORT_THRESHOLD) for s in scores) / len(sentences))


class Judgement(BaseModel):
    """What the judge model decides about one answer."""

    correct: bool = Field(description="True if the answer states what the reference answer states.")
    grounded: bool = Field(description="True if every claim in the answer is supported by the cited passages.")


JUDGE_PROMPT = """You grade an answer against a reference answer and the passages it cites.
Question: {question}
Reference answer: {reference}
Answer: {answer}
Cited passages:
{passages}

Decide: correct (the answer states what the reference states; wording may differ) and grounded
(every claim in the answer is supported by the cited passages)."""


def judge(
    model: Any, question: str, reference: str, answer: str, cited_texts: Sequence[str]
) -> dict[str, float | None]:
    """LLM-judged correctness and groundedness (1.0 / 0.0); None for both when the reply stayed malformed."""
    from graphcraft.models import structured_call

    passages = "\n".join(f"[{i}] {t[:1500]}" for i, t in enumerate(cited_texts, start=1)) or "(none)"
    prompt = JUDGE_PROMPT.format(question=question, reference=reference, answer=answer, passages=passages)
    outcome = structured_call(model, Judgement, prompt, fallback=Judgement(correct=False, grounded=False))
    if outcome.fallback:
        return {"judge_correct": None, "judge_grounded": None}
    return {"judge_correct": float(outcome.value.correct), "judge_grounded": float(outcome.value.grounded)}


def score_result(
    item: Any, result: Mapping[str, Any], k: int, embeddings: Any, judge_model: Any = None
) -> dict[str, Any]:
    """Every metric of one result (the `ask` shape) for one dataset item (graphcraft.eval.harness.EvalItem)."""
    answer = str(result.get("answer", ""))
    trace = result.get("trace") or {}
    sources = list(result.get("sources") or [])
    abstained = is_abstention(answer, trace.get("abstained"))
    answerable = item.kind != "unanswerable"
    cited_texts = [str(s.get("text", "")) for s in cited_sources(result)]
    row: dict[str, Any] = {
        "id": item.id,
        "kind": item.kind,
        "abstained": abstained,
        "answer_containment": float(not abstained and contains_answer(answer, item.answer, item.keywords))
        if answerable
        else None,
        "recall_at_k": recall_at_k(sources, item.sources, k),
        "mrr": reciprocal_rank(sources, item.sources),
        "token_f1": (0.0 if abstained else token_f1(answer, item.answer)) if answerable else None,
        "citation_precision": citation_precision(result, item.sources, item.keywords, item.kind == "multihop"),
        "faithfulness": None if abstained else faithfulness(answer, cited_texts, embeddings),
        "abstention": float(abstained) if not answerable else None,
        "false_abstention": float(abstained) if answerable else None,
        "llm_calls": int(trace.get("llm_calls") or 0),
        "tokens": int(trace.get("prompt_tokens") or 0) + int(trace.get("completion_tokens") or 0),
        "cost": float(trace.get("cost") or 0.0),
    }
    if judge_model is not None and not abstained and answerable:
        row.update(judge(judge_model, item.question, item.answer, answer, cited_texts))
    return row
