"""Tables: exact cell values, kept as a frame for lookups, markdown for embedding."""

from __future__ import annotations

import pymupdf

from graphcraft.eval.multimodal_data import QUARTERS, REGIONS, REVENUE, TABLE_CAPTION
from graphcraft.ingestion.pdf_layout import open_pdf
from graphcraft.ingestion.pdf_tables import extract_tables, frame_from_csv


def test_table_frame_holds_every_exact_value(report):
    with open_pdf(report.path) as doc:
        tables = extract_tables(doc[report.pages["table"] - 1])
    assert len(tables) == 1
    table = tables[0]
    assert list(table.frame.columns) == ["Region", *QUARTERS]
    assert list(table.frame["Region"]) == REGIONS
    for region in REGIONS:
        row = table.frame[table.frame["Region"] == region].iloc[0]
        assert [row[q] for q in QUARTERS] == REVENUE[region]
    assert table.page == report.pages["table"]
    assert table.caption == TABLE_CAPTION


def test_table_bbox_covers_the_cells_on_the_page(report):
    with open_pdf(report.path) as doc:
        page = doc[report.pages["table"] - 1]
        table = extract_tables(page)[0]
        words = page.get_text("words", clip=pymupdf.Rect(table.bbox))
    inside = {w[4] for w in words}
    assert {"Region", "North", "West", "41.7", "21.0"} <= inside
    assert "dividend" not in inside


def test_markdown_keeps_values_as_written_and_csv_round_trips(report):
    with open_pdf(report.path) as doc:
        table = extract_tables(doc[report.pages["table"] - 1])[0]
    md = table.markdown()
    assert md.startswith(TABLE_CAPTION)
    assert "| 21.0 |" in md.replace("  ", " ")  # not re-parsed into 21
    back = frame_from_csv(table.to_csv())
    assert back.equals(table.frame)
    assert back.loc[3, "Q4"] == "21.0"


def test_page_without_ruled_table_yields_no_table(report):
    with open_pdf(report.path) as doc:
        assert extract_tables(doc[report.pages["text"] - 1]) == []
