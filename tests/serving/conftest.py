"""Serving tests: a private PostgreSQL cluster for durable runs, started and stopped by the tests.

The cluster lives in a temporary folder (data, unix socket, log), listens on a free loopback port
with trust authentication, and runs with fsync off (it is thrown away). PostgreSQL refuses to
run as root, so under root it runs as the `postgres` user (or `nobody`) through runuser.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphcraft.testing import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_owner(folder: Path) -> list[str]:
    """The command prefix that runs PostgreSQL's tools as a non-root user owning `folder`."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        shutil.chown(folder, user.pw_uid, user.pw_gid)
        return ["runuser", "-u", name, "--"]
    pytest.skip("running as root and no non-root user (postgres, nobody) to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """The URI of a fresh private PostgreSQL 15 cluster (database `postgres`), stopped after the session."""
    pg_bin = Path(os.environ.get("GRAPHCRAFT_TEST_PG_BIN", PG_BIN))
    if not (pg_bin / "initdb").exists() or not (pg_bin / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {pg_bin} (Debian package postgresql-15)")
    folder = Path(tempfile.mkdtemp(prefix="graphcraft-pg-"))
    data, port = folder / "data", free_port()
    prefix = _as_owner(folder)
    run = {"cwd": folder, "check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        [*prefix, str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], **run
    )  # type: ignore[call-overload]
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    ctl = [*prefix, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w"]
    try:
        subprocess.run([*ctl, "-o", options, "start"], **run)  # type: ignore[call-overload]
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], cwd=folder, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
