"""Large inputs: a huge file is bounded (at most max_chunks_per_file chunks, reported), committed
in batches inside the file (a kill keeps what was committed and a re-run finishes it without
duplicates), and raising the bound later indexes the rest. Small generated files and lowered
bounds stand in for the 50 MB single-line file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from graphcraft.config import get_settings
from graphcraft.ingestion.pipeline import ingest_paths
from graphcraft.ingestion.splitting import sha256
from graphcraft.stores.vector import open_store


def one_line_file(path: Path, sentences: int) -> Path:
    """A single line of text, no line break anywhere."""
    path.write_text(" ".join(f"Sentence {i} tells how the lighthouse keeper logs the tide." for i in range(sentences)))
    return path


def chunk_ids(store: Path) -> list[str]:
    return [d.metadata["chunk_id"] for d in open_store(store, create=False).documents()]


def test_a_long_single_line_file_is_bounded_and_reported(tmp_path: Path) -> None:
    path = one_line_file(tmp_path / "one_line.txt", sentences=800)  # ~50 KB, ~70 chunks unbounded
    store = tmp_path / "store"
    report = ingest_paths([path], store, get_settings(store=store, max_chunks_per_file=4))
    assert report.failed == [] and report.added == 4
    assert len(open_store(store, create=False)) == 4
    [warning] = report.warnings
    assert warning["path"] == str(path) and "GRAPHCRAFT_MAX_CHUNKS_PER_FILE" in warning["warning"]
    assert "first 4 chunks" in warning["warning"]
    again = ingest_paths([path], store, get_settings(store=store, max_chunks_per_file=4))
    assert (again.skipped, again.added) == (1, 0)


def test_raising_the_bound_indexes_the_rest(tmp_path: Path) -> None:
    path = one_line_file(tmp_path / "one_line.txt", sentences=120)
    store, fresh = tmp_path / "store", tmp_path / "fresh"
    ingest_paths([path], store, get_settings(store=store, max_chunks_per_file=3))
    report = ingest_paths([path], store, get_settings(store=store))
    assert report.skipped == 0 and report.warnings == [] and report.added > 3
    ingest_paths([path], fresh, get_settings(store=fresh))
    assert chunk_ids(store) == chunk_ids(fresh)


KILL_AFTER_SECOND_COMMIT = textwrap.dedent("""
    import os, signal, sys
    import graphcraft.stores.vector as vector
    from graphcraft.config import get_settings
    from graphcraft.ingestion.pipeline import ingest_paths

    commit, commits = vector.ChunkStore.commit, []

    def commit_then_die(self):
        commit(self)
        commits.append(len(self))
        if len(commits) == 2:
            os.kill(os.getpid(), signal.SIGKILL)   # a real kill, in the middle of one file

    vector.ChunkStore.commit = commit_then_die
    store = sys.argv[2]
    ingest_paths([sys.argv[1]], store, get_settings(store=store), commit_every=int(sys.argv[3]))
""")


def test_one_big_file_is_committed_in_batches_and_an_interrupted_one_resumes(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    paragraphs = [f"Paragraph {i}: the ferry to the island leaves at {i} o'clock. " * 9 for i in range(12)]
    path.write_text("# Ferries\n\n" + "\n\n".join(paragraphs))
    store, fresh = tmp_path / "store", tmp_path / "fresh"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_SECOND_COMMIT, str(path), str(store), "3"], capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    partial = open_store(store, create=False)
    full = ingest_paths([path], fresh, get_settings(store=fresh))
    assert 0 < len(partial) < full.added  # part of the one file was committed before the kill
    assert partial.file_hash(str(path.resolve())) != sha256(path.read_bytes())  # and it is not taken as done
    resumed = ingest_paths([path], store, get_settings(store=store))
    assert resumed.failed == [] and resumed.added == full.added - len(partial)
    assert chunk_ids(store) == chunk_ids(fresh)
    assert open_store(store, create=False).file_hash(str(path.resolve())) == sha256(path.read_bytes())
