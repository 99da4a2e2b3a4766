"""Symbolic links: an ingested folder never pulls in files from outside the given roots (a link
to /etc/passwd, to a private folder, a file swapped for a link while the ingest runs) unless
following links is asked for; skipped links are reported, loops end."""

from __future__ import annotations

import os
from pathlib import Path

from graphcraft.config import get_settings
from graphcraft.ingestion.pipeline import ingest_paths
from graphcraft.stores.vector import open_store

SECRET = "The vault code is 4417 and the spare key hangs behind the boiler."


def tree(tmp_path: Path) -> tuple[Path, Path]:
    """docs/ with one real note and links of every kind; outside/ with a secret."""
    outside = tmp_path / "outside"
    (outside / "deeper").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "deeper" / "plans.md").write_text("# Plans\n\nThe escape tunnel starts under the shed.")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "notes.md").write_text("# Notes\n\nHerons nest in March along the river.")
    (docs / "passwd.txt").symlink_to("/etc/passwd")
    (docs / "secret.txt").symlink_to(outside / "secret.txt")
    (docs / "linked_dir").symlink_to(outside, target_is_directory=True)
    (docs / "sub" / "same_notes.md").symlink_to(docs / "notes.md")  # inside the folder: the same file
    (docs / "sub" / "loop").symlink_to(docs, target_is_directory=True)  # a cycle
    (docs / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    return docs, outside


def texts(store: Path) -> list[str]:
    return [d.page_content for d in open_store(store, create=False).documents()]


def test_links_that_leave_the_folder_are_skipped_and_reported(tmp_path: Path) -> None:
    docs, _ = tree(tmp_path)
    store = tmp_path / "store"
    report = ingest_paths([docs], store, get_settings(store=store))
    assert report.failed == [] and report.files == 1
    assert {Path(d.metadata["source"]) for d in open_store(store, create=False).documents()} == {
        (docs / "notes.md").resolve()
    }
    stored = " ".join(texts(store))
    assert "vault code" not in stored and "root:" not in stored and "tunnel" not in stored
    skipped = {Path(w["path"]).name: w["warning"] for w in report.warnings}
    assert set(skipped) == {"passwd.txt", "secret.txt", "linked_dir", "dangling.txt"}, skipped
    assert "/etc/passwd" in skipped["passwd.txt"] and "GRAPHCRAFT_FOLLOW_LINKS" in skipped["secret.txt"]
    assert all(w.startswith("skipped") for w in skipped.values())


def test_following_links_is_an_option_and_loops_end(tmp_path: Path) -> None:
    docs, _ = tree(tmp_path)
    store = tmp_path / "store"
    report = ingest_paths([docs], store, get_settings(store=store, follow_links=True))
    assert report.failed == []
    sources = [
        d.metadata["source"] for d in open_store(store, create=False).documents() if d.metadata["chunk_index"] == 0
    ]
    assert sorted(Path(s).name for s in sources) == ["notes.md", "passwd", "plans.md", "secret.txt"]  # once each
    assert any("vault code" in t for t in texts(store))


def test_a_path_swapped_for_a_link_while_the_ingest_runs_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "sub" / "c.md").write_text(SECRET)
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    for name in ("a.md", "b.md", "sub/c.md"):
        (docs / name).write_text(f"# {name}\n\nKingfishers dive for small fish in {name}.")

    def swap(done: int, total: int, current: str) -> None:
        if done == 0:  # after the folder was listed, before any file is read
            (docs / "b.md").unlink()
            (docs / "b.md").symlink_to(outside / "secret.txt")
            os.rename(docs / "sub", tmp_path / "old_sub")
            (docs / "sub").symlink_to(outside / "sub", target_is_directory=True)

    store = tmp_path / "store"
    report = ingest_paths([docs], store, get_settings(store=store), on_progress=swap)
    failed = {Path(f["path"]).name for f in report.failed}
    assert failed == {"b.md", "c.md"}, report.failed
    assert all("changed" in f["error"] for f in report.failed)
    assert "vault code" not in " ".join(texts(store))


def test_the_command_line_skips_outside_links_unless_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from graphcraft.cli import app

    docs, _ = tree(tmp_path)
    runner = CliRunner()
    plain = runner.invoke(app, ["ingest", str(docs), "--store", str(tmp_path / "a"), "--json"])
    assert plain.exit_code == 0, plain.output
    assert not any(SECRET in t for t in texts(tmp_path / "a"))
    assert "skipped" in plain.output and "follow" in plain.output.lower()
    followed = runner.invoke(app, ["ingest", str(docs), "--store", str(tmp_path / "b"), "--follow-links", "--json"])
    assert followed.exit_code == 0, followed.output
    assert any(SECRET in t for t in texts(tmp_path / "b"))


def test_multimodal_ingest_skips_outside_links_too(tmp_path: Path) -> None:
    import graphcraft

    docs, _ = tree(tmp_path)
    report = graphcraft.ingest([docs], store=tmp_path / "mm", multimodal=True)
    assert not report["failed"], report["failed"]
    assert any("leads out of the ingested folders" in w["warning"] for w in report["warnings"])
    assert not any(SECRET in t for t in texts(tmp_path / "mm")) and any("Herons" in t for t in texts(tmp_path / "mm"))
