"""Ingestion: idempotence, changed-file replacement, deletion, bad files, kill-and-resume."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pymupdf
import pytest

from graphcraft.api import ingest, remove
from graphcraft.stores.vector import open_store


def make_docs(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"doc{i}.md").write_text(
            f"# Topic {i}\n\n" + " ".join(f"Fact {j} about subject {i} is recorded here." for j in range(60))
        )
    return folder


def chunk_ids(store: Path) -> list[str]:
    return [d.metadata["chunk_id"] for d in open_store(store, create=False).documents()]


def test_reingesting_unchanged_files_adds_nothing(tmp_path: Path) -> None:
    docs = make_docs(tmp_path / "docs")
    first = ingest([docs], store=tmp_path / "store")
    assert first["files"] == 3 and first["added"] > 3 and first["failed"] == []
    ids = chunk_ids(tmp_path / "store")
    second = ingest([docs], store=tmp_path / "store")
    expected = {"files": 3, "added": 0, "skipped": 3, "removed": 0, "failed": [], "warnings": []}
    assert {k: second[k] for k in expected} == expected
    assert chunk_ids(tmp_path / "store") == ids


def test_changed_file_replaces_its_old_chunks(tmp_path: Path) -> None:
    docs = make_docs(tmp_path / "docs")
    ingest([docs], store=tmp_path / "store")
    before = open_store(tmp_path / "store", create=False)
    old = {d.metadata["chunk_id"] for d in before.documents() if d.metadata["source"].endswith("doc1.md")}
    (docs / "doc1.md").write_text("# Changed\n\nThe pelican migration starts in April.")
    report = ingest([docs], store=tmp_path / "store")
    assert report["skipped"] == 2 and report["added"] == 1
    after = open_store(tmp_path / "store", create=False)
    texts = [d.page_content for d in after.documents() if d.metadata["source"].endswith("doc1.md")]
    assert (
        len(texts) == 1
        and texts[0].startswith("# Changed")
        and texts[0].endswith("The pelican migration starts in April.")
    )
    assert not old & {d.metadata["chunk_id"] for d in after.documents()}
    assert len(after) == len(before) - len(old) + 1


def test_deleted_file_can_be_removed_and_pruned(tmp_path: Path) -> None:
    docs = make_docs(tmp_path / "docs")
    ingest([docs], store=tmp_path / "store")
    n_doc0 = sum(d.metadata["source"].endswith("doc0.md") for d in open_store(tmp_path / "store").documents())
    removed = remove([docs / "doc0.md"], store=tmp_path / "store")
    assert (removed["files"], removed["removed"]) == (1, n_doc0)
    sources = {Path(d.metadata["source"]).name for d in open_store(tmp_path / "store").documents()}
    assert sources == {"doc1.md", "doc2.md"}
    (docs / "doc2.md").unlink()
    report = ingest([docs], store=tmp_path / "store", prune=True)  # doc0 comes back (it exists), doc2 goes
    assert report["removed"] > 0 and report["added"] == n_doc0
    sources = {Path(d.metadata["source"]).name for d in open_store(tmp_path / "store").documents()}
    assert sources == {"doc0.md", "doc1.md"}


def test_bad_files_are_reported_and_the_rest_ingests(tmp_path: Path) -> None:
    docs = make_docs(tmp_path / "docs", n=2)
    (docs / "empty.txt").write_text("")
    (docs / "blank.md").write_text("   \n\n")
    (docs / "image.bin").write_bytes(bytes(range(256)) * 4)
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.7\n this is not really a pdf")
    encrypted = pymupdf.open()
    encrypted.new_page().insert_text((72, 72), "secret text")
    encrypted.save(docs / "locked.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="owner")
    report = ingest([docs, tmp_path / "missing.txt"], store=tmp_path / "store")
    errors = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert errors == {
        "empty.txt": "empty file",
        "blank.md": "empty file",
        "image.bin": "binary file (not text)",
        "corrupt.pdf": errors["corrupt.pdf"],
        "locked.pdf": "encrypted PDF (password required)",
        "missing.txt": "no such file or directory",
    }
    assert errors["corrupt.pdf"].startswith("corrupt or unreadable PDF")
    assert report["added"] > 0
    assert {Path(d.metadata["source"]).name for d in open_store(tmp_path / "store").documents()} == {
        "doc0.md",
        "doc1.md",
    }


def test_pdf_pages_and_html_sections_keep_provenance(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = pymupdf.open()
    for page_text in ("The first page talks about owls.", "The second page says herons nest in March."):
        pdf.new_page().insert_text((72, 72), page_text)
    pdf.save(folder / "birds.pdf")
    (folder / "page.html").write_text(
        "<html><head><title>T</title><script>var x=1;</script></head><body><h1>Harbour</h1>"
        "<p>The harbour master is Ines Ruiz.</p></body></html>"
    )
    ingest([folder], store=tmp_path / "store")
    docs = {d.page_content: d.metadata for d in open_store(tmp_path / "store").documents()}
    heron = next(m for t, m in docs.items() if "herons" in t)
    assert heron["page"] == 2 and heron["source"].endswith("birds.pdf")
    html = next((t, m) for t, m in docs.items() if "Ines Ruiz" in t)
    assert "var x" not in html[0] and html[1]["section"] == "Harbour"


KILLER = textwrap.dedent("""
    import os, signal, sys
    from graphcraft.ingestion.pipeline import ingest_paths
    def on_progress(done, total, current):
        if done == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)   # a real kill, mid-ingest
    ingest_paths([sys.argv[1]], sys.argv[2], on_progress=on_progress, commit_every=1)
