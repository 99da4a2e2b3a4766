"""Access control: classify documents at ingest, and let a caller see only what its clearance allows.

Levels, lowest first: public < internal < confidential < restricted.

Classification is decided once per document at ingest, from its path and its markings, and
stored in every chunk's metadata (``classification``). Rules are ordered; the first that matches
wins; a document no rule matches is ``internal``. The built-in rules read the markings people
put on documents (``CONFIDENTIAL``, ``RESTRICTED``, ``INTERNAL USE ONLY``, ``PUBLIC`` in the first
or last lines, upper case as markings are written) and folder names (``*/confidential/*`` ...).
``GRAPHCRAFT_CLASSIFICATION_RULES`` names a YAML or JSON file that replaces them: a list (or
``{"rules": [...]}``) of ``{"classification", "path_glob"?, "pattern"?, "scope"?}``, where
``pattern`` is a regular expression searched in the marking lines (``scope: "marking"``, the
default) or the whole text (``scope: "text"``); a rule with both must match both.

A chunk without a label (ingested before classification existed) counts as the default level,
``internal``: hidden from a ``public`` caller, visible from ``internal`` up; re-ingesting the
file labels it. A label that is not one of the four levels counts as ``restricted`` (fail closed).

Clearance holds by construction: `cleared(store, clearance)` returns a ChunkStore holding only
the chunks at or below the clearance (an in-memory copy of their vectors, strip vectors and
texts), so every reader of it - vector, BM25, hybrid, strip search, ``get`` for neighbours,
calibration - can only ever see allowed chunks, and top-k returns k allowed chunks. With the
default clearance (``restricted``), or when nothing is above it, the store itself is returned.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document

from graphcraft.errors import GraphcraftError, StoreError
from graphcraft.stores.vector import ChunkStore

LEVELS = ("public", "internal", "confidential", "restricted")
DEFAULT_LEVEL = "internal"
MARKING_LINES = 5  # non-empty lines read at each end of a document for markings
KEY = "classification"


class ClassificationRulesError(GraphcraftError):
    """The classification rules file cannot be read or holds an invalid rule."""


class ClearanceError(GraphcraftError):
    """A clearance that is not a level, or a run asking for more than its deployment allows."""


def rank(level: str) -> int:
    """0 (public) .. 3 (restricted); anything unknown ranks as restricted."""
    return LEVELS.index(level) if level in LEVELS else len(LEVELS) - 1


def level_of(metadata: Mapping[str, Any]) -> str:
    """A chunk's level: its label, the default level when it has none, restricted when the label is unknown."""
    label = metadata.get(KEY)
    if label is None or label == "":
        return DEFAULT_LEVEL
    return str(label) if label in LEVELS else LEVELS[-1]


def allowed(metadata: Mapping[str, Any], clearance: str) -> bool:
    """True when a chunk with this metadata may be shown to a caller with `clearance`."""
    return rank(level_of(metadata)) <= rank(require_level(clearance))


def highest(levels: Iterable[str]) -> str:
    """The most restrictive of `levels` (public when there are none): what a summary of them inherits."""
    return max(levels, key=rank, default=LEVELS[0])


def require_level(level: str) -> str:
    if level not in LEVELS:
        raise ClearanceError(f"unknown clearance {level!r}: use one of {', '.join(LEVELS)}")
    return level


def lower_only(current: str, requested: str) -> str:
    """The clearance a run may use: `requested` when it does not exceed `current`, else a ClearanceError."""
    if rank(require_level(requested)) > rank(current):
        raise ClearanceError(
            f"clearance {requested!r} is above this deployment's {current!r}: a run may only lower its clearance"
        )
    return requested


# ------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class Rule:
    """One classification rule: a level, and a path glob and/or a pattern that must match."""

    classification: str
    path_glob: str | None = None
    pattern: re.Pattern[str] | None = None
    scope: str = "marking"  # where `pattern` is searched: the marking lines, or the whole text

    def matches(self, path: str, marking: str, text: str) -> bool:
        if self.path_glob is not None and not fnmatch.fnmatchcase(path, self.path_glob):
            return False
        if self.pattern is not None:
            return self.pattern.search(text if self.scope == "text" else marking) is not None
        return True

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"classification": self.classification, "scope": self.scope}
        if self.path_glob is not None:
            out["path_glob"] = self.path_glob
        if self.pattern is not None:
            out["pattern"] = self.pattern.pattern
        return out


def _marking(word: str) -> re.Pattern[str]:
    """A marking as written on a document: the upper-case word(s), alone or as `Classification: WORD`."""
    return re.compile(rf"(?m)^[\s#*_>|\-\[(]*(?:classification\s*:\s*)?{word}\b", re.IGNORECASE)


