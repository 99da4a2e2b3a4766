"""Answer a question from a table's cells, not from a paraphrase of them.

The question's terms are matched against the row labels (the table's text columns) and the
column headers. A row and a column that both match name one cell, whose exact string is the
answer. With an aggregate word ("total", "average", "highest", "lowest") and only one axis
matched, the numbers of that column (or row) are aggregated, and the cells used are reported.
Every answer records which cells it read, so it can cite their boxes on the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from graphcraft.chains.terms import STOP, stemmer

_TOKEN = re.compile(r"[a-z]+\d*|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"^[(\-−]?\s*[$€£]?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*%?\)?$")

AGGREGATES = {
    "sum": {"total", "sum", "altogether", "combined", "overall"},
    "mean": {"average", "mean"},
    "max": {"highest", "largest", "maximum", "max", "most", "biggest", "best", "top", "peak"},
    "min": {"lowest", "smallest", "minimum", "min", "least", "fewest", "worst"},
}


@dataclass
class CellAnswer:
    """What the table says: a cell, or an aggregate over cells (positions are frame indexes)."""

    value: str
    row: str  # row label ("" for a column aggregate)
    column: str  # column header ("" for a row aggregate)
    score: float  # how well row and column matched the question, 0..1
    operation: str = "cell"  # cell | sum | mean | max | min
    cells: list[tuple[int, int]] = field(default_factory=list)

    def sentence(self) -> str:
        if self.operation == "cell":
            return f"{self.row}, {self.column}: {self.value}"
        if self.operation in ("max", "min"):
            extreme = "highest" if self.operation == "max" else "lowest"
            of = self.column if self.row and self.column else (self.column or self.row)
            who = self.row if self.column else self.column
            return f"{who} has the {extreme} {of}: {self.value}"
        label = {"sum": "total", "mean": "average"}[self.operation]
        return f"{label} of {self.column or self.row}: {self.value}"


def terms(text: str) -> set[str]:
    """Lower-cased, stemmed content tokens; tokens such as 'q3' or '2023' kept whole."""
    tokens = [t for t in _TOKEN.findall(str(text).lower()) if t not in STOP]
    alpha = [t for t in tokens if t.isalpha()]
    stems = dict(zip(alpha, stemmer().stemWords(alpha), strict=False)) if alpha else {}
    return {stems.get(t, t) for t in tokens}


def parse_number(cell: str) -> float | None:
    """12.4, 5,820, 12%, (3.2) and €4.5 as numbers; anything else None."""
    text = str(cell).strip()
    match = _NUMBER.match(text)
    if not match:
        return None
    value = float((match.group(1) + (match.group(2) or "")).replace(",", ""))
    return -value if text.startswith(("(", "-", "−")) else value


def _decimals(cells: list[str]) -> int:
    return max((len(c.split(".")[-1]) for c in cells if "." in c), default=0)


def label_columns(frame: pd.DataFrame) -> list[int]:
    """Columns holding names rather than numbers (the row labels)."""
    labels = []
    for j, column in enumerate(frame.columns):
        values = [v for v in frame[column] if str(v).strip()]
        if values and sum(parse_number(v) is None for v in values) > len(values) / 2:
            labels.append(j)
    return labels or [0]


def _match(query: set[str], text: str) -> float:
    """Share of the label's terms that the question contains (0 when none)."""
    label = terms(text)
    return len(label & query) / len(label) if label else 0.0


def _best(scores: list[float]) -> int | None:
    """Index of the single best positive score (None when nothing or a tie is best)."""
    top = max(scores, default=0.0)
    if top <= 0 or scores.count(top) > 1:
        return None
    return scores.index(top)


def _operation(query_words: set[str]) -> str | None:
    for name, words in AGGREGATES.items():
        if query_words & words:
            return name
    return None


def lookup_table(question: str, frame: pd.DataFrame) -> CellAnswer | None:
    """The cell (or aggregate) the question asks for, or None when the table cannot say."""
    if frame.empty:
        return None
    query = terms(question)
    labels = label_columns(frame)
    value_cols = [j for j in range(len(frame.columns)) if j not in labels]
    row_names = [" ".join(str(frame.iat[i, j]) for j in labels) for i in range(len(frame))]
    row_scores = [_match(query, name) for name in row_names]
    col_scores = [_match(query, str(frame.columns[j])) if j in value_cols else 0.0 for j in range(len(frame.columns))]
    row, col = _best(row_scores), _best(col_scores)
    if row is not None and col is not None:
        return CellAnswer(
            str(frame.iat[row, col]),
            row_names[row],
            str(frame.columns[col]),
            round(row_scores[row] * col_scores[col], 3),
            cells=[(row, col)],
        )
    op = _operation(set(_TOKEN.findall(question.lower())))
    if op is None:
        return None
    if col is not None:  # aggregate down a column
        cells = [(i, col) for i in range(len(frame)) if parse_number(frame.iat[i, col]) is not None]
        return _aggregate(frame, op, cells, row_names, axis="column", score=col_scores[col])
    if row is not None:  # aggregate along a row, over the columns the question names (all if none)
        top = max(col_scores)
        named = [j for j in value_cols if top > 0 and col_scores[j] == top] or value_cols
        cells = [(row, j) for j in named if parse_number(frame.iat[row, j]) is not None]
        return _aggregate(frame, op, cells, row_names, axis="row", score=row_scores[row])
    return None


def _aggregate(
    frame: pd.DataFrame, op: str, cells: list[tuple[int, int]], row_names: list[str], axis: str, score: float
) -> CellAnswer | None:
    if not cells:
        return None
    texts = [str(frame.iat[i, j]) for i, j in cells]
    numbers = [parse_number(t) for t in texts]
    i0, j0 = cells[0]
    column = str(frame.columns[j0]) if axis == "column" else ""
    row = row_names[i0] if axis == "row" else ""
    if op in ("max", "min"):
        pick = numbers.index(max(numbers) if op == "max" else min(numbers))  # type: ignore[type-var]
        i, j = cells[pick]
        # the answer to "which region was highest in Q3" is the row; the value comes with it
        return CellAnswer(
            texts[pick],
            row_names[i] if axis == "column" else row,
            column if axis == "column" else str(frame.columns[j]),
            round(score, 3),
            op,
            [cells[pick]],
        )
    total = sum(n for n in numbers if n is not None)
    value = total if op == "sum" else total / len(numbers)
    decimals = _decimals(texts) + (0 if op == "sum" else 1)
    return CellAnswer(f"{value:,.{decimals}f}", row, column, round(score, 3), op, cells)