""")


def test_killed_ingest_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    docs = make_docs(tmp_path / "docs", n=6)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(docs), str(tmp_path / "store"), "4"], capture_output=True
    )
    assert killed.returncode == -9
    partial = open_store(tmp_path / "store", create=False)
    assert 0 < len(partial.files) < 6  # some files were committed before the kill
    resumed = ingest([docs], store=tmp_path / "store")
    assert resumed["skipped"] == len(partial.files) and resumed["failed"] == []
    ingest([docs], store=tmp_path / "fresh")
    assert sorted(chunk_ids(tmp_path / "store")) == sorted(chunk_ids(tmp_path / "fresh"))
    assert len(set(chunk_ids(tmp_path / "store"))) == len(chunk_ids(tmp_path / "store"))


def test_a_crash_during_commit_keeps_the_previous_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = make_docs(tmp_path / "docs", n=2)
    ingest([docs], store=tmp_path / "store")
    before = chunk_ids(tmp_path / "store")
    (docs / "new.md").write_text("A brand new document about lighthouses.")
    import graphcraft.stores.vector as vector

    def crash(*_: object) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(vector.os, "replace", crash)
    with pytest.raises(OSError):
        ingest([docs], store=tmp_path / "store")
    monkeypatch.undo()
    assert chunk_ids(tmp_path / "store") == before
    assert ingest([docs], store=tmp_path / "store")["added"] == 1


def test_store_refuses_another_embedding_model(tmp_path: Path) -> None:
    from graphcraft.errors import StoreError
    from graphcraft.models import get_embeddings
    from graphcraft.stores.vector import ChunkStore

    ingest([make_docs(tmp_path / "docs", 1)], store=tmp_path / "store")
    with pytest.raises(StoreError, match="built with all-MiniLM-L6-v2"):
        ChunkStore.open(tmp_path / "store", get_embeddings(), "other-model", 384)
    manifest = json.loads(next((tmp_path / "store").glob("gen-*/manifest.json")).read_text())
    assert manifest["embedding_model"] == "all-MiniLM-L6-v2" and manifest["dimension"] == 384


def test_identical_files_in_different_places_both_ingest(tmp_path: Path) -> None:
    docs = make_docs(tmp_path / "docs", n=1)
    (docs / "nested").mkdir()
    (docs / "nested" / "copy.md").write_bytes((docs / "doc0.md").read_bytes())
    report = ingest([docs], store=tmp_path / "store")
    assert report["failed"] == [] and report["files"] == 2
    ids = chunk_ids(tmp_path / "store")
    assert len(ids) == len(set(ids)) == report["added"]


def test_odd_utf16_and_a_file_as_store_are_clear_errors(tmp_path: Path) -> None:
    from graphcraft.errors import StoreError

    (tmp_path / "u.txt").write_bytes(b"\xff\xfeA\x00B\x00C")
    (tmp_path / "ok.txt").write_text("A perfectly normal sentence about herons.")
    report = ingest([tmp_path / "u.txt", tmp_path / "ok.txt"], store=tmp_path / "store")
    assert (
        report["failed"] == [{"path": str(tmp_path / "u.txt"), "error": "invalid UTF-16 text"}] and report["added"] == 1
    )
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        ingest([tmp_path / "ok.txt"], store=tmp_path / "afile")


def test_concurrent_ingests_into_one_store_both_land(tmp_path: Path) -> None:
    import concurrent.futures

    a, b = make_docs(tmp_path / "a", n=2), tmp_path / "b"
    b.mkdir()
    (b / "other.md").write_text("A separate document about kingfishers and their nests.")
    code = "import sys, graphcraft; graphcraft.ingest([sys.argv[1]], store=sys.argv[2])"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda d: subprocess.run(
                    [sys.executable, "-c", code, str(d), str(tmp_path / "store")], capture_output=True, text=True
                ),
                [a, b],
            )
        )
    assert all(r.returncode == 0 for r in runs), [r.stderr[-500:] for r in runs]
    names = {Path(d.metadata["source"]).name for d in open_store(tmp_path / "store", create=False).documents()}
    assert names == {"doc0.md", "doc1.md", "other.md"}