_BUILTIN_SPECS: tuple[tuple[str, str | None, str | None], ...] = (
    ("restricted", None, r"(?-i:RESTRICTED|TOP SECRET|SECRET|STRICTLY CONFIDENTIAL)"),
    ("confidential", None, r"(?-i:CONFIDENTIAL)"),
    ("internal", None, r"(?-i:INTERNAL(?: USE ONLY)?)"),
    ("public", None, r"(?-i:PUBLIC)"),
    ("restricted", "*/restricted/*", None),
    ("confidential", "*/confidential/*", None),
    ("internal", "*/internal/*", None),
    ("public", "*/public/*", None),
)
BUILTIN_RULES: tuple[Rule, ...] = tuple(
    Rule(level, glob, _marking(word) if word else None) for level, glob, word in _BUILTIN_SPECS
)
"""Markings first (a document's own marking beats the folder it sits in), most restrictive first."""


def _rule(raw: Any, number: int, source: Path) -> Rule:
    where = f"{source}: rule {number}"
    if not isinstance(raw, Mapping):
        raise ClassificationRulesError(f"{where} is not a mapping: write {{classification, path_glob?, pattern?}}")
    unknown = sorted(set(raw) - {"classification", "path_glob", "pattern", "scope"})
    if unknown:
        raise ClassificationRulesError(f"{where} has unknown keys {unknown}: use classification, path_glob, pattern")
    level = raw.get("classification")
    if level not in LEVELS:
        raise ClassificationRulesError(f"{where}: classification {level!r} is not one of {', '.join(LEVELS)}")
    glob, pattern, scope = raw.get("path_glob"), raw.get("pattern"), raw.get("scope", "marking")
    if glob is not None and not isinstance(glob, str) or pattern is not None and not isinstance(pattern, str):
        raise ClassificationRulesError(f"{where}: path_glob and pattern must be strings")
    if scope not in ("marking", "text"):
        raise ClassificationRulesError(f"{where}: scope {scope!r} must be 'marking' or 'text'")
    try:
        compiled = re.compile(pattern) if pattern is not None else None
    except re.error as exc:
        raise ClassificationRulesError(f"{where}: pattern {pattern!r} is not a regular expression ({exc})") from None
    return Rule(level, glob, compiled, scope)


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassificationRulesError(f"cannot read classification rules {path}: {exc}".splitlines()[0]) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json and yaml raise several error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClassificationRulesError(f"classification rules {path} are not valid YAML/JSON: {first}") from None


def load_rules(path: str | Path | None) -> tuple[Rule, ...]:
    """The rules in `path` (YAML or JSON), or the built-in rules when `path` is None."""
    if path is None or str(path) == "":
        return BUILTIN_RULES
    path = Path(path)
    data = _parse(path)
    items = data.get("rules") if isinstance(data, Mapping) else data
    if not isinstance(items, list) or not items:
        raise ClassificationRulesError(
            f"classification rules {path} must be a non-empty list of rules (or {{rules: [...]}})"
        )
    return tuple(_rule(raw, i, path) for i, raw in enumerate(items, start=1))


