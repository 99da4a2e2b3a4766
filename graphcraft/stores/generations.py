"""The files of a chunk store on disk: generations, their checksums, recovery and the writer lock.

A store directory holds generations (``gen-000007-<pid>/``: index.faiss, chunks.jsonl,
strips.npy, manifest.json) and ``CURRENT``, the name of the live one. Why each rule exists:

* Checksums. Row *i* of the FAISS index is the vector of line *i* of chunks.jsonl, and nothing
  else ties them together: reordered lines open fine and vector search returns the wrong
  chunks, which the next commit would save. So the manifest records the SHA-256 of every file
  and of the chunk ids in index order, and a generation that does not match is refused on open.
* Lineage. Each manifest names its ``parent``, the generation it was built from. A commit
  deletes only the ancestors of the generation it replaces, which are provably superseded: a
  generation nobody descends from (a stray copy, the work of a writer that crashed before its
  swap) is never deleted, and neither is anything when CURRENT is missing.
* Recovery. Without CURRENT (deleted, or naming a generation that is gone) the store opens the
  newest generation that verifies, and says so; with none, it stops with a one-line error.
* Temporary folders. A generation is written to ``.gen-…tmp`` and renamed; a write that fails
  (full disk, read-only file system) removes its temporary folder and reports one line.
* Vector backends. A store whose manifest says ``"vector_backend": "milvus"`` keeps its chunk
  vectors in a Milvus collection (see stores/milvus_store.py): its generations have no
  index.faiss, and the chunk ids' digest is what ties the generation to the collection.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from graphcraft.errors import StoreError

MANIFEST_VERSION = 2  # 2: checksums, ids_sha256 and parent; 1 (no checksums) still opens
GEN_NAME = re.compile(r"gen-(\d{6,})-(\d+)")
DATA_FILES = ("index.faiss", "chunks.jsonl", "strips.npy")
_HELD: set[tuple[str, int]] = set()  # (store, thread) pairs holding the writer lock, so it can be re-entered


class StoreWriteError(StoreError, OSError):
    """A store could not be written (read-only, full, not a directory ...): one line, and still an OSError."""


class CorruptGeneration(Exception):
    """A generation that does not verify; the message says what is wrong with which file."""


class MissingGeneration(CorruptGeneration):
    """The generation folder does not exist (deleted, or CURRENT names one that never was)."""


@dataclass
class Generation:
    """A generation read from disk and verified."""

    name: str
    manifest: dict[str, Any]
    index: Any  # faiss.Index; None when the vectors live in Milvus
    rows: list[dict[str, Any]]
    strips: np.ndarray | None


def generation_number(name: str) -> int | None:
    match = GEN_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def ids_digest(ids: Iterable[str]) -> str:
    """SHA-256 of the chunk ids in index order: what ties FAISS rows to chunks."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------ reading


def read_current(path: Path) -> str | None:
    """The generation CURRENT names, None without CURRENT; StoreError if it names no generation."""
    try:
        name = (path / "CURRENT").read_text(encoding="utf-8", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):  # no store yet (or a file where its folder would be)
        return None
    except OSError as exc:
        raise StoreError(f"store {path}: cannot read CURRENT ({exc.strerror or exc}): check its permissions") from exc
    if generation_number(name) is None:
        raise StoreError(
            f"store {path} is corrupt: CURRENT names {name[:60]!r}, not a generation of the store: "
            "write the name of a gen-* folder into CURRENT, or re-ingest into a new --store"
        )
    return name


