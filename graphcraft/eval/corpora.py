"""Public evaluation corpora: real documentation that installs offline from Debian packages.

A corpus folder (benchmarks/data/<name>/) holds `corpus.json` — the package, the root the
package installs its HTML under, and the pages chosen — and `questions.jsonl` in the format of
graphcraft.eval.datasets. The pages are not copied into the repository: `materialize` copies
them from the installed package into a folder to ingest, and names the package to install
when it is missing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from graphcraft.eval.datasets import DatasetError, Question, load_questions

CORPORA_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "data"


@dataclass(frozen=True)
class Corpus:
    """One public corpus: where its pages come from and the questions written about them."""

    name: str
    package: str
    root: Path
    files: list[str] = field(default_factory=list)
    folder: Path = CORPORA_DIR

    @property
    def questions_path(self) -> Path:
        return self.folder / "questions.jsonl"

    def questions(self) -> list[Question]:
        return load_questions(self.questions_path)

    def installed(self) -> bool:
        return all((self.root / f).is_file() for f in self.files)

    def missing_reason(self) -> str:
        missing = [f for f in self.files if not (self.root / f).is_file()]
        return (
            f"{len(missing)} page(s) of corpus {self.name!r} missing under {self.root}: apt-get install {self.package}"
        )

    def materialize(self, target: str | Path) -> list[Path]:
        """Copy the corpus pages into `target` (flat, by base name); returns the copied paths."""
        if not self.installed():
            raise DatasetError(self.missing_reason())
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        copied = []
        for rel in self.files:
            dest = target / Path(rel).name
            if not dest.exists() or dest.stat().st_size != (self.root / rel).stat().st_size:
                shutil.copyfile(self.root / rel, dest)
            copied.append(dest)
        return copied


def load_corpus(name_or_folder: str | Path) -> Corpus:
    """The corpus named `name` under benchmarks/data/, or the one in a folder holding corpus.json."""
    folder = Path(name_or_folder)
    if not (folder / "corpus.json").is_file():
        folder = CORPORA_DIR / str(name_or_folder)
    path = folder / "corpus.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read corpus description {path}: {exc}") from exc
    try:
        return Corpus(
            name=str(meta["name"]),
            package=str(meta.get("package", "")),
            root=Path(meta["root"]),
            files=[str(f) for f in meta["files"]],
            folder=folder,
        )
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: missing or malformed field ({exc})") from exc


def available_corpora() -> list[str]:
    """Names of the corpora shipped under benchmarks/data/ (folders with a corpus.json)."""
    return sorted(p.parent.name for p in CORPORA_DIR.glob("*/corpus.json"))
