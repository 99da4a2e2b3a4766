"""Store integrity: a missing CURRENT never costs a generation, tampered or damaged files are
refused on open with a one-line error naming the fix, a writer that lost a race is refused, and
write failures (read-only file system, a parent that is a file, a full disk) are one-line errors
that leave the last committed generation intact and no temporary folder behind.

The file-system failures are real: a read-only bind mount and a tiny tmpfs, each in a private
mount namespace (`unshare -m`), so the test needs root or user namespaces; it is skipped where
neither is available.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

from graphcraft.config import get_settings
from graphcraft.errors import StoreError
from graphcraft.ingestion.pipeline import IngestReport, ingest_paths
from graphcraft.stores.vector import open_store, write_lock

TOPICS = ("herons", "lighthouses", "kingfishers", "tides")


def write_doc(folder: Path, name: str, topic: str, sentences: int = 30) -> Path:
    """A Markdown file about `topic`, long enough for a few chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = " ".join(f"Fact {j} about {topic} is recorded in this paragraph." for j in range(sentences))
    path.write_text(f"# About {topic}\n\n{body}\n")
    return path


def ingest(paths: list[Path], store: Path) -> IngestReport:
    return ingest_paths(paths, store, get_settings(store=store))


def generations(store: Path) -> list[str]:
    return sorted(p.name for p in store.glob("gen-*"))


def current_gen(store: Path) -> Path:
    return store / (store / "CURRENT").read_text().strip()


def sources(store: Path) -> set[str]:
    return {Path(d.metadata["source"]).name for d in open_store(store, create=False).documents()}


def snapshot(store: Path) -> dict[str, bytes]:
    """Every file of the store but the lock, by relative path."""
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file() and p.name != "LOCK"}


