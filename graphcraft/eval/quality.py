"""Answer quality against the retriever a graph wraps: containment, abstention, two-hop.

A graph is only worth its cost if it answers at least as often as its own retriever would.
Every question is graded three ways, all mechanical (keyword groups, graphcraft.eval.grading):

- `retriever`: the bare retriever's top-k chunks hold the answer keywords (an upper bound for
  anything built on those chunks);
- `contains`: the graph did not abstain and its answer text or the text of the sources it cites
  holds the keywords (what a user can read off the result);
- `answer_text`: the answer text alone holds them (what a user reads first).

Questions whose answer is not in the corpus count abstentions instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphcraft.eval.datasets import Question
from graphcraft.eval.grading import is_abstention, is_correct

ANSWERABLE = frozenset({"single", "paraphrase", "overview"})
TWO_HOP = frozenset({"multi_hop"})
UNANSWERABLE = frozenset({"unanswerable", "external"})


def kind_of(question: Question) -> str:
    """'answerable', 'two_hop' or 'unanswerable' (the three rows of the quality table)."""
    if question.type in TWO_HOP:
        return "two_hop"
    if question.type in UNANSWERABLE:
        return "unanswerable"
    return "answerable"


def result_text(result: Mapping[str, Any]) -> str:
    """The answer and the text of the sources it cites: what a user can read off a result.

    Sources that carry a citation number count only when cited; a graph that numbers none
    presents every source as support, so all of them count.
    """
    sources = list(result.get("sources") or [])
    if any("citation" in s for s in sources):
        sources = [s for s in sources if s.get("citation") is not None]
    return " ".join([str(result.get("answer", ""))] + [str(s.get("text", "")) for s in sources])


def grade_question(question: Question, result: Mapping[str, Any], retrieved: Sequence[str]) -> dict[str, Any]:
    """One row: the retriever's containment, the graph's containment, answer-text containment, abstention."""
    answer = str(result.get("answer", ""))
    trace = result.get("trace") or {}
    abstained = is_abstention(answer, trace.get("abstained"))
    groups = question.answer_keywords
    answerable = kind_of(question) != "unanswerable"
    return {
        "id": question.id,
        "kind": kind_of(question),
        "abstained": abstained,
        "retriever": answerable and bool(groups) and is_correct(" ".join(retrieved), groups),
        "contains": answerable and not abstained and bool(groups) and is_correct(result_text(result), groups),
        "answer_text": answerable and not abstained and bool(groups) and is_correct(answer, groups),
        "llm_calls": int(trace.get("llm_calls", 0)),
        "tokens": int(trace.get("prompt_tokens", 0)) + int(trace.get("completion_tokens", 0)),
        "fallbacks": int((trace.get("structured_outputs") or {}).get("fallbacks", 0)),
    }


@dataclass
class QualitySummary:
    """The figures the answer-quality targets are stated in, for one graph on one question set."""

    graph: str
    n: dict[str, int] = field(default_factory=dict)
    retriever: float = 0.0  # answerable questions whose answer is in the retriever's top k
    contains: float = 0.0  # ... in the graph's answer or cited sources
    ratio: float | None = None  # contains / retriever
    answer_text: float = 0.0  # ... in the answer text itself
    answer_text_given_retrieved: float | None = None  # answer text, among the questions the retriever can answer
    false_abstention: float = 0.0
    two_hop_retriever: float = 0.0
    two_hop_contains: float = 0.0
    two_hop_ratio: float | None = None
    unanswerable_abstention: float = 0.0
    llm_calls: float = 0.0
    tokens: float = 0.0
    seconds: float = 0.0
    fallbacks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _share(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    return sum(bool(r[key]) for r in rows) / len(rows) if rows else 0.0


def summarize_quality(graph: str, rows: Iterable[Mapping[str, Any]]) -> QualitySummary:
    rows = [dict(r) for r in rows]
    answerable = [r for r in rows if r["kind"] == "answerable"]
    two_hop = [r for r in rows if r["kind"] == "two_hop"]
    unanswerable = [r for r in rows if r["kind"] == "unanswerable"]
    retrieved = [r for r in answerable if r["retriever"]]
    s = QualitySummary(
        graph=graph, n={"answerable": len(answerable), "two_hop": len(two_hop), "unanswerable": len(unanswerable)}
    )
    s.retriever, s.contains, s.answer_text = (
        _share(answerable, "retriever"),
        _share(answerable, "contains"),
        _share(answerable, "answer_text"),
    )
    s.ratio = s.contains / s.retriever if s.retriever else None
    s.answer_text_given_retrieved = _share(retrieved, "answer_text") if retrieved else None
    s.false_abstention = _share(answerable, "abstained")
    s.two_hop_retriever, s.two_hop_contains = _share(two_hop, "retriever"), _share(two_hop, "contains")
    s.two_hop_ratio = s.two_hop_contains / s.two_hop_retriever if s.two_hop_retriever else None
    s.unanswerable_abstention = _share(unanswerable, "abstained")
    if rows:
        s.llm_calls = sum(r["llm_calls"] for r in rows) / len(rows)
        s.tokens = sum(r["tokens"] for r in rows) / len(rows)
        s.seconds = sum(r.get("seconds", 0.0) for r in rows) / len(rows)
        s.fallbacks = sum(r.get("fallbacks", 0) for r in rows)
    return s


def evaluate_graph(
    graph: str,
    ask: Callable[[str], Mapping[str, Any]],
    questions: Sequence[Question],
    retrieved: Mapping[str, Sequence[str]],
    on_question: Callable[[], None] | None = None,
) -> list[dict]:
    """Run `ask` on every question and grade it; a graph that raises is graded as an error row."""
    rows = []
    for q in questions:
        start = time.perf_counter()
        try:
            result = ask(q.question)
            error = ""
        except Exception as exc:  # noqa: BLE001 - a failing question is a result of the benchmark
            result, error = {"answer": "", "sources": [], "trace": {"abstained": False}}, f"{type(exc).__name__}: {exc}"
        row = grade_question(q, result, retrieved.get(q.id, []))
        row.update(graph=graph, seconds=time.perf_counter() - start, error=error[:300])
        rows.append(row)
        if on_question is not None:
            on_question()
    return rows
