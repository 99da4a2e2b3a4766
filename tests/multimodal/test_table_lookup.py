"""Answering from table cells: row label x column header, aggregates, refusals."""

from __future__ import annotations

import pandas as pd
import pytest

from graphcraft.chains.table_lookup import label_columns, lookup_table, parse_number, terms

FRAME = pd.DataFrame(
    [["North", "12.4", "13.1", "1,200"], ["South", "9.7", "41.7", "980"], ["West", "18.5", "17.6", "2,050"]],
    columns=["Region", "Q1 revenue", "Q2 revenue", "Staff"],
    dtype=str,
)


def test_row_and_column_name_one_cell():
    cell = lookup_table("What was the Q2 revenue in the South region?", FRAME)
    assert (cell.value, cell.row, cell.column, cell.operation) == ("41.7", "South", "Q2 revenue", "cell")
    assert cell.cells == [(1, 2)] and cell.score == 1.0


def test_cell_value_is_the_exact_string():
    cell = lookup_table("How many staff does the West region have?", FRAME)
    assert cell.value == "2,050"


@pytest.mark.parametrize(
    ("question", "value", "row", "operation"),
    [
        ("What was the total Q1 revenue?", "40.6", "", "sum"),
        ("What was the average Q1 revenue?", "13.53", "", "mean"),
        ("Which region had the highest Q2 revenue?", "41.7", "South", "max"),
        ("Which region had the lowest Q1 revenue?", "9.7", "South", "min"),
    ],
)
def test_aggregates_over_a_column(question, value, row, operation):
    cell = lookup_table(question, FRAME)
    assert (cell.value, cell.row, cell.operation) == (value, row, operation)
    assert all(j == (1 if "Q1" in question else 2) for _, j in cell.cells)


def test_sentences_say_what_was_read():
    assert lookup_table("What was the Q2 revenue in the South region?", FRAME).sentence() == "South, Q2 revenue: 41.7"
    assert (
        lookup_table("Which region had the highest Q2 revenue?", FRAME).sentence()
        == "South has the highest Q2 revenue: 41.7"
    )
    assert lookup_table("What was the total Q1 revenue?", FRAME).sentence() == "total of Q1 revenue: 40.6"


def test_aggregate_along_a_row():
    cell = lookup_table("What was the total revenue of the North region across quarters?", FRAME)
    # "revenue" names both quarter columns equally: the row is summed over those, not Staff
    assert (cell.operation, cell.row, cell.value) == ("sum", "North", "25.5")
    assert cell.cells == [(0, 1), (0, 2)]


def test_no_answer_when_the_table_cannot_say():
    assert lookup_table("Who signed the inspection report?", FRAME) is None
    assert lookup_table("What was the North revenue?", FRAME) is None  # two revenue columns tie
    assert lookup_table("anything", FRAME.iloc[0:0]) is None


def test_helpers():
    assert parse_number("5,820") == 5820 and parse_number("(3.5)") == -3.5 and parse_number("12%") == 12
    assert parse_number("€4.5") == 4.5 and parse_number("North") is None and parse_number("2023-01") is None
    assert label_columns(FRAME) == [0]
    assert {"q3", "revenu", "south"} <= terms("What was the Q3 revenue of the South region?")