def reseal(gen_dir: Path) -> None:
    """What an adversary who knows the format does after tampering: recompute the manifest's
    checksums and id-order digest (when the manifest has them), so only structural checks remain."""
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    for name in manifest.get("checksums", {}):
        manifest["checksums"][name] = hashlib.sha256((gen_dir / name).read_bytes()).hexdigest()
    if "ids_sha256" in manifest:
        ids = []
        for line in (gen_dir / "chunks.jsonl").read_text().splitlines():
            row = json.loads(line)
            ids.append(str(row.get("id")) if isinstance(row, dict) else "")
        manifest["ids_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    (gen_dir / "manifest.json").write_text(json.dumps(manifest))


def assert_one_line(exc: BaseException, *needles: str) -> str:
    message = str(exc)
    assert message and "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# ------------------------------------------------------------------ defect 5: CURRENT missing


def test_an_ingest_into_a_store_without_current_recovers_the_newest_generation(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    ingest([write_doc(docs, "a.md", "herons")], store)
    ingest([write_doc(docs, "b.md", "lighthouses")], store)
    newest = current_gen(store).name
    (store / "CURRENT").unlink()
    assert sources(store) == {"a.md", "b.md"}  # a reader sees the newest complete generation
    report = ingest([write_doc(docs, "c.md", "kingfishers")], store)
    assert report.failed == [] and report.added > 0
    assert any("CURRENT" in w["warning"] and newest in w["warning"] for w in report.warnings), report.warnings
    assert sources(store) == {"a.md", "b.md", "c.md"}
    assert newest in generations(store) and (store / "CURRENT").exists()


def test_without_current_and_no_complete_generation_nothing_is_deleted(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    ingest([write_doc(docs, "a.md", "herons")], store)
    (store / "CURRENT").unlink()
    (current_gen_dir := next(store.glob("gen-*"))).joinpath("index.faiss").unlink()  # damaged, not complete
    before = snapshot(store)
    with pytest.raises(StoreError) as err:
        ingest([write_doc(docs, "b.md", "lighthouses")], store)
    assert_one_line(err.value, "CURRENT", current_gen_dir.name)
    assert snapshot(store) == before


def test_only_generations_proven_superseded_are_deleted(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    ingest([write_doc(docs, "a.md", "herons")], store)
    first = current_gen(store)
    stray = store / "gen-000099-1"  # complete, but no later generation descends from it
    shutil.copytree(first, stray)
    for i, topic in enumerate(TOPICS[1:]):
        ingest([write_doc(docs, f"d{i}.md", topic)], store)
    gens = generations(store)
    assert stray.name in gens and first.name not in gens  # the first is an ancestor of the live one
    assert len([g for g in gens if g != stray.name]) == 2  # the live generation and the one before it
    assert sources(store) == {"a.md", "d0.md", "d1.md", "d2.md"}


# ------------------------------------------------------------------ defect 6: verified on open


def test_reordered_chunk_lines_are_refused_on_open_and_by_the_next_ingest(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    ingest([write_doc(docs, "a.md", "herons", sentences=60)], store)
    chunks = current_gen(store) / "chunks.jsonl"
    lines = chunks.read_text().splitlines(keepends=True)
    assert len(lines) >= 2
    lines[0], lines[1] = lines[1], lines[0]
    chunks.write_text("".join(lines))
    with pytest.raises(StoreError) as err:
        open_store(store, create=False)
    assert_one_line(err.value, "chunks.jsonl", "checksum")
    before = snapshot(store)
    with pytest.raises(StoreError):
        ingest([write_doc(docs, "b.md", "tides")], store)
    assert snapshot(store) == before


def _manifest_is_a_list(gen: Path) -> None:
    (gen / "manifest.json").write_text("[1, 2, 3]")


def _line_without_id(gen: Path) -> None:
    lines = (gen / "chunks.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    del row["id"]
    (gen / "chunks.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")


def _line_not_an_object(gen: Path) -> None:
    lines = (gen / "chunks.jsonl").read_text().splitlines()
    (gen / "chunks.jsonl").write_text("\n".join(["[]", *lines[1:]]) + "\n")


def _duplicate_id(gen: Path) -> None:
    lines = (gen / "chunks.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["id"] = json.loads(lines[0])["id"]
    (gen / "chunks.jsonl").write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")


def _index_of_wrong_dimension(gen: Path) -> None:
    rows = len((gen / "chunks.jsonl").read_text().splitlines())
    index = faiss.IndexFlatIP(8)
    index.add(np.random.default_rng(0).random((rows, 8), dtype=np.float32))
    faiss.write_index(index, str(gen / "index.faiss"))


def _index_garbage(gen: Path) -> None:
    (gen / "index.faiss").write_bytes(b"not a faiss index at all")


def _current_points_outside(gen: Path) -> None:
    outside = gen.parent.parent / "elsewhere"
    shutil.copytree(gen, outside)
    (gen.parent / "CURRENT").write_text("../elsewhere")


TAMPERING: dict[str, Callable[[Path], None]] = {
    "manifest is a JSON list": _manifest_is_a_list,
    "chunk line without id": _line_without_id,
    "chunk line not an object": _line_not_an_object,
    "duplicate chunk id": _duplicate_id,
    "index of the wrong dimension": _index_of_wrong_dimension,
    "index is garbage": _index_garbage,
    "CURRENT points outside the store": _current_points_outside,
}


@pytest.mark.parametrize("damage", TAMPERING, ids=list(TAMPERING))
def test_a_damaged_store_is_a_one_line_error_naming_the_fix(tmp_path: Path, damage: str) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    ingest([write_doc(docs, "a.md", "herons", sentences=60)], store)
    gen = current_gen(store)
    TAMPERING[damage](gen)
    if damage not in ("manifest is a JSON list", "CURRENT points outside the store"):
        reseal(gen)
    with pytest.raises(StoreError) as err:
        open_store(store, create=False)
    message = assert_one_line(err.value, str(store))
    assert any(fix in message for fix in ("re-ingest", "CURRENT", "--store")), message


def test_a_writer_that_lost_a_race_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    ingest([write_doc(docs, "a.md", "herons")], store)
    first, second = open_store(store), open_store(store)
    ingest_paths([write_doc(docs, "b.md", "lighthouses")], first, get_settings(store=store))
    with pytest.raises(StoreError) as err:
        ingest_paths([write_doc(docs, "c.md", "tides")], second, get_settings(store=store))
    assert_one_line(err.value, "re-run")
    assert sources(store) == {"a.md", "b.md"}


# ------------------------------------------------------------------ defect 7: write failures


def test_a_store_under_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    doc = write_doc(tmp_path / "docs", "a.md", "herons")
    (tmp_path / "afile").write_text("not a folder")
    store = tmp_path / "afile" / "store"
    with pytest.raises(StoreError) as err:
        with write_lock(store):
            ingest([doc], store)
    assert_one_line(err.value, "afile", "is a file")
    with pytest.raises(StoreError) as err:  # no lock held by the caller: the commit says the same
        ingest([doc], store)
    assert_one_line(err.value, "afile", "is a file")


UNDER_FAILING_FS = textwrap.dedent("""
    import os, sys
    from graphcraft.config import get_settings
    from graphcraft.errors import GraphcraftError
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.vector import open_store, write_lock
    store, doc = sys.argv[1], sys.argv[2]
    print("chunks", len(open_store(store, create=False)))
    try:
        with write_lock(store):
            ingest_paths([doc], store, get_settings(store=store))
        print("ingested")
    except GraphcraftError as exc:
        print("error", exc)
    print("entries", sorted(os.listdir(store)))
    print("chunks", len(open_store(store, create=False)))
""")


def _in_private_mount_namespace(setup: str, store: Path, doc: Path) -> subprocess.CompletedProcess[str]:
    """Run UNDER_FAILING_FS after `setup` (shell, $1 = the store) in a private mount namespace."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare with mount namespaces (root or user namespaces)")
    script = f'{setup} && exec "$2" -c "$3" "$1" "$4"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(store), sys.executable, UNDER_FAILING_FS, str(doc)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _outcome(run: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    lines: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        key, _, rest = line.partition(" ")
        lines.setdefault(key, []).append(rest)
    return lines


def test_a_read_only_store_is_readable_and_an_ingest_is_a_one_line_error(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    ingest([write_doc(docs, "a.md", "herons")], store)
    n = len(open_store(store, create=False))
    before = snapshot(store)
    run = _in_private_mount_namespace('mount --bind -o ro "$1" "$1"', store, write_doc(docs, "b.md", "tides"))
    out = _outcome(run)
    assert out["chunks"] == [str(n), str(n)] and "ingested" not in out
    assert len(out["error"]) == 1 and "read-only" in out["error"][0] and "--store" in out["error"][0]
    assert snapshot(store) == before


def test_a_full_disk_is_a_one_line_error_and_leaves_no_temporary_generation(tmp_path: Path) -> None:
    docs, store = tmp_path / "docs", tmp_path / "store"
    store.mkdir()
    small = write_doc(docs, "small.md", "herons", sentences=2)
    big = write_doc(docs, "big.md", "lighthouses", sentences=400)
    setup = (
        'mount -t tmpfs -o size=160k tmpfs "$1" && "$2" -c "'
        "import sys; from graphcraft.config import get_settings; "
        "from graphcraft.ingestion.pipeline import ingest_paths; "
        f'ingest_paths([sys.argv[2]], sys.argv[1], get_settings(store=sys.argv[1]))" "$1" {small}'
    )
    out = _outcome(_in_private_mount_namespace(setup, store, big))
    assert "ingested" not in out and len(out["error"]) == 1, out
    assert "no space left" in out["error"][0] and "free" in out["error"][0]
    assert out["chunks"][0] == out["chunks"][1] != "0"  # the small file's generation is intact
    entries = json.loads(out["entries"][0].replace("'", '"'))
    assert not [e for e in entries if e.startswith(".")], entries  # no temporary generation left behind
