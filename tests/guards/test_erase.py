"""`graphcraft erase --subject`: a data subject leaves every store, the audit trail still verifies.

Real components throughout: MiniLM embeddings, FAISS, spaCy entity extraction into a private
FalkorDB inside the store, the summary hierarchy, LangChain's SQLite LLM cache, LangGraph's SQLite
checkpointer (a conversation thread through `ask`), and the audit trail written by `ask`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphcraft.cli import app
from graphcraft.config import get_settings
from graphcraft.guards import audit
from graphcraft.guards.erase import ErasureError, erase_subject, subject_pattern

SUBJECT = "Jane Doe"
EMAIL = "jane.doe@example.com"
FOUND = re.compile(r"jane[\s_.\-]+doe", re.IGNORECASE)

DOCS = {
    "hr/jane_doe_review.md": "# Annual review\n\nJane Doe joined Halvard Robotics in 2019 as a control engineer. "
    "Jane Doe leads the Norrvik lighthouse retrofit and mentors two apprentices.\n",
    "team.md": "# Team notes\n\nThe Ferrowharf team moved into the new depot in March after the winter storms.\n\n"
    "JANE DOE approved the Ferrowharf depot budget of 2.1 million euros. Contact: jane.doe@example.com.\n\n"
    "The depot has a workshop for crane maintenance and a training room for new staff members.\n",
    "harbour.md": "# Harbour\n\nFerrowharf harbour has twelve cranes and three container berths. "
    "Mira Castell runs the harbour office of Halvard Robotics in Ferrowharf.\n",
}


def _store_files_naming_subject(root: Path) -> list[str]:
    """Every file under the store that holds the subject, in UTF-8 or (numpy names) UTF-32 text."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        utf32 = any(v.encode("utf-32-le") in data for v in ("Jane Doe", "JANE DOE", "jane doe"))
        if FOUND.search(data.decode("utf-8", errors="replace")) or utf32:
            found.append(str(path.relative_to(root)))
    return found


