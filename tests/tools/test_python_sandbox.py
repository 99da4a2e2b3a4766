"""Escape attempts against the python tool: each must be refused or killed, never succeed."""

import os
from pathlib import Path

import pytest

from graphcraft.tools.python_sandbox import PythonSandbox, isolation_prefix, python_tool

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]


@pytest.fixture(scope="module")
def box():
    """The default sandbox: operating-system isolation (skipped where this machine cannot create namespaces)."""
    sandbox = PythonSandbox(timeout_s=4, memory_mb=256)
    if sandbox.isolation == "unavailable":
        pytest.skip(f"no namespaces for the OS-isolated sandbox here: {sandbox._unavailable}")
    return sandbox


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
    if sandbox.isolation == "unavailable":  # this test is about output, not isolation: any mode will do
        sandbox = PythonSandbox(timeout_s=8, memory_mb=256, max_output_chars=1000, isolation="weak")
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


# --- operating-system isolation: what the audit hook cannot stop ----------------------------------


@pytest.fixture()
def shared_dir():
    """A world-writable folder with a world-readable secret, outside the sandbox's scratch folder.

    Stands for other stores and the project's files: everything the sandboxed user could reach
    through ordinary file permissions if the sandbox showed it the host's file system.
    """
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="graphcraft-shared-", dir="/tmp"))
    path.chmod(0o1777)
    (path / "secret.txt").write_text("TOP SECRET")
    (path / "secret.txt").chmod(0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _created(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "secret.txt")


@pytest.mark.parametrize(
    "code",
    [
        "import sqlite3\nc = sqlite3.connect('{d}/x.db')\nc.execute('create table t(x)')\nc.commit()\nprint('WROTE')",
        "import dbm\ndb = dbm.open('{d}/dbmfile', 'c')\ndb[b'k'] = b'v'\ndb.close()\nprint('WROTE')",
        "import os\nos.mkfifo('{d}/fifo')\nprint('WROTE')",
        "import os, stat\nos.mknod('{d}/node', stat.S_IFIFO | 0o666)\nprint('WROTE')",
        "import os\nos.symlink('/etc/passwd', '{d}/link')\nprint('WROTE')",
        "import shutil\nshutil.copyfile('/etc/hostname', '{d}/copy')\nprint('WROTE')",
    ],
)
def test_c_level_writers_cannot_write_outside_scratch(box, shared_dir, code):
    result = box.run(code.format(d=shared_dir))
    assert "WROTE" not in result.stdout
    assert _created(shared_dir) == []


# Finds the audit hook through the garbage collector and rewrites its closure cells, so every check
# passes. What follows it is only stopped by the operating system.
_HOOK_OFF = """
import gc
for hook in [o for o in gc.get_objects() if type(o).__name__ == 'function' and o.__name__ == 'hook']:
    for cell in hook.__closure__:
        value = cell.cell_contents
        if isinstance(value, tuple):
            cell.cell_contents = ('no-event-starts-with-this',)
        elif isinstance(value, frozenset):
            cell.cell_contents = frozenset()
        elif getattr(value, '__name__', '') == 'inside':
            cell.cell_contents = lambda path: True
print('HOOK OFF')
"""

_ATTEMPTS = """
for attempt in (
    lambda: open('{d}/hook_off.txt', 'w').write('x'),
    lambda: __import__('subprocess').run(['/bin/sh', '-c', 'echo x > {d}/spawned.txt']),
    lambda: __import__('ctypes').CDLL(None).system(b'echo x > {d}/ctypes.txt'),
    lambda: print('READ', open('{d}/secret.txt').read()),
    lambda: print('READ', open({project!r}).read()[:20]),
):
    try:
        attempt()
    except Exception as exc:
        print('refused:', type(exc).__name__)
"""


def test_switching_the_audit_hook_off_changes_nothing(box, shared_dir):
    code = (
        (_HOOK_OFF + _ATTEMPTS)
        .replace("{d}", str(shared_dir))
        .replace("{project!r}", repr(str(Path(__file__).resolve())))
    )
    result = box.run(code)
    assert "HOOK OFF" in result.stdout  # the hook really was switched off
    assert _created(shared_dir) == []
    assert "TOP SECRET" not in result.stdout and "READ" not in result.stdout


@pytest.mark.parametrize(
    "path",
    [
        "{d}/secret.txt",
        str(Path(__file__).resolve()),
        str(Path(__file__).resolve().parents[2] / "pyproject.toml"),
        "/proc/{pid}/cmdline",  # the test runner: the host's processes are not visible either
    ],
)
def test_other_stores_and_project_files_are_invisible(box, shared_dir, path):
    result = box.run(f"print(open({path.format(d=shared_dir, pid=os.getpid())!r}).read()[:40])")
    assert not result.ok
    for marker in ("TOP SECRET", "graphcraft", "import", "pytest", "python"):
        assert marker not in result.stdout


def test_only_the_scratch_folder_is_writable(box):
    code = """
import os
for path in ('/x', '/usr/x', '/etc/x', '/var/tmp/x', '/dev/shm/x', '/proc/x', '/sandbox/x'):
    try:
        open(path, 'w').write('x')
        print('WROTE', path)
    except OSError as exc:
        pass
open('here.txt', 'w').write('ok')
print('SCRATCH', open('here.txt').read())
"""
    result = box.run(code)
    assert result.ok and "WROTE" not in result.stdout and "SCRATCH ok" in result.stdout


def test_disk_use_is_bounded(box):
    from graphcraft.tools.python_sandbox import DEFAULT_DISK_MB

    code = """
written = 0
try:
    for i in range(40):
        with open(f'big{i}', 'wb') as f:
            f.write(b'x' * 8_000_000)
        written += 8
except OSError as exc:
    print('STOPPED', exc.errno)
print('MB', written)
"""
    result = box.run(code)
    assert "STOPPED" in result.stdout
    written = int(result.stdout.split("MB")[-1])
    assert written <= DEFAULT_DISK_MB


def test_nested_isolation_attempts_fail(box, shared_dir):
    """From inside: no new namespaces, mounts, chroot or privilege changes, and no host path is reachable."""
    code = (
        _HOOK_OFF
        + f"""
import os, ctypes
libc = ctypes.CDLL(None, use_errno=True)
print('unshare', libc.unshare(0x00020000))                     # CLONE_NEWNS
print('mount', libc.mount(b'none', b'/usr', b'tmpfs', 0, None))
print('remount', libc.mount(None, b'/', None, 32 | 1, None))   # MS_REMOUNT, rw->ro flip attempt
print('chroot', libc.chroot(b'/'))
print('setuid', libc.setuid(0))
print('exists', os.path.exists({str(shared_dir)!r}), os.path.exists({str(PROJECT)!r}), os.path.exists({str(HERE)!r}))
"""
    )
    result = box.run(code)
    assert "HOOK OFF" in result.stdout, result.stderr
    out = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines()[1:])
    assert out["unshare"] == "-1" and out["mount"] == "-1" and out["chroot"] == "-1" and out["setuid"] == "-1"
    assert out["exists"] == "False False False"


