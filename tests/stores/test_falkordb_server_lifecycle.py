"""Lifecycle of the private FalkorDB server when its owner process dies (SIGTERM, SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphcraft.stores import falkordb_server as fs

REPO = Path(__file__).resolve().parents[2]
OWNER = (
    "import json, sys, time\n"
    "from graphcraft.stores.falkordb_server import start_server\n"
    "s = start_server(sys.argv[1])\n"
    "print(json.dumps({'pid': s.pid, 'port': s.port}), flush=True)\n"
    "time.sleep(120)\n"
)


def _start_owner(data_dir: Path) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(data_dir)], stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    assert line, f"owner process exited with {proc.wait(30)}"
    return proc, json.loads(line)


def _redis_pids_for(data_dir: Path) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and fs._is_server_for(int(p), data_dir.resolve())}


def _kill_watchdog(server_pid: int, timeout_s: float = 10.0) -> None:
    """SIGKILL the watchdog of `server_pid`, as if it had died too: what is left is the adoption path."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"owner_watchdog.py") for a in argv) and str(server_pid).encode() in argv:
                os.kill(int(entry), signal.SIGKILL)
                return
        time.sleep(0.05)
    raise AssertionError(f"no watchdog runs for server {server_pid}")


def _wait_dead(pid: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not fs._pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def restore_signals():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_sigterm_to_owner_stops_its_server(tmp_path):
    proc, child = _start_owner(tmp_path)
    assert fs._is_server_for(child["pid"], tmp_path.resolve())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM  # SystemExit from the handler, so atexit ran
    assert _wait_dead(child["pid"]), "redis-server survived its owner's SIGTERM"
    assert not (tmp_path / fs.INFO_FILE).exists()
    assert (tmp_path / "graph.rdb").exists()  # stopped with SHUTDOWN SAVE


def test_sigkill_to_owner_stops_its_server_through_the_watchdog(tmp_path):
    """No exit handler runs on SIGKILL (nor in a host that skips atexit): the watchdog stops the server, which saves."""
    proc, child = _start_owner(tmp_path)
    proc.kill()
    proc.wait(30)
    assert _wait_dead(child["pid"]), "redis-server outlived its SIGKILLed owner"
    assert (tmp_path / "graph.rdb").exists()  # redis-server saves on the watchdog's SIGTERM


def test_server_of_a_killed_owner_is_adopted_and_stopped(tmp_path, restore_signals):
    proc, child = _start_owner(tmp_path)
    _kill_watchdog(child["pid"])
    proc.kill()
    proc.wait(30)
    server = fs.find_running_server(tmp_path)
    try:
        assert server is not None and server.pid == child["pid"]
        assert server.owned and fs._OWNED[str(tmp_path.resolve())] is server
        assert json.loads((tmp_path / fs.INFO_FILE).read_text())["owner_pid"] == os.getpid()
    finally:
        if server is not None:
            server.stop()
    assert _wait_dead(child["pid"])
    assert str(tmp_path.resolve()) not in fs._OWNED


def test_server_record_is_written_before_the_server_answers(tmp_path, monkeypatch, restore_signals):
    seen: list[dict | None] = []
    real_ping = fs.ping

    def recording_ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
        seen.append(fs._read_info(tmp_path.resolve()))
        return real_ping(host, port, timeout_s)

    monkeypatch.setattr(fs, "ping", recording_ping)
    server = fs.start_server(tmp_path)
    try:
        first = seen[0]
        assert first is not None and first["pid"] == server.pid and first["starting"] is True
        assert first["owner_pid"] == os.getpid()
        final = json.loads((tmp_path / fs.INFO_FILE).read_text())
        assert final["starting"] is False and final["port"] == server.port
    finally:
        server.stop()


def test_orphan_without_record_is_stopped_before_a_second_server_starts(tmp_path, restore_signals):
    proc, child = _start_owner(tmp_path)
    _kill_watchdog(child["pid"])
    proc.kill()
    proc.wait(30)
    (tmp_path / fs.INFO_FILE).unlink()  # as if the owner died before writing it: only redis.pid remains
    server = fs.start_server(tmp_path)
    try:
        assert _wait_dead(child["pid"])
        assert _redis_pids_for(tmp_path) == {server.pid}
    finally:
        server.stop()
    assert _redis_pids_for(tmp_path) == set()