def read_generation(gen_dir: Path) -> Generation:
    """Read and verify one generation; CorruptGeneration (or MissingGeneration) says why not."""
    if gen_dir.is_symlink():  # a generation is a real folder of the store; a link could lead anywhere
        raise CorruptGeneration(f"{gen_dir.name} is a symbolic link, not a folder of the store")
    if not gen_dir.is_dir():
        raise MissingGeneration(f"{gen_dir.name} is missing")
    try:
        manifest = _read_manifest(gen_dir)
        blobs = {name: (gen_dir / name).read_bytes() for name in DATA_FILES if (gen_dir / name).exists()}
    except FileNotFoundError as exc:
        if not gen_dir.is_dir():  # deleted while we read it: a writer moved on
            raise MissingGeneration(f"{gen_dir.name} is missing") from exc
        raise CorruptGeneration(f"{gen_dir.name}/{Path(str(exc.filename)).name} is missing") from exc
    except OSError as exc:
        raise CorruptGeneration(f"{gen_dir.name} is unreadable ({exc.strerror or exc})") from exc
    faiss_backed = vector_backend(manifest) == "faiss"
    for name in ("index.faiss", "chunks.jsonl") if faiss_backed else ("chunks.jsonl",):
        if name not in blobs:
            raise CorruptGeneration(f"{gen_dir.name}/{name} is missing")
    _verify_checksums(gen_dir.name, manifest, blobs)
    index = _read_index(gen_dir.name, blobs["index.faiss"], int(manifest["dimension"])) if faiss_backed else None
    rows = _read_rows(gen_dir.name, blobs["chunks.jsonl"])
    strips = _read_strips(gen_dir.name, blobs.get("strips.npy"))
    _verify_rows(gen_dir.name, manifest, index, rows, strips)
    return Generation(gen_dir.name, manifest, index, rows, strips)


def vector_backend(manifest: dict[str, Any]) -> str:
    """Where a store's chunk vectors live: "faiss" (also for stores older than the setting) or "milvus"."""
    return str(manifest.get("vector_backend") or "faiss")


