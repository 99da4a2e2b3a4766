"""A small multimodal report generated with PyMuPDF, with its ground truth.

Hub data sets cannot be downloaded here, and a generated PDF lets tests, the benchmark and the
notebook know exactly what is on each page: a text page, a page with a ruled table, a scanned
page (only an image of rendered text, no text layer) and a page with a chart image carrying
text. The questions come with the exact expected answer and the page that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

REGIONS = ["North", "South", "East", "West"]
QUARTERS = ["Q1", "Q2", "Q3", "Q4"]
REVENUE = {  # million EUR, distinct values so a hit cannot be a coincidence
    "North": ["12.4", "13.1", "14.8", "15.2"],
    "South": ["9.7", "10.3", "41.7", "11.9"],
    "East": ["7.2", "7.9", "8.6", "9.3"],
    "West": ["18.5", "17.6", "19.4", "21.0"],
}
TABLE_CAPTION = "Table 1: Quarterly revenue by region (million EUR), fiscal year 2023"

INTRO = [
    "Northwind Solar Annual Report 2023",
    "Northwind Solar designs, builds and operates photovoltaic plants in four sales regions. "
    "This report summarises the financial year 2023, the inspection programme of our "
    "warehouses and the growth of installed capacity.",
    "The company employed 412 people at the end of the year. Our headquarters moved from "
    "Rotterdam to Utrecht in September, closer to the new research laboratory.",
    "Revenue grew in every region. The South region had an exceptional third quarter after "
    "the completion of the Sevilla plant, while the West remained the largest region overall.",
]

# (sentence on a scanned page, question, exact answer)
SCANNED_FACTS = [
    (
        "The Lisbon warehouse inspection on 14 March 2023 found 37 damaged panels.",
        "How many damaged panels did the Lisbon warehouse inspection find?",
        "37",
    ),
    (
        "Inspector Marta Okafor signed the Lisbon report and ordered new racking.",
        "Who signed the Lisbon inspection report?",
        "Marta Okafor",
    ),
    (
        "The Gdansk depot stored 5,820 inverters in climate controlled halls.",
        "How many inverters did the Gdansk depot store?",
        "5,820",
    ),
    (
        "Fire drills at the Gdansk depot took place every 45 days.",
        "How often did fire drills take place at the Gdansk depot?",
        "45 days",
    ),
    (
        "The Valencia site replaced its forklift fleet with 12 electric units.",
        "How many electric forklifts did the Valencia site buy?",
        "12",
    ),
    (
        "Insurance premiums for all warehouses rose to 1.9 million euros.",
        "How much were the insurance premiums for all warehouses?",
        "1.9 million",
    ),
]

SCAN_HEADING = "Warehouse inspection notes"
FIGURE_CAPTION = "Figure 1: Installed solar capacity by year"
CAPACITY = {"2021": "120 MW", "2022": "185 MW", "2023": "240 MW"}


@dataclass
class Question:
    question: str
    answer: str  # exact string the answer must contain
    page: int
    kind: str  # "table" | "scanned" | "image" | "text"


@dataclass
class SampleReport:
    path: Path
    pages: dict[str, int]  # kind -> 1-based page number
    questions: list[Question] = field(default_factory=list)


def _text_page(doc: pymupdf.Document, lines: list[str], width: float, height: float, fontsize: float) -> pymupdf.Page:
    page = doc.new_page(width=width, height=height)
    page.insert_textbox(pymupdf.Rect(36, 36, width - 36, height - 36), "\n\n".join(lines), fontsize=fontsize)
    return page


def text_image(lines: list[str], width: float, height: float, dpi: int, fontsize: float) -> bytes:
    """PNG of text rendered on a white page: what a scanner would produce."""
    tmp = pymupdf.open()
    png = _text_page(tmp, lines, width, height, fontsize).get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).tobytes("png")
    tmp.close()
    return png


def scanned_sentence_boxes(width: float = 595.0, height: float = 842.0) -> dict[str, tuple[float, float, float, float]]:
    """Where the heading and each sentence of the scanned page were drawn before the page was
    rasterised (PDF points): the ground truth for OCR provenance."""
    tmp = pymupdf.open()
    page = _text_page(tmp, [SCAN_HEADING] + [f for f, _, _ in SCANNED_FACTS], width, height, 12)
    boxes = {}
    for sentence in [SCAN_HEADING] + [f for f, _, _ in SCANNED_FACTS]:
        rects = page.search_for(sentence)
        boxes[sentence] = tuple(pymupdf.Rect(rects[0]).include_rect(rects[-1])) if rects else None
    tmp.close()
    return boxes  # type: ignore[return-value]


def _chart_image(dpi: int = 110) -> bytes:
    """PNG of a small bar chart whose labels and values are text inside the image."""
    tmp = pymupdf.open()
    page = tmp.new_page(width=360, height=240)
    page.insert_text((20, 28), "Installed capacity (MW)", fontsize=15)
    for i, (year, value) in enumerate(CAPACITY.items()):
        h = float(value.split()[0]) / 2 * 0.6
        x = 40 + i * 110
        page.draw_rect(pymupdf.Rect(x, 200 - h, x + 60, 200), color=(0, 0, 0), fill=(0.6, 0.75, 0.9))
        page.insert_text((x + 2, 220), year, fontsize=13)
        page.insert_text((x, 200 - h - 8), value, fontsize=13)
    png = page.get_pixmap(dpi=dpi).tobytes("png")
    tmp.close()
    return png


def _table(page: pymupdf.Page, top: float) -> float:
    """Draw the revenue table with ruled cells; returns its bottom edge."""
    rows = [["Region", *QUARTERS]] + [[r, *REVENUE[r]] for r in REGIONS]
    x0, cw, rh = 72.0, 90.0, 22.0
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            rect = pymupdf.Rect(x0 + j * cw, top + i * rh, x0 + (j + 1) * cw, top + (i + 1) * rh)
            page.draw_rect(rect, color=(0, 0, 0), width=0.6)
            page.insert_text((rect.x0 + 5, rect.y1 - 7), cell, fontsize=10)
    return top + len(rows) * rh


def _paragraphs(page: pymupdf.Page, paragraphs: list[str], top: float = 72.0, fontsize: float = 11) -> float:
    for text in paragraphs:
        rect = pymupdf.Rect(72, top, page.rect.width - 72, top + 200)
        spare = page.insert_textbox(rect, text, fontsize=fontsize)
        top = rect.y1 - spare + 14
    return top


def make_sample_report(path: str | Path, scanned_dpi: int = 150) -> SampleReport:
    """Write the four-page report to ``path`` and return where everything is."""
    path = Path(path)
    doc = pymupdf.open()

    page = doc.new_page()  # 1: text
    _paragraphs(page, INTRO[:1], fontsize=18)
    _paragraphs(page, INTRO[1:], top=110)

    page = doc.new_page()  # 2: table
    top = _paragraphs(
        page,
        [
            "Financial results",
            "Quarterly revenue per region is listed below. All figures are unaudited and rounded to one decimal.",
        ],
    )
    _paragraphs(page, [TABLE_CAPTION], top=top + 6, fontsize=10)
    bottom = _table(page, top + 30)
    _paragraphs(page, ["The board proposes a dividend of 0.42 euros per share."], top=bottom + 20)

    page = doc.new_page()  # 3: scanned, no text layer
    png = text_image(
        [SCAN_HEADING] + [f for f, _, _ in SCANNED_FACTS], page.rect.width, page.rect.height, scanned_dpi, 12
    )
    page.insert_image(page.rect, stream=png)

    page = doc.new_page()  # 4: text with a chart image carrying text
    top = _paragraphs(
        page, ["Capacity growth", "Installed capacity doubled over three years, as the chart below shows."]
    )
    chart = pymupdf.Rect(72, top + 10, 72 + 360, top + 250)
    page.insert_image(chart, stream=_chart_image())
    _paragraphs(page, [FIGURE_CAPTION], top=chart.y1 + 8, fontsize=10)

    doc.save(path)
    doc.close()

    pages = {"text": 1, "table": 2, "scanned": 3, "image": 4}
    questions = [
        Question(f"What was the {q} revenue of the {r} region?", REVENUE[r][i], pages["table"], "table")
        for r in REGIONS
        for i, q in enumerate(QUARTERS)
    ]
    questions += [Question(q, a, pages["scanned"], "scanned") for _, q, a in SCANNED_FACTS]
    questions += [
        Question(f"What was the installed capacity in {y} according to the figure?", v, pages["image"], "image")
        for y, v in CAPACITY.items()
    ]
    questions += [
        Question("How many people did Northwind Solar employ at the end of the year?", "412", pages["text"], "text"),
        Question("Where did the headquarters move in September?", "Utrecht", pages["text"], "text"),
    ]
    return SampleReport(path, pages, questions)


def make_text_pdf(path: str | Path, n_pages: int) -> Path:
    """``n_pages`` pages of plain text (for throughput measurements)."""
    doc = pymupdf.open()
    for i in range(n_pages):
        page = doc.new_page()
        _paragraphs(page, [f"Section {i + 1}. " + " ".join(INTRO[1:])] * 3)
    doc.save(path)
    doc.close()
    return Path(path)


def make_scanned_pdf(path: str | Path, n_pages: int, dpi: int = 150) -> Path:
    """``n_pages`` image-only pages of rendered text (for OCR throughput measurements)."""
    doc = pymupdf.open()
    lines = [f for f, _, _ in SCANNED_FACTS]
    for i in range(n_pages):
        page = doc.new_page()
        page.insert_image(
            page.rect, stream=text_image([f"Scanned page {i + 1}", *lines], page.rect.width, page.rect.height, dpi, 12)
        )
    doc.save(path)
    doc.close()
    return Path(path)
