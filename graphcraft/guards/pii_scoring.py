"""Recall and precision of the PII detector on the labelled set shipped in ``data/pii_set.jsonl``.

Span overlap decides a match: a labelled span is found when a detected span of the same type
overlaps it, and a detected span is correct when it overlaps a labelled span of its type. Overlap
rather than exact offsets because what matters for a guard is that the value is covered ("Dr. Jane
Doe" vs "Jane Doe" are both a hit). Used by benchmarks/pii.py and by the test of the recall floor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphcraft.guards.pii_engine import ENTITIES, STRUCTURED, Found, find_many

SET_PATH = Path(__file__).parent / "data" / "pii_set.jsonl"


@dataclass
class Counts:
    """Per entity type: labelled spans, labelled spans found, detected spans, detected spans correct."""

    labelled: int = 0
    found: int = 0
    detected: int = 0
    correct: int = 0

    @property
    def recall(self) -> float:
        return self.found / self.labelled if self.labelled else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.detected if self.detected else 1.0

    def add(self, other: Counts) -> None:
        self.labelled += other.labelled
        self.found += other.found
        self.detected += other.detected
        self.correct += other.correct


def labelled_set(split: str | None = None) -> list[dict[str, Any]]:
    """The labelled examples ({"text", "entities": [{"type", "start", "end"}], "split"}), of one split or all."""
    rows = [json.loads(line) for line in SET_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if split is None or row["split"] == split]


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def _count_row(gold: Sequence[dict[str, Any]], detected: Sequence[Found], counts: dict[str, Counts]) -> None:
    for span in gold:
        c = counts[span["type"]]
        c.labelled += 1
        c.found += any(
            d.type == span["type"] and _overlaps(d.start, d.end, span["start"], span["end"]) for d in detected
        )
    for d in detected:
        c = counts[d.type]
        c.detected += 1
        c.correct += any(g["type"] == d.type and _overlaps(d.start, d.end, g["start"], g["end"]) for g in gold)


def score(rows: Sequence[dict[str, Any]], spacy_model: str) -> dict[str, Counts]:
    """Counts per entity type over `rows`, plus "STRUCTURED" (email, phone, SSN, card, IBAN, IP) and "ALL"."""
    counts = {entity: Counts() for entity in ENTITIES}
    detected = find_many([row["text"] for row in rows], spacy_model)
    for row, found in zip(rows, detected, strict=True):
        _count_row(row["entities"], found, counts)
    structured, everything = Counts(), Counts()
    for entity, c in counts.items():
        everything.add(c)
        if entity in STRUCTURED:
            structured.add(c)
    return {**counts, "STRUCTURED": structured, "ALL": everything}


def misses(rows: Sequence[dict[str, Any]], spacy_model: str) -> list[str]:
    """One line per missed labelled span and per wrong detection: what to look at when tuning (train split)."""
    lines: list[str] = []
    for row, found in zip(rows, find_many([row["text"] for row in rows], spacy_model), strict=True):
        text = row["text"]
        for g in row["entities"]:
            if not any(d.type == g["type"] and _overlaps(d.start, d.end, g["start"], g["end"]) for d in found):
                lines.append(f"missed {g['type']}: {text[g['start'] : g['end']]!r} in {text!r}")
        for d in found:
            if not any(
                g["type"] == d.type and _overlaps(d.start, d.end, g["start"], g["end"]) for g in row["entities"]
            ):
                lines.append(f"wrong {d.type}: {text[d.start : d.end]!r} in {text!r}")
    return lines
