"""Mechanical grading: keyword correctness, source recall, abstention.

`is_correct` is exactly the rule of samples/README.md: every keyword group must have at least
one alternative occurring in the answer, after lowercasing, dropping `*` and collapsing
whitespace. Recall compares file *names*, because gold sources are names and retrieved chunks
carry paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

from graphcraft.eval.datasets import Question, as_groups


def normalize(text: str) -> str:
    """Lowercase, `*` removed, runs of whitespace (including no-break spaces) collapsed."""
    return re.sub(r"\s+", " ", text.replace("*", "")).strip().lower()


def is_correct(answer: str, keyword_groups: Iterable[str | Iterable[str]]) -> bool:
    """Every group has an alternative that occurs in the answer (samples/README.md)."""
    text = normalize(answer)
    return all(any(normalize(alt) in text for alt in group) for group in as_groups(keyword_groups))


def source_name(source: Any) -> str:
    """File name of a source given as a path string, a source dict or a Document."""
    if isinstance(source, Mapping):
        source = source.get("source", "")
    elif hasattr(source, "metadata"):
        source = source.metadata.get("source", "")
    return PurePath(str(source).replace("\\", "/")).name


def ranked_files(sources: Sequence[Any], k: int | None = None) -> list[str]:
    """Distinct file names in rank order (chunks of one file count once), the first k chunks only."""
    names: list[str] = []
    for s in sources[:k] if k is not None else sources:
        name = source_name(s)
        if name and name not in names:
            names.append(name)
    return names


def recall_at_k(sources: Sequence[Any], gold_sources: Iterable[str], k: int | None = None) -> float | None:
    """Share of gold files among the first k retrieved chunks; None when there is no gold source."""
    gold = {source_name(g) for g in gold_sources}
    if not gold:
        return None
    return len(gold & set(ranked_files(sources, k))) / len(gold)


def hit_at_k(sources: Sequence[Any], gold_sources: Iterable[str], k: int | None = None) -> bool | None:
    """Whether any gold file is among the first k retrieved chunks; None without gold sources."""
    recall = recall_at_k(sources, gold_sources, k)
    return None if recall is None else recall > 0


ABSTENTION_PATTERNS = (
    r"not found in the (sources|documents|context)",
    r"\b(no|not enough|insufficient) (relevant )?(information|evidence|sources?)\b",
    r"\b(cannot|can't|can not|unable to) (answer|find|determine|tell)\b",
    r"\b(i|we) (do not|don't) know\b",
    r"\bnot (available|mentioned|stated|given|specified) in the (sources|documents|context)\b",
)
_ABSTENTION = re.compile("|".join(ABSTENTION_PATTERNS))


def is_abstention(answer: str, abstained: bool | None = None) -> bool:
    """The system declined to answer: its own flag when it reports one, else the answer's wording."""
    if abstained is not None:
        return bool(abstained)
    return bool(_ABSTENTION.search(normalize(answer))) or not answer.strip()


@dataclass
class AbstentionMetrics:
    """How well abstentions match the questions that should be abstained on.

    accuracy: share of all questions where abstaining (or not) was the right call;
    recall: share of should-abstain questions abstained on (unanswerable ones caught);
    precision: share of abstentions that were right; false_abstention_rate: share of
    answerable questions wrongly abstained on. Rates with an empty denominator are None.
    """

    n: int
    should_abstain: int
    abstained: int
    correct_abstentions: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    false_abstention_rate: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def abstention_metrics(should_abstain: Sequence[bool], abstained: Sequence[bool]) -> AbstentionMetrics:
    """Compare expected and actual abstentions, question by question."""
    if len(should_abstain) != len(abstained):
        raise ValueError(f"{len(should_abstain)} expectations but {len(abstained)} outcomes")
    pairs = list(zip(map(bool, should_abstain), map(bool, abstained), strict=False))
    tp = sum(e and a for e, a in pairs)
    expected = sum(e for e, _ in pairs)
    made = sum(a for _, a in pairs)
    answerable = len(pairs) - expected
    right = sum(e == a for e, a in pairs)
    return AbstentionMetrics(
        n=len(pairs),
        should_abstain=expected,
        abstained=made,
        correct_abstentions=tp,
        accuracy=_ratio(right, len(pairs)),
        precision=_ratio(tp, made),
        recall=_ratio(tp, expected),
        false_abstention_rate=_ratio(made - tp, answerable),
    )


def grade_result(
    question: Question, result: Mapping[str, Any], k: int = 5, expect_abstention: bool | None = None
) -> dict[str, Any]:
    """One row for a graph's result ({"answer", "sources", "trace"}) on one question.

    correct: abstained when abstention is expected, otherwise not abstained and passing the
    keywords (overview keywords are only a floor). expect_abstention defaults to
    `question.expects_abstention`; pass False for external questions when the graph has the
    external source.
    """
    expect = question.expects_abstention if expect_abstention is None else expect_abstention
    answer = str(result.get("answer", ""))
    trace = result.get("trace") or {}
    abstained = is_abstention(answer, trace.get("abstained"))
    if expect:
        correct = abstained
    else:
        correct = not abstained and is_correct(answer, question.answer_keywords)
    sources = list(result.get("sources") or [])
    return {
        "id": question.id,
        "type": question.type,
        "correct": correct,
        "abstained": abstained,
        "should_abstain": expect,
        f"recall@{k}": recall_at_k(sources, question.gold_sources, k),
        "llm_calls": int(trace.get("llm_calls", 0)),
    }


def summarize(rows: Sequence[Mapping[str, Any]], k: int = 5) -> dict[str, Any]:
    """Aggregate `grade_result` rows: hit rate on answerable questions, abstention figures, mean recall."""
    answerable = [r for r in rows if not r["should_abstain"]]
    recalls = [r[f"recall@{k}"] for r in rows if r.get(f"recall@{k}") is not None]
    abst = abstention_metrics([r["should_abstain"] for r in rows], [r["abstained"] for r in rows])
    return {
        "n": len(rows),
        "accuracy": _ratio(sum(r["correct"] for r in rows), len(rows)),
        "answer_hit_rate": _ratio(sum(r["correct"] for r in answerable), len(answerable)),
        "abstention_accuracy": abst.accuracy,
        "abstention_recall": abst.recall,
        "false_abstention_rate": abst.false_abstention_rate,
        f"recall@{k}": sum(recalls) / len(recalls) if recalls else None,
        "llm_calls_per_question": _ratio(sum(r.get("llm_calls", 0) for r in rows), len(rows)),
    }
