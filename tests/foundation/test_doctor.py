"""`graphcraft doctor`: real checks on this machine (packages, MiniLM, spaCy, Tesseract, a real store,
real sockets for unreachable servers), and the command's table, JSON and exit codes."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from graphcraft import api
from graphcraft.cli.common import add_commands
from graphcraft.cli.doctor import doctor
from graphcraft.config import get_settings
from graphcraft.doctor import NETWORK_TIMEOUT_S, Check, check_cache, check_chat_model, check_store, checks, doctor_ok


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real store holding one small document."""
    root = tmp_path_factory.mktemp("doctor")
    doc = root / "harbour.md"
    doc.write_text("# Harbour\n\nThe harbour trust paid 310,000 crowns for the new pier in 2023.\n", encoding="utf-8")
    api.ingest([doc], root / "store")
    return root / "store"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections but never answers: a hung server, the case a timeout is for."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_name(found: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in found}


app = typer.Typer()
add_commands(app, doctor)


@app.callback()
def _group() -> None:
    """Makes `doctor` a subcommand, as in the real `graphcraft` app."""


def test_everything_required_passes_on_this_machine(store: Path) -> None:
    found = by_name(checks(get_settings(store=store)))
    for name in ("embedding model", "spaCy model", "chat model", "store"):
        assert found[name].ok and found[name].required, found[name]
    assert "offline" in found["chat model"].detail  # no chat model configured is fine, and said so
    assert "chunks" in found["store"].detail and "gen-" in found["store"].detail
    assert found["tesseract"].ok and "'eng'" in found["tesseract"].detail
    assert found["graph database"].ok and not found["graph database"].required
    assert all(found[f"extra: {e}"].ok for e in ("graph", "multimodal", "openai", "local"))
    assert doctor_ok(list(found.values()))


def test_missing_store_is_a_warning_with_its_fix(tmp_path: Path) -> None:
    check = check_store(get_settings(store=tmp_path / "nowhere"))
    assert not check.ok and not check.required and not check.broken
    assert "no store" in check.detail and "graphcraft ingest" in check.fix and str(tmp_path / "nowhere") in check.fix


def test_corrupt_store_is_a_failure(store: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "CURRENT").write_text("not-a-generation")
    check = check_store(get_settings(store=broken))
    assert check.broken and "corrupt" in check.detail and "re-ingest" in check.fix


def test_unreachable_base_url_is_reported_fast() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    check = check_chat_model(get_settings(chat_model="some-model", base_url=url))
    assert time.monotonic() - started < 2
    assert check.broken and "unreachable" in check.detail and "GRAPHCRAFT_BASE_URL" in check.fix


def test_hung_server_is_bounded_by_the_timeout(silent_port: int) -> None:
    started = time.monotonic()
    check = check_chat_model(get_settings(chat_model="some-model", base_url=f"http://127.0.0.1:{silent_port}/v1"))
    assert time.monotonic() - started < NETWORK_TIMEOUT_S + 2
    assert check.broken and "unreachable" in check.detail and "timed out" in check.detail


def test_bogus_chat_model_is_reported_with_its_fix() -> None:
    check = check_chat_model(get_settings(chat_model="nosuchprovider:model"))
    assert check.broken and "nosuchprovider" in check.detail and "GRAPHCRAFT_CHAT_MODEL" in check.fix


def test_missing_gguf_is_reported_not_raised(tmp_path: Path) -> None:
    found = by_name(checks(get_settings(chat_model=f"llamacpp:{tmp_path / 'absent.gguf'}", store=tmp_path)))
    assert found["chat model"].broken and "absent.gguf" in found["chat model"].detail


def test_json_shape_and_exit_code_when_ready(store: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"checks", "ok"} and data["ok"] is True
    assert all(set(c) == {"name", "ok", "detail", "fix", "required"} for c in data["checks"])
    assert {c["name"] for c in data["checks"]} >= {"embedding model", "spaCy model", "store", "graph database"}


def test_missing_store_alone_still_exits_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--store", str(tmp_path / "nowhere")])
    assert result.exit_code == 0, result.output
    assert "warn" in result.stdout and "graphcraft ingest" in result.stdout and "ready" in result.stdout


def test_broken_required_check_exits_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHCRAFT_CHAT_MODEL", "some-model")
    monkeypatch.setenv("GRAPHCRAFT_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    result = CliRunner().invoke(app, ["doctor", "--store", str(tmp_path), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and not by_name([Check(**c) for c in data["checks"]])["chat model"].ok


def test_bad_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHCRAFT_CACHE", "redis")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1 and "GRAPHCRAFT_CACHE" in result.output and "Traceback" not in result.output


def test_deep_starts_the_bundled_falkordb(tmp_path: Path) -> None:
    shallow = by_name(checks(get_settings(store=tmp_path)))["graph database"]
    deep = by_name(checks(get_settings(store=tmp_path), deep=True))["graph database"]
    assert shallow.ok and "--deep" in shallow.detail
    assert deep.ok and "starts and answers" in deep.detail


def test_llm_cache_check_creates_nothing(tmp_path: Path) -> None:
    off = check_cache(get_settings(store=tmp_path / "s"))
    on = check_cache(get_settings(store=tmp_path / "s", cache="sqlite"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    blocked = check_cache(get_settings(cache="sqlite", cache_path=blocker / "c.sqlite"))
    assert off.ok and off.detail == "off" and not off.required
    assert on.ok and "llm_cache.sqlite" in on.detail and not (tmp_path / "s").exists()
    assert blocked.broken and "GRAPHCRAFT_CACHE_PATH" in blocked.fix
