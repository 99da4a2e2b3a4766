"""Multimodal ingestion speed, and answer quality vs text-only retrieval, side by side.

1. Pages per second of ``load_pdf_multimodal`` (layout, tables, images; no embedding) on
   generated text pages, and on generated scanned pages (rendered at --dpi and OCR'd by
   Tesseract).
2. Hit rates on the generated report (graphcraft.eval.multimodal_data): every question has an
   exact expected answer string and the page that holds it.
   - multimodal: ``graphcraft ingest --multimodal`` stores + the multimodal_rag graph (offline);
   - text-only: the ordinary ingest (text layer only) + hybrid retrieval + the same strip
     refinement and extractive answer chain.
   hit = the expected string is in the answer (citation footer excluded); page = the first
   cited source is on the right page; exact = the first number in the answer is the expected
   one (table questions: did it name the cell, or paste a row?).

    python benchmarks/multimodal.py [--text-pages 40] [--ocr-pages 4] [--dpi 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from graphcraft.config import get_settings
from graphcraft.eval.multimodal_data import make_sample_report, make_scanned_pdf, make_text_pdf
from graphcraft.eval.multimodal_eval import compare, summarize, text_only_answerer
from graphcraft.graphs.multimodal_rag import build
from graphcraft.ingestion.multimodal_pipeline import ingest_multimodal
from graphcraft.ingestion.pdf_multimodal import load_pdf_multimodal
from graphcraft.ingestion.pipeline import ingest_paths


def pages_per_second(path: Path, pages: int, **options: Any) -> dict[str, float]:
    start = time.perf_counter()
    chunks = load_pdf_multimodal(path, **options)
    seconds = time.perf_counter() - start
    return {
        "pages": pages,
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 2),
        "chunks": len(chunks),
    }


def run(text_pages: int, ocr_pages: int, dpi: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text_pdf = make_text_pdf(root / "text.pdf", text_pages)
        scanned_pdf = make_scanned_pdf(root / "scanned.pdf", ocr_pages)
        out["speed"] = {
            "text": pages_per_second(text_pdf, text_pages),
            f"ocr@{dpi}dpi": pages_per_second(scanned_pdf, ocr_pages, dpi=dpi),
        }

        docs = root / "docs"
        docs.mkdir()
        report = make_sample_report(docs / "report.pdf")
        mm_settings = get_settings(store=root / "mm")
        start = time.perf_counter()
        ingest_multimodal([docs], settings=mm_settings)
        out["ingest_s"] = {"multimodal": round(time.perf_counter() - start, 2)}
        start = time.perf_counter()
        ingest_paths([docs], root / "plain", get_settings(store=root / "plain"))
        out["ingest_s"]["text_only"] = round(time.perf_counter() - start, 2)

        graph = build(settings=mm_settings)
        rows = compare(graph, text_only_answerer(root / "plain"), report.questions)
        out["questions"] = rows
    out["summary"] = summarize(out["questions"])
    return out


def show(result: dict[str, Any]) -> None:
    console = Console()
    speed = Table(title="load_pdf_multimodal throughput (no embedding)")
    for col in ("pages", "seconds", "pages/s", "chunks"):
        speed.add_column(col, justify="right")
    speed.add_column("kind", justify="left")
    for kind, s in result["speed"].items():
        speed.add_row(str(s["pages"]), str(s["seconds"]), str(s["pages_per_s"]), str(s["chunks"]), kind)
    console.print(speed)
    console.print(f"ingest of the 4-page report incl. embedding: {result['ingest_s']}")
    quality = Table(title="answers on the generated report: multimodal_rag vs text-only retrieval")
    quality.add_column("questions")
    for col in ("n", "hit mm", "hit text", "page mm", "page text", "exact mm", "exact text", "chars mm", "chars text"):
        quality.add_column(col, justify="right")
    for kind, s in result["summary"].items():
        exact = (f"{s['multimodal_exact']:.2f}", f"{s['text_only_exact']:.2f}") if kind == "table" else ("-", "-")
        quality.add_row(
            kind,
            str(s["n"]),
            f"{s['multimodal_hit']:.2f}",
            f"{s['text_only_hit']:.2f}",
            f"{s['multimodal_page']:.2f}",
            f"{s['text_only_page']:.2f}",
            *exact,
            str(s["multimodal_answer_chars"]),
            str(s["text_only_answer_chars"]),
        )
    console.print(quality)
    mean_s = sum(r["multimodal"]["s"] for r in result["questions"]) / len(result["questions"])
    console.print(f"multimodal_rag mean latency per question (offline): {mean_s:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text-pages", type=int, default=40)
    parser.add_argument("--ocr-pages", type=int, default=4)
    parser.add_argument("--dpi", type=int, default=300, help="rendering resolution for OCR")
    parser.add_argument("--json", type=Path, help="also write the full results here")
    args = parser.parse_args()
    result = run(args.text_pages, args.ocr_pages, args.dpi)
    show(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