def _graph_naming_subject(graph) -> list[str]:  # type: ignore[no-untyped-def]
    nodes = graph.query("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    edges = graph.query("MATCH ()-[r]->() RETURN type(r) AS type, properties(r) AS props")
    rows = [json.dumps(r, default=str) for r in nodes + edges]
    return [r[:120] for r in rows if FOUND.search(r)]


@pytest.fixture(scope="module")
def erased(tmp_path_factory, embeddings):  # type: ignore[no-untyped-def]
    """A store with the subject everywhere, erased through the CLI; (root, settings, before, report, graph)."""
    from langchain_community.cache import SQLiteCache
    from langchain_core.outputs import Generation

    from graphcraft.api import ask, ingest
    from graphcraft.graph_index.api import build
    from graphcraft.ingestion.hierarchy import build_hierarchy
    from graphcraft.memory.feedback import FeedbackStore
    from graphcraft.stores.graph import open_graph_store
    from graphcraft.stores.vector import open_store

    base = tmp_path_factory.mktemp("erase")
    docs, root = base / "docs", base / "store"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    settings = get_settings(store=root, chunk_size=160, chunk_overlap=0)
    ingest([docs], settings=settings)
    chunks = open_store(root, settings, create=False)
    build_hierarchy(chunks, settings)
    graph = open_graph_store(root, backend="falkordb", falkordb_port=0, settings=settings)
    build(root, settings=settings, graph_store=graph, chunk_store=chunks)
    first = ask("What did Jane Doe approve?", "crag", settings=settings, thread_id="t-1", user_id=EMAIL)
    ask("How many cranes does the harbour have?", "crag", settings=settings, user_id="ops")
    SQLiteCache(str(root / "llm_cache.sqlite")).update(
        "Who approved the budget? Jane Doe did.", "scripted", [Generation(text="Jane Doe")]
    )
    FeedbackStore(root).log_run("r-1", "What does Jane Doe lead?", "single_hop", "crag", 0, 0, 0.1)
    before = _store_files_naming_subject(root)
    graph_before = _graph_naming_subject(graph)
    result = CliRunner().invoke(app, ["erase", "--subject", SUBJECT, "--store", str(root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    yield {"root": root, "settings": settings, "before": before, "graph_before": graph_before, "report": report,
           "graph": graph, "first": first}  # fmt: skip
    graph.stop_server()


def test_the_subject_was_everywhere_before(erased) -> None:  # type: ignore[no-untyped-def]
    before = erased["before"]
    assert any(f.endswith("chunks.jsonl") for f in before), before
    assert any(f.startswith("hierarchy/") for f in before), before
    assert {"audit.jsonl", "checkpoints.sqlite", "llm_cache.sqlite", "feedback.sqlite"} <= set(before), before
    assert erased["graph_before"], "the entity graph named the subject"
    assert any("jane_doe_review" in s["source"] or "team.md" in s["source"] for s in erased["first"]["sources"])


def test_erase_reports_counts_per_store(erased) -> None:  # type: ignore[no-untyped-def]
    report = erased["report"]
    assert report["subject_found"] and not report["dry_run"]
    main = report["chunks"]["main"]
    assert main["files_removed"] == 1  # the review: its path names the subject
    assert main["files_rewritten"] == 1  # team.md keeps its other chunks
    assert main["chunks_removed"] >= 2
    assert report["hierarchy"]["documents_stale"] == 2 and report["hierarchy"]["nodes_removed"] >= 2
    assert report["graph"]["chunks"] == main["chunks_removed"] and report["graph"]["entities_named"] >= 1
    assert report["audit"]["entries"] == 1 and report["audit"]["erasure_entry"] == 3
    assert report["llm_cache"] == {"entries": 1} and report["checkpoints"] == {"threads": 1}
    assert report["feedback"]["runs"] == 1


def test_the_subject_is_found_nowhere_after(erased) -> None:  # type: ignore[no-untyped-def]
    assert _store_files_naming_subject(erased["root"]) == []
    assert _graph_naming_subject(erased["graph"]) == []


def test_the_audit_trail_still_verifies_with_a_tombstone(erased) -> None:  # type: ignore[no-untyped-def]
    root = erased["root"]
    assert audit.verify(root) is None
    result = CliRunner().invoke(app, ["audit", "verify", "--store", str(root)])
    assert result.exit_code == 0 and result.stdout.strip() == "ok: 3 entries"
    log = [json.loads(line) for line in (root / audit.LOG_NAME).read_text().splitlines()]
    assert log[0]["user_id"] == audit.TOMBSTONE and set(log[0]["erased"]) == {"user_id", "sources"}
    assert log[1]["user_id"] == "ops" and "erased" not in log[1]  # other runs untouched
    assert log[2]["event"] == "erasure" and log[2]["redacted"][0]["seq"] == 1


def test_a_later_edit_of_a_redacted_entry_is_still_caught(erased, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = (erased["root"] / audit.LOG_NAME).read_text().splitlines()
    entry = json.loads(lines[0])
    entry["graph"] = "self_rag"  # a field that was not erased
    lines[0] = json.dumps(entry, sort_keys=True)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / audit.LOG_NAME).write_text("\n".join(lines) + "\n")
    (copy / audit.HEAD_NAME).write_text((erased["root"] / audit.HEAD_NAME).read_text())
    bad = audit.verify(copy)
    assert bad is not None and bad.line == 1 and "edited" in bad.why


def test_an_unclaimed_tombstone_is_an_edit(tmp_path: Path) -> None:
    audit.append(tmp_path, {"user_id": "someone", "graph": "crag"})
    audit.append(tmp_path, {"user_id": "other", "graph": "crag"})
    lines = (tmp_path / audit.LOG_NAME).read_text().splitlines()
    entry = json.loads(lines[0])
    entry["erased"] = {"user_id": audit.field_digest("user_id", entry["user_id"])}
    entry["user_id"] = audit.TOMBSTONE  # hash still matches, but no erasure entry claims it
    lines[0] = json.dumps(entry, sort_keys=True)
    (tmp_path / audit.LOG_NAME).write_text("\n".join(lines) + "\n")
    bad = audit.verify(tmp_path)
    assert bad is not None and bad.line == 1 and "no later erasure entry" in bad.why


def test_entries_written_before_field_digests_are_redacted_and_verify(tmp_path: Path) -> None:
    """A log written by the previous format (a hash over the whole body) keeps verifying after erasure."""
    prev = audit.GENESIS
    lines = []
    for seq, user in enumerate([EMAIL, "ops"], start=1):
        entry = {"graph": "crag", "user_id": user, "seq": seq, "prev": prev}
        entry["hash"] = audit.entry_hash(entry)  # no "v": the old whole-body hash
        lines.append(json.dumps(entry, sort_keys=True))
        prev = entry["hash"]
    (tmp_path / audit.LOG_NAME).write_text("\n".join(lines) + "\n")
    (tmp_path / audit.HEAD_NAME).write_text(json.dumps({"seq": 2, "hash": prev}) + "\n")
    assert audit.verify(tmp_path) is None
    done = audit.redact(tmp_path, subject_pattern(EMAIL).search)
    assert (done.entries, done.fields, done.erasure_seq) == (1, 1, 3)
    assert audit.verify(tmp_path) is None
    text = (tmp_path / audit.LOG_NAME).read_text()
    assert EMAIL not in text
    tampered = text.replace('"graph": "crag"', '"graph": "other"', 1)  # the old entry's kept field
    (tmp_path / audit.LOG_NAME).write_text(tampered)
    bad = audit.verify(tmp_path)
    assert bad is not None and bad.line == 1 and "erasure entry recorded" in bad.why


def test_other_documents_remain_answerable(erased) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.api import ask

    result = ask("How many cranes does Ferrowharf harbour have?", "crag", settings=erased["settings"])
    assert "twelve cranes" in result["answer"]
    assert any(s["source"].endswith("harbour.md") for s in result["sources"])
    kept = ask("Where did the Ferrowharf team move after the storms?", "crag", settings=erased["settings"])
    assert "depot" in kept["answer"] and any(s["source"].endswith("team.md") for s in kept["sources"])
    assert not FOUND.search(kept["answer"])


def test_a_dry_run_counts_and_changes_nothing(erased) -> None:  # type: ignore[no-untyped-def]
    root = erased["root"]
    snapshot = {p: p.read_bytes() for p in root.rglob("*.jsonl")}
    report = erase_subject(root, "Mira Castell", settings=erased["settings"], dry_run=True, graph_store=erased["graph"])
    assert report.dry_run and report.subject_found and report.chunks["main"]["chunks_removed"] == 1
    assert {p: p.read_bytes() for p in root.rglob("*.jsonl")} == snapshot


@pytest.mark.parametrize(
    ("subject", "text", "hit"),
    [
        ("Jane Doe", "report by JANE   DOE today", True),
        ("Jane Doe", "file jane_doe_review.md", True),
        ("Jane Doe", "Janet Doe and Jane Doering", False),
        (EMAIL, "mail JANE.DOE@EXAMPLE.COM now", True),
        (EMAIL, "mail xjane.doe@example.com", False),
    ],
)
def test_subject_matching_is_whole_words_any_case(subject: str, text: str, hit: bool) -> None:
    assert (subject_pattern(subject).search(text) is not None) is hit


def test_a_too_short_subject_is_refused() -> None:
    with pytest.raises(ErasureError, match="too short"):
        subject_pattern(" J ")
