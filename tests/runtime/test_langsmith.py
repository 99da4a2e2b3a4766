"""LangSmith tracing: on when LANGSMITH_TRACING and LANGSMITH_API_KEY are set, and nothing breaks without it.

A loopback HTTP server stands in for the LangSmith API and records what the client sends; a second
run points at a port where nothing listens, which must not fail the graph.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import graphcraft
from graphcraft.testing import free_port


class _Recorder(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length") or 0)
        _Recorder.received.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:  # noqa: N802 - /info: the client asks what the server supports
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"version": "0.0.0", "batch_ingest_config": {}}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def langsmith_api() -> Iterator[str]:
    _Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    (docs := tmp_path / "docs").mkdir()
    (docs / "owls.md").write_text("# Owls\n\nThe barn owl nests in old barns and church towers.", encoding="utf-8")
    graphcraft.ingest([docs], store=tmp_path / "store")
    return tmp_path / "store"


def _traced_ask(store: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from langsmith import utils

    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test-key")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", endpoint)
    monkeypatch.setenv("LANGSMITH_PROJECT", "graphcraft-test")
    utils.get_env_var.cache_clear()
    try:
        result = graphcraft.ask("Where does the barn owl nest?", graph="crag", store=store)
        wait_for_all_tracers()
    finally:
        utils.get_env_var.cache_clear()
    return result


def test_runs_are_traced_to_langsmith_when_a_key_is_set(
    store: Path, langsmith_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _traced_ask(store, langsmith_api, monkeypatch)
    assert "barns" in result["answer"]
    sent = b"".join(_Recorder.received)
    assert b'"crag"' in sent or b"crag" in sent, "no trace of the crag run reached the LangSmith endpoint"
    assert b"retrieve" in sent  # node-level runs, not only the top one


def test_an_unreachable_langsmith_never_fails_a_run(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _traced_ask(store, f"http://127.0.0.1:{free_port()}", monkeypatch)
    assert "barns" in result["answer"] and result["trace"]["action"] == "correct"
