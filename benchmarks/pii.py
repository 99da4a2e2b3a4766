"""PII detection: per-entity recall and precision (span overlap) on the labelled set, and its cost.

The labelled set (graphcraft/guards/data/pii_set.jsonl) holds templated sentences with values in
many formats (international and national phones of 19 countries, IBANs of 16 countries spaced
and not, IPv4/IPv6, cards grouped 4-4-4-4 / 4-6-5 / 4-6-4 / none, SSNs with dashes, spaces, dots
or none) and hand-written harder cases and hard negatives (Luhn-invalid card numbers, ISBNs,
versions, dates, an IBAN with a bad checksum). The train split was used while choosing
recognizers; the numbers to quote are the test split's.

    python benchmarks/pii.py [--split test|train|all] [--misses] [--megabyte]

--megabyte also times a 1 MB text (prose with PII every ~2 kB) through the windowed analysis.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from graphcraft.config import get_settings
from graphcraft.guards.pii_engine import ENTITIES, find_many
from graphcraft.guards.pii_scoring import labelled_set, misses, score

console = Console()


def quality(split: str | None, model: str, show_misses: bool) -> None:
    rows = labelled_set(split)
    counts = score(rows, model)
    table = Table("entity", "labelled", "found", "recall", "detected", "correct", "precision", title=f"split={split}")
    for name in [*ENTITIES, "STRUCTURED", "ALL"]:
        c = counts[name]
        table.add_row(
            name,
            str(c.labelled),
            str(c.found),
            f"{c.recall:.3f}",
            str(c.detected),
            str(c.correct),
            f"{c.precision:.3f}",
        )
    console.print(f"{len(rows)} examples")
    console.print(table)
    if show_misses:
        for line in misses(rows, model):
            console.print(line, highlight=False, markup=False)


def speed(model: str, megabyte: bool) -> None:
    sentences = [row["text"] for row in labelled_set()]
    start = time.perf_counter()
    find_many(sentences, model)
    elapsed = time.perf_counter() - start
    console.print(f"batched: {len(sentences) / elapsed:.0f} sentences/s ({len(sentences)} sentences)")
    start = time.perf_counter()
    for text in sentences[:60]:
        find_many([text], model)
    console.print(f"one at a time: {60 / (time.perf_counter() - start):.0f} sentences/s")
    if megabyte:
        paragraph = (
            "The committee met on Tuesday to review the budget. Maria Lopez presented the figures and asked "
            "that questions go to maria.lopez@example.org or +34 612 34 56 78 before the next meeting. "
        ) + "The plan was discussed at length, and the minutes record every decision taken. " * 22
        text = (paragraph * (1_000_000 // len(paragraph) + 1))[:1_000_000]
        start = time.perf_counter()
        found = find_many([text], model)[0]
        elapsed = time.perf_counter() - start
        console.print(f"1 MB text: {elapsed:.1f} s ({1000 / elapsed:.0f} kB/s), {len(found)} spans")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test", choices=["test", "train", "all"])
    parser.add_argument("--misses", action="store_true", help="print every missed and wrong span")
    parser.add_argument("--megabyte", action="store_true", help="also time a 1 MB text")
    args = parser.parse_args()
    model = get_settings().spacy_model
    start = time.perf_counter()
    find_many(["warm up"], model)
    console.print(f"analyzer ready in {time.perf_counter() - start:.1f} s ({model})")
    quality(None if args.split == "all" else args.split, model, args.misses)
    speed(model, args.megabyte)


if __name__ == "__main__":
    main()
