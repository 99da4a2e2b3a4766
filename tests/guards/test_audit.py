"""The audit trail: every `ask` on a store appends a hash-chained entry; `graphcraft audit verify` finds tampering.

Runs go through `graphcraft.api.ask` (offline CRAG on a tiny ingested store); the tampering tests
edit, remove, reorder, truncate and forge lines of a copy of that log and check that `verify` and
the command line (a real subprocess) name the first bad line. Concurrency uses real processes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from graphcraft.api import ask, ingest
from graphcraft.config import Settings
from graphcraft.guards import audit

QUESTIONS = [
    "Who designed the Zephyr-Quill bridge over the Orla?",
    "When did heavy lorries get banned from the bridge?",
    "What does Marten's Bakery sell on Canal Street?",
    "How often does tram line 2 run to the harbour?",
]
CORPUS = {
    "bridge.md": "# The Orla Bridge\n\nThe Orla Bridge was designed by Ada Lind and opened in 1871. "
    "Heavy lorries have been banned from the bridge since 2004 because the middle arch cracked.\n",
    "bakery.txt": "Marten's Bakery on Canal Street sells rye bread, cinnamon rolls and fruit tarts.\n",
    "trams.md": "# Trams\n\nLine 2 runs from the central station to the harbour every eight minutes.\n",
}

# The real `graphcraft` app with the audit group mounted the way graphcraft/cli/__init__.py does
# (mounted here only if that module does not register it yet).
CLI = (
    "from graphcraft.cli import app, audit; "
    "'audit' in [g.name for g in app.registered_groups] or app.add_typer(audit.app, name='audit'); "
    "app(prog_name='graphcraft')"
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A tiny store and four offline CRAG runs through `ask` (the last one with a user id)."""
    root = tmp_path_factory.mktemp("audit")
    docs = root / "docs"
    docs.mkdir()
    for name, text in CORPUS.items():
        (docs / name).write_text(text, encoding="utf-8")
    ingest([docs], store=root / "store")
    results = [ask(q, store=root / "store") for q in QUESTIONS[:3]]
    results.append(ask(QUESTIONS[3], store=root / "store", user_id="user-42"))
    return root / "store", results


def entries(store: Path) -> list[dict]:
    return [json.loads(line) for line in (store / audit.LOG_NAME).read_text(encoding="utf-8").splitlines()]


def copy_log(store: Path, dest: Path) -> Path:
    """The audit files only, so a test can damage its own copy."""
    dest.mkdir()
    for name in (audit.LOG_NAME, audit.HEAD_NAME):
        shutil.copy(store / name, dest / name)
    return dest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_runs_through_ask_append_chained_entries(audited: tuple[Path, list[dict]]) -> None:
    store, results = audited
    log = entries(store)
    assert [e["seq"] for e in log] == [1, 2, 3, 4]
    assert log[0]["prev"] == audit.GENESIS
    assert [e["prev"] for e in log[1:]] == [e["hash"] for e in log[:-1]]
    for entry, result, question in zip(log, results, QUESTIONS, strict=True):
        trace = result["trace"]
        assert entry["hash"] == audit.entry_hash(entry)
        assert entry["graph"] == "crag" and entry["action"] == trace["action"]
        assert entry["input_sha256"] == hashlib.sha256(question.encode()).hexdigest()
        assert entry["decisions"] == [s["step"] for s in trace["steps"]] and "generate" in entry["decisions"]
        assert {s["chunk_id"] for s in entry["sources"]} == {s["chunk_id"] for s in result["sources"]}
        assert entry["llm_calls"] == 0 and entry["cost"] == 0.0 and entry["stop_reason"] is None
    assert log[1]["sources"], "the lorry question is answered from the store"
    assert [e["user_id"] for e in log] == [None, None, None, "user-42"]
    assert json.loads((store / audit.HEAD_NAME).read_text()) == {"seq": 4, "hash": log[-1]["hash"]}


def test_the_question_text_never_appears_in_the_log(audited: tuple[Path, list[dict]]) -> None:
    text = (audited[0] / audit.LOG_NAME).read_text(encoding="utf-8")
    assert "Zephyr-Quill" not in text
    for question in QUESTIONS:
        assert question not in text


