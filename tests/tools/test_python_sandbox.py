"""Escape attempts against the python tool: each must be refused or killed, never succeed."""

import os
from pathlib import Path

import pytest

from graphcraft.tools.python_sandbox import PythonSandbox, isolation_prefix, python_tool


@pytest.fixture(scope="module")
def box():
    return PythonSandbox(timeout_s=4, memory_mb=256)


@pytest.fixture(scope="module")
def audit_box():
    """Only the in-process guard: what runs on machines without network namespaces."""
    return PythonSandbox(timeout_s=4, memory_mb=256, network_isolation="audit")


def test_runs_code_and_returns_output(box):
    result = box.run("import math\nprint(sum(i * i for i in range(10)), math.factorial(5))")
    assert result.ok and result.stdout.strip() == "285 120"


def test_scratch_files_are_allowed(box):
    result = box.run("open('f.txt','w').write('hi')\nprint(open('f.txt').read())")
    assert result.ok and result.stdout.strip() == "hi"


@pytest.mark.parametrize("which", ["box", "audit_box"])
@pytest.mark.parametrize(
    "code",
    [
        "import socket; s = socket.socket(); s.connect(('1.1.1.1', 80)); print('CONNECTED')",
        "import urllib.request; print(urllib.request.urlopen('https://pypi.org').status)",
        "import socket; print(socket.getaddrinfo('pypi.org', 443)); print('CONNECTED')",
        "import _socket; s = _socket.socket(); print('CONNECTED')",
    ],
)
def test_network_refused(request, which, code):
    result = request.getfixturevalue(which).run(code)
    assert not result.ok and "CONNECTED" not in result.stdout and "200" not in result.stdout


@pytest.mark.parametrize(
    "code",
    [
        "import os; os.system('echo ESCAPED')",
        "import subprocess; print(subprocess.run(['echo', 'ESCAPED'], capture_output=True).stdout)",
        "import os; pid = os.fork(); print('ESCAPED')",
        "import os; os.execv('/bin/echo', ['echo', 'ESCAPED'])",
        "import ctypes; ctypes.CDLL(None).system(b'echo ESCAPED')",
    ],
)
def test_process_spawning_refused(audit_box, code):
    result = audit_box.run(code)
    assert not result.ok and "ESCAPED" not in result.stdout
    assert "not allowed" in result.stderr


def test_writes_outside_scratch_refused(box, tmp_path):
    target = tmp_path / "escaped.txt"
    result = box.run(f"open({str(target)!r}, 'w').write('ESCAPED')")
    assert not result.ok and not target.exists()
    result = box.run(f"import os; os.remove({str(Path(__file__))!r})")
    assert not result.ok and Path(__file__).exists()


def test_monkeypatching_the_guard_does_not_help(audit_box, tmp_path):
    target = tmp_path / "escaped2.txt"
    code = (
        "import os, os.path\n"
        "os.path.realpath = lambda p: os.getcwd() + '/x'\n"
        f"open({str(target)!r}, 'w').write('ESCAPED')\n"
    )
    result = audit_box.run(code)
    assert not result.ok and not target.exists()


def test_timeout_kills_infinite_loop(box):
    result = box.run("while True:\n    pass")
    assert result.timed_out and not result.ok
    assert "timed out" in result.render()


def test_memory_limit(box):
    result = box.run("x = bytearray(1024 * 1024 * 1024)\nprint('ALLOCATED')")
    assert not result.ok and "ALLOCATED" not in result.stdout
    assert "MemoryError" in result.stderr


@pytest.mark.skipif(not isolation_prefix(os.sys.executable)[0], reason="no network namespaces here")
def test_network_namespace_has_only_loopback(box):
    assert "netns" in box.isolation
    result = box.run("print(open('/proc/net/dev').read())")
    interfaces = {line.split(":")[0].strip() for line in result.stdout.splitlines() if ":" in line}
    assert result.ok and interfaces == {"lo"}


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop applies when running as root")
def test_runs_as_nobody_when_root(box):
    result = box.run("import os; print(os.getuid())")
    assert result.ok and result.stdout.strip() == "65534"


def test_tool_renders_errors_for_the_model(box):
    tool = python_tool(box)
    assert tool.name == "python"
    assert tool.invoke({"code": "print(6 * 7)"}) == "42"
    out = tool.invoke({"code": "raise ValueError('boom')"})
    assert "ValueError: boom" in out


# Spawns a `sleep` in a new session that inherits stdout, through the one spawning primitive that
# raises no audit event. Before the fix the parent waited for that pipe's EOF for ever.
_FORK_EXEC_ESCAPE = """
import os, _posixsubprocess
errpipe_read, errpipe_write = os.pipe()
common = ([b"/bin/sleep", b"47"], [b"/bin/sleep"], False, (), None, None,
          -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write, False, True, -1, None, None, None)
for tail in ((-1, None, False), (-1, None), (None,)):  # the signature changed across 3.x releases
    try:
        _posixsubprocess.fork_exec(*common, *tail)
        break
    except TypeError:
        pass
print("ESCAPED", flush=True)
"""


def _sleepers() -> list[str]:
    import subprocess

    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip() == "/bin/sleep 47"]


@pytest.mark.parametrize("which", ["box", "audit_box"])
def test_fork_exec_escape_is_refused_and_does_not_hang(request, which):
    import time

    sandbox = request.getfixturevalue(which)
    start = time.monotonic()
    result = sandbox.run(_FORK_EXEC_ESCAPE)
    assert time.monotonic() - start < sandbox.timeout_s + 5
    assert not result.ok and "ESCAPED" not in result.stdout
    assert "_posixsubprocess is not allowed" in result.stderr
    assert _sleepers() == []


def test_ctypes_import_refused(audit_box):
    result = audit_box.run("import _ctypes\nprint('LOADED')")
    assert not result.ok and "LOADED" not in result.stdout and "not allowed" in result.stderr


@pytest.mark.skipif(not any("--pid" in p for p in isolation_prefix(os.sys.executable)), reason="no PID namespaces")
def test_pid_namespace_hides_other_processes(box):
    assert "pidns" in box.isolation
    result = box.run("import os\nprint(os.getpid())")
    assert result.ok and result.stdout.strip() == "1"


def test_output_flood_is_capped_and_killed():
    import resource
    import time

    sandbox = PythonSandbox(timeout_s=8, memory_mb=256, max_output_chars=1000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    result = sandbox.run("while True:\n    print('x' * 100000)")
    assert time.monotonic() - start < 4, "the run must stop as soon as the cap is hit, not at the timeout"
    assert result.output_truncated and not result.ok and not result.timed_out
    assert len(result.stdout) <= 1000 + 50
    assert "too much output" in result.render()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_closed_stdout_still_times_out(box):
    result = box.run("import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass")
    assert result.timed_out and not result.ok


def test_nproc_limit_does_not_block_the_child(box):
    result = box.run("import resource\nprint(resource.getrlimit(resource.RLIMIT_NPROC)[0])")
    assert result.ok
    if "nobody" in box.isolation:
        from graphcraft.tools.python_sandbox import NOBODY_NPROC

        assert int(result.stdout) == NOBODY_NPROC