def _read_manifest(gen_dir: Path) -> dict[str, Any]:
    """The manifest, checked for the fields every reader relies on."""
    try:
        manifest = json.loads((gen_dir / "manifest.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptGeneration(f"{gen_dir.name}/manifest.json is not valid JSON") from exc
    if not isinstance(manifest, dict):
        raise CorruptGeneration(f"{gen_dir.name}/manifest.json is a JSON {type(manifest).__name__}, not an object")
    expected = {"files": dict, "dimension": int, "embedding_model": str, "generation": int}
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise CorruptGeneration(f"{gen_dir.name}/manifest.json has no valid {key!r}")
    if manifest["dimension"] < 1:
        raise CorruptGeneration(f"{gen_dir.name}/manifest.json has no valid 'dimension'")
    if vector_backend(manifest) not in ("faiss", "milvus"):
        raise CorruptGeneration(f"{gen_dir.name}/manifest.json names an unknown vector backend")
    return manifest


def _verify_checksums(name: str, manifest: dict[str, Any], blobs: dict[str, bytes]) -> None:
    """Every file as committed; a version-1 manifest (before checksums) is trusted as it is."""
    checksums = manifest.get("checksums")
    if checksums is None and int(manifest.get("version", 1)) < 2:
        return
    if not isinstance(checksums, dict):
        raise CorruptGeneration(f"{name}/manifest.json has no checksums")
    for file, data in blobs.items():
        if checksums.get(file) != hashlib.sha256(data).hexdigest():
            raise CorruptGeneration(f"{name}/{file} does not match its checksum (edited or damaged)")


def _read_index(name: str, data: bytes, dimension: int) -> Any:
    """The index, with the manifest's dimension and inner-product metric (another one searches nonsense)."""
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CorruptGeneration(f"{name}/index.faiss is not a FAISS index") from exc
    if index.d != dimension:
        raise CorruptGeneration(f"{name}/index.faiss has {index.d}-dimensional vectors, the manifest {dimension}")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise CorruptGeneration(f"{name}/index.faiss is not an inner-product index")
    return index


def _read_rows(name: str, data: bytes) -> list[dict[str, Any]]:
    """One chunk per line: an object with a string id and text and a metadata object."""
    rows: list[dict[str, Any]] = []
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CorruptGeneration(f"{name}/chunks.jsonl is not UTF-8") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorruptGeneration(f"{name}/chunks.jsonl line {number} is not valid JSON") from exc
        if not isinstance(row, dict):
            raise CorruptGeneration(f"{name}/chunks.jsonl line {number} is not a JSON object")
        for key, kind in (("id", str), ("text", str), ("metadata", dict)):
            if not isinstance(row.get(key), kind) or (key == "id" and not row[key]):
                raise CorruptGeneration(f"{name}/chunks.jsonl line {number} has no valid {key!r}")
        rows.append(row)
    return rows


def _read_strips(name: str, data: bytes | None) -> np.ndarray | None:
    """The strip vectors (absent in early stores); never unpickled."""
    if data is None:
        return None
    try:
        strips = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptGeneration(f"{name}/strips.npy is not a NumPy array file") from exc
    if strips.ndim != 2:
        raise CorruptGeneration(f"{name}/strips.npy is not a matrix")
    return strips


def _verify_rows(
    name: str, manifest: dict[str, Any], index: Any, rows: list[dict[str, Any]], strips: np.ndarray | None
) -> None:
    """Rows match the index one to one, in the committed id order; strip ranges lie inside strips.npy."""
    if index is not None and index.ntotal != len(rows):
        raise CorruptGeneration(f"{name} has {index.ntotal} vectors but {len(rows)} chunks")
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        raise CorruptGeneration(f"{name}/chunks.jsonl holds the same chunk id twice")
    expected = manifest.get("ids_sha256")
    if expected is not None and expected != ids_digest(ids):
        raise CorruptGeneration(f"{name}/chunks.jsonl is not in the order of the index")
    limit = 0 if strips is None else len(strips)
    for row in rows:
        span = row.get("strip_rows")
        if span is None:
            continue
        if not (isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)):
            raise CorruptGeneration(f"{name}/chunks.jsonl: chunk {row['id']} has invalid strip_rows")
        if not 0 <= span[0] <= span[1] <= limit:
            raise CorruptGeneration(f"{name}/chunks.jsonl: chunk {row['id']} points outside strips.npy")


def newest_complete(path: Path) -> tuple[Generation | None, list[str]]:
    """The newest generation that verifies (by the generation its manifest records, then time),
    and why each newer-named one did not."""
    problems: list[str] = []
    names = [p.name for p in path.glob("gen-*") if generation_number(p.name) is not None]
    found: list[Generation] = []
    for name in names:
        try:
            gen = read_generation(path / name)
        except CorruptGeneration as exc:
            problems.append(str(exc))
            continue
        if gen.manifest["generation"] != generation_number(name):
            problems.append(f"{name} holds generation {gen.manifest['generation']} (a copy?)")
            continue
        found.append(gen)
    if not found:
        return None, problems
    return max(found, key=lambda g: (g.manifest["generation"], float(g.manifest.get("updated", 0)))), problems


def was_ingested(path: str | Path) -> bool:
    """True when `path` holds a store: a CURRENT pointer or any generation (a lost CURRENT is recovered on open)."""
    path = Path(path)
    return path.is_dir() and ((path / "CURRENT").exists() or bool(generation_names(path)))


def generation_names(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("gen-*") if generation_number(p.name) is not None)


# ------------------------------------------------------------------------------ writing


def write_file(path: Path, chunks: Iterable[bytes]) -> str:
    """Write, flush and fsync `path`; the SHA-256 of what was written.

    Plain os writes, so a full disk is an OSError with its errno (NumPy's tofile reports a
    short write without one)."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for chunk in chunks:
            digest.update(chunk)
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


def write_generation(
    folder: Path, manifest: dict[str, Any], index: Any, records: list[dict[str, Any]], strips: np.ndarray
) -> dict[str, Any]:
    """Write a generation's files into `folder` (a new, empty temporary folder); the manifest as written.

    `index` None: the vectors live elsewhere (Milvus), so the generation has no index.faiss."""
    buffer = io.BytesIO()
    np.save(buffer, strips, allow_pickle=False)
    checksums = (
        {}
        if index is None
        else {"index.faiss": write_file(folder / "index.faiss", [faiss.serialize_index(index).tobytes()])}
    )
    checksums |= {
        "chunks.jsonl": write_file(
            folder / "chunks.jsonl", ((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8") for r in records)
        ),
        "strips.npy": write_file(folder / "strips.npy", [buffer.getvalue()]),
    }
    written = {
        **manifest,
        "version": MANIFEST_VERSION,
        "checksums": checksums,
        "ids_sha256": ids_digest(r["id"] for r in records),
    }
    write_file(folder / "manifest.json", [json.dumps(written, indent=1).encode("utf-8")])
    fsync_dir(folder)
    return written


def fsync_dir(path: Path) -> None:
    """Make renames and new entries in `path` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def next_name(path: Path, after: int) -> tuple[int, str]:
    """A generation number above `after` and above every folder in the store, and a free name for it."""
    numbers = [after]
    for entry in path.iterdir():
        number = generation_number(entry.name.removeprefix(".").removesuffix(".tmp"))
        if number is not None:
            numbers.append(number)
    number = max(numbers) + 1
    while True:
        name = f"gen-{number:06d}-{os.getpid()}"
        if not (path / name).exists() and not (path / f".{name}.tmp").exists():
            return number, name
        number += 1


def ancestors(path: Path, parent: str | None) -> list[str]:
    """`parent` and its ancestors by the manifests' parent links: generations a newer one was built from."""
    out: list[str] = []
    while parent and generation_number(parent) is not None and parent not in out and (path / parent).is_dir():
        out.append(parent)
        try:
            manifest = json.loads((path / parent / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            break
        parent = manifest.get("parent") if isinstance(manifest, dict) else None
    return out


def remove_stale_temporaries(path: Path) -> None:
    """Temporary folders and pointers of writers that died (called under the writer lock)."""
    for stale in [*path.glob(".gen-*.tmp"), *path.glob(".CURRENT.tmp-*")]:
        pid = stale.name.removesuffix(".tmp").rsplit("-", 1)[-1]
        if pid == str(os.getpid()) or not pid_alive(pid):  # under the lock, our own are leftovers too
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def pid_alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------ errors and lock


def _file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` (or itself) that is not a directory."""
    for candidate in [path, *path.parents]:
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def write_error(path: Path, exc: OSError) -> str:
    """One line for a failed store write, naming the fix; the last committed generation is untouched."""
    kept = "nothing was changed"
    blocker = _file_above(path)
    if blocker is not None:
        what = "is a file" if blocker == path else f"cannot be created: {blocker} is a file"
        return f"store {path} {what}, not a directory: choose another --store"
    if exc.errno == errno.EROFS:
        return f"store {path} is on a read-only file system: ingest into a writable --store ({kept}; it still reads)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device of store {path}: free some space or choose another --store ({kept})"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write store {path}: fix its permissions or choose another --store ({kept})"
    return f"cannot write store {path}: {exc.strerror or exc}: check the disk and re-run ({kept})"


def ensure_directory(path: Path) -> None:
    """Create the store folder, or say in one line why it cannot be."""
    if path.exists() and not path.is_dir():
        raise StoreWriteError(f"store {path} is a file, not a directory: choose another --store")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreWriteError(write_error(path, exc)) from exc


@contextmanager
def write_lock(path: str | Path) -> Iterator[None]:
    """Exclusive writer lock on a store directory (ingest, remove, commit): concurrent writers queue up.

    Re-entrant within a thread: a commit takes it too, and the API already holds it around a
    whole ingest (a second flock on the same file from one process would wait for ever)."""
    path = Path(path)
    key = (str(path.resolve()), threading.get_ident())
    if key in _HELD:
        yield
        return
    ensure_directory(path)
    try:
        fh = open(path / "LOCK", "a+")  # closed by the with below, after the lock is released
    except OSError as exc:
        raise StoreWriteError(write_error(path, exc)) from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(fh, fcntl.LOCK_UN)
