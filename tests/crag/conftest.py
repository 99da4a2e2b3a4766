"""A small corpus (and an 'external' corpus) ingested once for the CRAG tests."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = {
    "orla_bridge.md": """# The Orla Bridge

The Orla Bridge was designed by the engineer Ada Lind and opened to traffic in 1871.
It crosses the Orla river on three stone arches, each about twenty metres wide.

## Maintenance

The city council repainted the iron railings in 1998. Heavy lorries have been banned from the bridge since 2004
because the middle arch showed cracks after a flood.
""",
    "bakery.txt": """Marten's Bakery on Canal Street sells rye bread, cinnamon rolls and seasonal fruit tarts.
The bakery opens at six in the morning and closes when the bread runs out. Its sourdough starter is
said to be forty years old. On Sundays the bakery is closed.
""",
    "trams.md": """# Trams of Maren

Maren's tram network has four lines. Line 2 runs from the central station to the harbour every eight minutes.
Tickets can be bought from machines at every stop or with the city's travel card.
The oldest tram still in service was built in 1962.
""",
}

EXTERNAL = {
    "lakes.md": """# Lake Vessa

Lake Vessa lies north of Maren. The lake is fourteen kilometres long and its deepest point is 62 metres.
Fishing is allowed from May to September.
""",
}


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def crag_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from graphcraft.api import ingest

    root = tmp_path_factory.mktemp("crag")
    corpus, external = write(root / "corpus", CORPUS), write(root / "external", EXTERNAL)
    ingest([corpus], store=root / "store")
    ingest([external], store=root / "external_store")
    return {"store": root / "store", "external": root / "external_store", "corpus": corpus}
