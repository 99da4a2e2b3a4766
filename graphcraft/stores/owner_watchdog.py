"""Stop a server when the process that started it is gone, however it went.

An owner stops its FalkorDB server at exit (atexit, SIGTERM/SIGHUP turned into SystemExit), but
not every exit runs Python's exit handlers: a SIGKILL, an ``os._exit``, or a host such as a web
server that installs its own signal handlers and leaves through a path that skips them. The
server runs in its own session (a Ctrl-C must not kill it before it saves), so nothing else ends
it. This watchdog, a separate tiny process started beside the server, polls the owner and sends
the server SIGTERM (redis-server saves on SIGTERM) once the owner has exited, then SIGKILL if it
has not stopped within the grace period. It exits as soon as the server is gone.

Run as a script by path (``python owner_watchdog.py OWNER_PID SERVER_PID SERVER_START``), so it
imports only the standard library, not graphcraft. Process start times (field 22 of
``/proc/PID/stat``) guard against a reused pid: a different process that got the server's pid is
never signalled.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 20.0


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when it no longer runs (or is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if not fields or fields[0] == "Z":
        return None
    return fields[19]


def _alive(pid: int, started: str | None) -> bool:
    current = start_time(pid)
    return current is not None and (started is None or current == started)


def watch(owner: int, server: int, server_started: str, owner_started: str | None = None) -> None:
    """Wait while both run; once the owner is gone, stop the server (SIGTERM, then SIGKILL after the grace)."""
    while _alive(server, server_started):
        if not _alive(owner, owner_started):
            break
        time.sleep(POLL_S)
    else:
        return  # the server stopped first: nothing to do
    os.kill(server, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if not _alive(server, server_started):
            return
        time.sleep(0.1)
    if _alive(server, server_started):
        os.kill(server, signal.SIGKILL)


if __name__ == "__main__":
    owner_pid, server_pid, server_start = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    try:
        watch(owner_pid, server_pid, server_start, start_time(owner_pid))
    except (ProcessLookupError, PermissionError):
        pass
