"""The test corpus: facts split across documents (two-hop questions) and markdown sections (hierarchy)."""

from __future__ import annotations

from pathlib import Path

CORPUS = {
    "verdant_labs.md": """# Verdant Labs

Verdant Labs is a biotechnology company that breeds drought-tolerant barley and sells seed to farmers.

## History

Verdant Labs was founded in 2009 by the plant geneticist Ilse Marrow in a rented greenhouse.
Its first barley variety, Dunmoor Gold, reached the market in 2014.

## Headquarters

Verdant Labs has its head office in the Kestrel Tower in Oldmere, a riverside district of Norhaven.
About 140 people work at the head office.
""",
    "norhaven_districts.md": """# Districts of Norhaven

Norhaven is divided into four districts. Population figures are from the 2022 census.

## Oldmere

Oldmere is the old riverside district of Norhaven. Oldmere has 27,300 residents and the city's main market hall.

## Fenwick

Fenwick lies on the northern hills of Norhaven. Fenwick has 12,450 residents and is known for its orchards.

## Saltby

Saltby is the harbour district. Saltby has 8,900 residents.
""",
    "ilse_marrow_interview.txt": """Ilse Marrow grew up in Fenwick, where her parents kept an apple orchard.
She studied plant genetics at the University of Norhaven and worked there for ten years before starting her company.
Asked about drought, she said that barley can be bred to survive a dry summer without losing its yield.
""",
    "harbour_guide.md": """# Norhaven Harbour Guide

## Ferries

Ferries leave Saltby quay for the islands every two hours in summer. The crossing takes forty minutes.

## Lighthouse

The Saltby lighthouse was built in 1861 and is open to visitors on Sundays.
""",
}

NEW_DOCUMENT = (
    "orchard_festival.md",
    """# Fenwick Orchard Festival

The Fenwick Orchard Festival is held every September in the orchards of Fenwick.

## Programme

Visitors pick apples, taste cider from local presses and watch the blossom parade.

## Organisers

The festival is organised by the Fenwick Growers' Association, founded in 1932.
""",
)


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder
