"""Question sets for evaluation: typed records loaded from JSON Lines (format: samples/README.md).

Benchmarks and tests share one loader so that the question types, the keyword-group shorthand
and the calibration/held-out split mean the same thing everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from graphcraft.errors import GraphcraftError

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"
SAMPLE_QUESTIONS = SAMPLES_DIR / "questions.jsonl"
SAMPLE_CORPUS = SAMPLES_DIR / "corpus"
SAMPLE_EXTERNAL = SAMPLES_DIR / "external"

QUESTION_TYPES = ("single", "paraphrase", "multi_hop", "overview", "unanswerable", "external", "no_retrieval")
# Answerable from the corpus (gold sources in corpus/).
CORPUS_TYPES = frozenset({"single", "paraphrase", "multi_hop", "overview"})
# Not answerable from the corpus: an internal-only system should abstain on these.
NOT_IN_CORPUS_TYPES = frozenset({"unanswerable", "external"})
REQUIRED_KEYS = ("id", "question", "type")


class DatasetError(GraphcraftError):
    """A question file is missing, unreadable or malformed (the message names the line)."""


@dataclass(frozen=True)
class Hop:
    fact: str
    source: str
    evidence: str


@dataclass(frozen=True)
class Question:
    """One graded question. `answer_keywords` is always a list of groups of alternatives."""

    id: str
    question: str
    type: str
    answer: str = ""
    answer_keywords: list[list[str]] = field(default_factory=list)
    gold_sources: list[str] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)
    computed: bool = False
    note: str = ""

    @property
    def number(self) -> int:
        """The numeric part of the id ("m02" -> 2); -1 when the id has none."""
        match = re.search(r"(\d+)$", self.id)
        return int(match.group(1)) if match else -1

    @property
    def in_corpus(self) -> bool:
        """True when the answer is in the corpus (single, paraphrase, multi_hop, overview)."""
        return self.type in CORPUS_TYPES

    @property
    def expects_abstention(self) -> bool:
        """True when a system searching only the corpus should say it does not know."""
        return self.type in NOT_IN_CORPUS_TYPES


def as_groups(raw: Iterable[str | Iterable[str]]) -> list[list[str]]:
    """Keyword groups with the shorthand expanded: a bare string is a one-element group."""
    return [[g] if isinstance(g, str) else [str(a) for a in g] for g in raw]


def _record(obj: dict, where: str) -> Question:
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}")
    if obj["type"] not in QUESTION_TYPES:
        raise DatasetError(
            f"{where}: unknown question type {obj['type']!r} (expected one of {', '.join(QUESTION_TYPES)})"
        )
    try:
        hops = [
            Hop(fact=h.get("fact", ""), source=h["source"], evidence=h.get("evidence", ""))
            for h in obj.get("hops") or []
        ]
        return Question(
            id=str(obj["id"]),
            question=str(obj["question"]),
            type=obj["type"],
            answer=str(obj.get("answer", "")),
            answer_keywords=as_groups(obj.get("answer_keywords") or []),
            gold_sources=[str(s) for s in obj.get("gold_sources") or []],
            hops=hops,
            computed=bool(obj.get("computed", False)),
            note=str(obj.get("note", "")),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{where}: malformed field ({exc})") from exc


def load_questions(path: str | Path = SAMPLE_QUESTIONS, types: Iterable[str] | None = None) -> list[Question]:
    """Read a questions.jsonl file (blank lines skipped), optionally keeping only some types."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read questions file {path}: {exc.strerror or exc}") from exc
    wanted = set(types) if types is not None else None
    questions, seen = [], set()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        q = _record(obj, where)
        if q.id in seen:
            raise DatasetError(f"{where}: duplicate id {q.id!r}")
        seen.add(q.id)
        if wanted is None or q.type in wanted:
            questions.append(q)
    return questions


def split_by_id(questions: Iterable[Question]) -> tuple[list[Question], list[Question]]:
    """(calibration, held_out): even-numbered ids calibrate, odd-numbered ids report.

    The ids are numbered per type, so both halves keep the type mix; numbers tuned on one
    half and reported on the other are not measured on themselves.
    """
    questions = list(questions)
    return [q for q in questions if q.number % 2 == 0], [q for q in questions if q.number % 2 == 1]