def test_missing_namespaces_refuse_to_run_unless_weak_mode_is_chosen(tmp_path, monkeypatch):
    """Where namespaces do not work, the default sandbox refuses (a one-line error); the weak mode is opt-in."""
    from graphcraft.config import reset_settings_cache
    from graphcraft.tools.python_sandbox import SandboxUnavailableError

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "unshare").write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    (fake / "unshare").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("GRAPHCRAFT_PYTHON_SANDBOX", raising=False)
    isolation_prefix.cache_clear()
    try:
        strict = PythonSandbox(timeout_s=4, memory_mb=256)
        with pytest.raises(SandboxUnavailableError, match="weak"):
            strict.run("print(1)")
        out = python_tool(strict).invoke({"code": "print(1)"})
        assert "\n" not in out and "weak" in out and "Traceback" not in out
        weak = PythonSandbox(timeout_s=4, memory_mb=256, isolation="weak")
        assert weak.run("print(6 * 7)").stdout.strip() == "42" and "mountns" not in weak.isolation
        monkeypatch.setenv("GRAPHCRAFT_PYTHON_SANDBOX", "weak")  # the setting, for every sandbox
        reset_settings_cache()
        assert PythonSandbox(timeout_s=4, memory_mb=256).run("print(1)").ok
    finally:
        monkeypatch.delenv("GRAPHCRAFT_PYTHON_SANDBOX", raising=False)
        reset_settings_cache()
        isolation_prefix.cache_clear()


def test_default_sandbox_uses_os_isolation(box):
    assert {"mountns", "netns", "pidns"} <= set(box.isolation.split("+"))


def test_user_namespace_mode_keeps_no_capability(tmp_path):
    """What a normal user gets: uid 0 of a new user namespace, every capability dropped, no way back."""
    import shutil
    import subprocess

    from graphcraft.tools import python_sandbox as ps

    unshare = shutil.which("unshare")
    if unshare is None or not ps._probe([unshare, "--user", "--map-root-user", "--mount", "true"]):
        pytest.skip("user namespaces are not available here")
    code = """
import os
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
print(status['CapEff'].strip(), status['CapBnd'].strip(), status['NoNewPrivs'].strip())
for path in ('/x', '/usr/x', '/scratch/ok'):
    try:
        open(path, 'w').write('x')
        print('WROTE', path)
    except OSError as exc:
        print('refused', path)
"""
    prefix = ps._os_prefix(unshare, user_namespace=True)
    command = ps._launch_command(prefix, os.sys.executable, tmp_path, code, 8)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=ps._base_env())
    assert done.returncode == 0, done.stderr[-2000:]
    caps, line = done.stdout.splitlines()[0].split(), done.stdout
    assert caps == ["0000000000000000", "0000000000000000", "1"]
    assert "WROTE /scratch/ok" in line and "WROTE /x" not in line and "WROTE /usr/x" not in line


@pytest.mark.parametrize("which", ["box", "audit_box"])
def test_no_process_can_be_started_even_with_the_hook_off(request, which):
    """The kernel (a seccomp filter) refuses fork and exec: N processes cannot take N times the memory
    limit, and nothing runs outside Python. Threads still work."""
    code = (
        _HOOK_OFF
        + """
import os, subprocess, threading
done = []
worker = threading.Thread(target=lambda: done.append('THREAD'))
worker.start()
worker.join()
print(*done)
for name, start in (('fork', os.fork), ('subprocess', lambda: subprocess.run(['/bin/echo', 'SPAWNED'])),
                    ('exec', lambda: os.execv('/bin/echo', ['echo', 'SPAWNED']))):
    try:
        if start() == 0:
            print('FORKED')
            os._exit(0)
    except OSError as exc:
        print(name, 'refused', exc.errno)
"""
    )
    result = request.getfixturevalue(which).run(code)
    assert "HOOK OFF" in result.stdout and "THREAD" in result.stdout
    assert "FORKED" not in result.stdout and "SPAWNED" not in result.stdout
    assert result.stdout.count("refused 1") == 3  # EPERM