def test_an_intact_log_verifies(audited: tuple[Path, list[dict]]) -> None:
    assert audit.verify(audited[0]) is None
    done = run_cli("audit", "verify", "--store", str(audited[0]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok: 4 entries"
    as_json = json.loads(run_cli("audit", "verify", "--store", str(audited[0]), "--json").stdout)
    assert as_json == {"ok": True, "entries": 4, "bad": None}


def _edit_cost(lines: list[bytes]) -> None:
    entry = json.loads(lines[1])
    entry["cost"] = 99.0
    lines[1] = json.dumps(entry, sort_keys=True).encode() + b"\n"


def _edit_and_rehash(lines: list[bytes]) -> None:
    """An edit that recomputes its own hash: caught by the next entry's prev."""
    entry = json.loads(lines[1])
    entry["user_id"] = "someone-else"
    entry["hash"] = audit.entry_hash(entry)
    lines[1] = json.dumps(entry, sort_keys=True).encode() + b"\n"


def _swap(lines: list[bytes]) -> None:
    lines[1], lines[2] = lines[2], lines[1]


def _truncate_middle(lines: list[bytes]) -> None:
    lines[2] = lines[2][: len(lines[2]) // 2] + b"\n"


def _truncate_last(lines: list[bytes]) -> None:
    lines[3] = lines[3][: len(lines[3]) // 2]


def _forge_appended(lines: list[bytes]) -> None:
    """A well-formed fifth entry chained onto the fourth, written without graphcraft's head."""
    last = json.loads(lines[3])
    forged = {**last, "seq": 5, "prev": last["hash"], "user_id": "intruder"}
    forged["hash"] = audit.entry_hash(forged)
    lines.append(json.dumps(forged, sort_keys=True).encode() + b"\n")


TAMPERING: dict[str, tuple[Callable[[list[bytes]], None], int, str]] = {
    "edit a field": (_edit_cost, 2, "edited"),
    "edit and re-hash": (_edit_and_rehash, 3, "prev is not the previous entry's hash"),
    "delete a middle line": (lambda lines: lines.pop(1), 2, "removed or reordered (expected seq 2)"),
    "delete the last line": (lambda lines: lines.pop(), 4, "removed (the log ends at seq 3"),
    "swap two lines": (_swap, 2, "removed or reordered (expected seq 2)"),
    "truncate a middle line": (_truncate_middle, 3, "truncated or not JSON"),
    "truncate the last line": (_truncate_last, 4, "truncated"),
    "append a forged line": (_forge_appended, 5, "not recorded in audit.head"),
    "append a copy of the last line": (lambda lines: lines.append(lines[-1]), 5, "expected seq 5"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_found_at_the_right_line(audited: tuple[Path, list[dict]], tmp_path: Path, case: str) -> None:
    mutate, line, why = TAMPERING[case]
    store = copy_log(audited[0], tmp_path / "store")
    lines = (store / audit.LOG_NAME).read_bytes().splitlines(keepends=True)
    mutate(lines)
    (store / audit.LOG_NAME).write_bytes(b"".join(lines))
    bad = audit.verify(store)
    assert bad is not None and bad.line == line and why in bad.why, bad
    done = run_cli("audit", "verify", "--store", str(store))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [bad.describe()]
    assert done.stdout.startswith(f"bad entry at line {line} (seq ")


def _append_many(store: str, n: int) -> None:
    for i in range(n):
        audit.append(store, {"worker": multiprocessing.current_process().name, "i": i})


def test_four_processes_appending_at_once_leave_one_valid_chain(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that loaded torch
    workers = [ctx.Process(target=_append_many, args=(str(tmp_path), 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert audit.verify(tmp_path) is None
    log = entries(tmp_path)
    assert [e["seq"] for e in log] == list(range(1, 101))
    assert len({e["worker"] for e in log}) == 4 and len({(e["worker"], e["i"]) for e in log}) == 100


def test_threads_appending_at_once_leave_one_valid_chain(tmp_path: Path) -> None:
    threads = [threading.Thread(target=_append_many, args=(str(tmp_path), 10)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert audit.verify(tmp_path) is None and audit.count(tmp_path) == 60


def test_an_entry_that_cannot_be_written_fails_the_run(audited: tuple[Path, list[dict]], tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(audited[0], store)
    (store / audit.LOG_NAME).unlink()
    (store / audit.LOG_NAME).mkdir()  # a directory where the log should be: unwritable even for root
    with pytest.raises(audit.AuditError) as raised:
        ask(QUESTIONS[1], store=store)
    assert "cannot write the audit log" in str(raised.value) and "\n" not in str(raised.value)


def test_a_run_does_not_chain_onto_a_log_whose_last_line_was_removed(
    audited: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    """Else the new entry would take the removed entry's seq, the head would move, and the removal would vanish."""
    store = tmp_path / "store"
    shutil.copytree(audited[0], store)
    lines = (store / audit.LOG_NAME).read_bytes().splitlines(keepends=True)
    (store / audit.LOG_NAME).write_bytes(b"".join(lines[:-1]))
    with pytest.raises(audit.AuditError, match="does not end where audit.head says"):
        ask(QUESTIONS[1], store=store)
    assert (store / audit.LOG_NAME).read_bytes() == b"".join(lines[:-1])
    bad = audit.verify(store)
    assert bad is not None and bad.line == 4


def test_a_run_on_a_missing_store_fails_without_creating_a_log(tmp_path: Path) -> None:
    from graphcraft.errors import EmptyStoreError

    with pytest.raises(EmptyStoreError):
        ask(QUESTIONS[0], store=tmp_path / "missing")
    assert not (tmp_path / "missing" / audit.LOG_NAME).exists()


@pytest.mark.skipif("audit" not in Settings.model_fields, reason="the `audit` Setting is not in config.py yet")
def test_the_audit_setting_turns_it_off(audited: tuple[Path, list[dict]], tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(audited[0], store)
    ask(QUESTIONS[1], store=store, audit=False)
    assert audit.count(store) == 4


def test_verify_of_a_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_cli("audit", "verify", "--store", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: store {tmp_path / 'nowhere'} does not exist"]