def rules_digest(rules: Sequence[Rule]) -> str:
    """A short digest of the rules: a file ingested under other rules is classified again."""
    blob = json.dumps([r.describe() for r in rules], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def marking_region(text: str, lines: int = MARKING_LINES) -> str:
    """The first and last non-empty lines of a document, where markings (and headers/footers) sit."""
    kept = [line for line in text.splitlines() if line.strip()]
    if len(kept) <= 2 * lines:
        return "\n".join(kept)
    return "\n".join(kept[:lines] + kept[-lines:])


def classify_document(path: str | Path, text: str, rules: Sequence[Rule] = BUILTIN_RULES) -> str:
    """The level of a document from its path and text: the first matching rule's, else the default."""
    posix = Path(path).as_posix()
    marking = marking_region(text)
    for rule in rules:
        if rule.matches(posix, marking, text):
            return rule.classification
    return DEFAULT_LEVEL


def stamp(chunks: Iterable[Document], level: str) -> None:
    """Write a document's level into each of its chunks' metadata."""
    for chunk in chunks:
        chunk.metadata[KEY] = level


def classify_chunks(path: str | Path, chunks: list[Document], rules: Sequence[Rule]) -> str:
    """Classify a document from its chunks' text (in reading order) and stamp them; its level."""
    text = "\n".join(c.page_content for c in chunks)
    level = classify_document(path, text, rules)
    stamp(chunks, level)
    return level


# ------------------------------------------------------------------------------ the cleared view


class ClearedStore(ChunkStore):
    """A read-only ChunkStore holding only the chunks of `base` a caller with `clearance` may see.

    It is a copy built through the base store's public methods, so whichever backend holds the
    base, every search and lookup here runs over allowed chunks only. `base` stays reachable for
    what must see the whole store (the summary hierarchy, which filters its own nodes).
    """

    def __init__(self, base: ChunkStore, clearance: str) -> None:
        model, dimension = str(base.manifest["embedding_model"]), int(base.manifest["dimension"])
        super().__init__(base.path, base.embeddings, model, dimension)
        self.base, self.clearance = base, require_level(clearance)
        self.hidden = 0
        self._sealed = False
        from graphcraft.guards.nodes import unscreened

        with unscreened():  # a copy of what is stored, not what one run may read
            for source, entry in base.files.items():
                self._copy_file(source, entry)
        self.manifest.update({k: v for k, v in base.manifest.items() if k != "files"})
        self._dirty, self._sealed = False, True

    def _copy_file(self, source: str, entry: Mapping[str, Any]) -> None:
        docs = self.base.get(entry.get("chunk_ids", []))
        keep = [d for d in docs if allowed(d.metadata, self.clearance)]
        self.hidden += len(docs) - len(keep)
        if not keep:
            return
        vectors = [self.base.chunk_vector(str(d.metadata["chunk_id"])) for d in keep]
        pairs = [(d, v) for d, v in zip(keep, vectors, strict=True) if v is not None]
        if not pairs:  # no vector to search by: nothing a caller could retrieve
            return
        info = {k: v for k, v in entry.items() if k not in ("hash", "chunk_ids")}
        strips = [self.base.strip_vectors.get(str(d.metadata["chunk_id"])) for d, _ in pairs]
        self.replace_file(
            source,
            str(entry.get("hash", "")),
            [d for d, _ in pairs],
            np.stack([v for _, v in pairs]).astype(np.float32),
            None if any(s is None for s in strips) else [s for s in strips if s is not None],
            info=info,
        )

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """The base store's file list (a copy): which files were ingested at which hash, not what they
        say, so that the summary hierarchy, kept for the whole store, is judged current against it."""
        if getattr(self, "_sealed", False):
            return {source: dict(entry) for source, entry in self.base.files.items()}
        return self.manifest["files"]

    def _read_only(self) -> StoreError:
        return StoreError(f"store {self.path} is open with clearance {self.clearance!r}: it is read-only")

    def remove_file(self, source: str) -> int:
        if self._sealed:
            raise self._read_only()
        return super().remove_file(source)

    def extend_file(self, *args: Any, **kwargs: Any) -> int:
        if self._sealed:
            raise self._read_only()
        return super().extend_file(*args, **kwargs)

    def mark_dirty(self) -> None:
        raise self._read_only()

    def commit(self) -> None:
        if self._dirty:
            raise self._read_only()


_VIEWS: dict[tuple[int, int, str], ChunkStore] = {}
_VIEWS_LOCK = threading.Lock()


def cleared(store: ChunkStore, clearance: str) -> ChunkStore:
    """`store` as a caller with `clearance` sees it: the store itself when nothing is above the clearance."""
    base = getattr(store, "base", store)
    if rank(require_level(clearance)) >= rank(LEVELS[-1]):
        return base
    key = (base.instance, base.generation, clearance)
    with _VIEWS_LOCK:
        if key not in _VIEWS:
            if all(allowed(d.metadata, clearance) for d in base.documents()):
                view: ChunkStore = base
            else:
                view = ClearedStore(base, clearance)
            while len(_VIEWS) >= 16:  # bounded: one view per store generation and clearance
                _VIEWS.pop(next(iter(_VIEWS)))
            _VIEWS[key] = view
        return _VIEWS[key]


def visible_ids(store: ChunkStore) -> set[str] | None:
    """The chunk ids a cleared store shows, or None when the store is not restricted (everything shows)."""
    if not isinstance(store, ClearedStore):
        return None
    return {str(d.metadata.get("chunk_id")) for d in store.documents()}


_RULES: dict[str, tuple[tuple[int, int], tuple[Rule, ...]]] = {}


def rules_for(settings: Any) -> tuple[Rule, ...]:
    """The rules `settings.classification_rules` names (re-read when the file changes), else the built-in ones."""
    path = getattr(settings, "classification_rules", None)
    if path is None or str(path) == "":
        return BUILTIN_RULES
    try:
        info = Path(path).stat()
    except OSError as exc:
        raise ClassificationRulesError(f"cannot read classification rules {path}: {exc.strerror or exc}") from None
    stamp_ = (info.st_mtime_ns, info.st_size)
    cached = _RULES.get(str(path))
    if cached is None or cached[0] != stamp_:
        _RULES[str(path)] = cached = (stamp_, load_rules(path))
    return cached[1]
