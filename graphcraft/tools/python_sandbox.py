"""Run model-written Python in a separate, limited process.

The boundary is the operating system, not Python. By default (``isolation="os"``) every run
gets new mount, network, PID, IPC and UTS namespaces (``unshare``; as a normal user, inside a
new user namespace), set up by :mod:`graphcraft.tools.sandbox_launcher`:

- the file system is a private, read-only tree holding only the system folders and the
  interpreter: the project, home folders, ``/tmp`` and every store are not there to be read
  or written, whatever the code does (C extensions such as sqlite3 or dbm, ``mkfifo``,
  ``mknod``, ctypes, subprocesses included);
- the only writable place is ``/scratch`` (the working folder; ``/tmp`` points to it), a tmpfs
  of ``disk_mb`` megabytes and a bounded number of files, gone when the run ends; on top of
  that RLIMIT_FSIZE bounds any one file;
- the network namespace has only a downed loopback device: no connection can succeed;
- the PID namespace ends every process the run started when it ends;
- the process runs as ``nobody`` (graphcraft running as root) or, in a user namespace, without
  any capability and with no-new-privileges, so it cannot undo any of this.

Around that: resource limits set before exec (address space, CPU seconds, file size, open
files, and as nobody the number of processes), a wall-clock timeout and an output cap after
which the whole process group is killed. An audit hook (PEP 578) still refuses sockets,
processes, ctypes and writes outside the scratch folder, for a clear error message; it is not
what keeps the run in (code can switch it off, and the namespaces make that pointless).

**Weaker mode.** Where the namespaces cannot be created (no ``unshare``, user namespaces
disabled, a restrictive container), a sandbox in the default mode refuses to run, with a
one-line error. Opting into the weaker mode runs without the private file system: whichever
of the network and PID namespaces work, the ``nobody`` user when root, the resource limits
and the audit hook, which code can get around (C-level writes, rewriting the hook). Choose it
with ``PythonSandbox(isolation="weak")`` (or ``network_isolation="audit"``), or for every
sandbox with the environment variable ``GRAPHCRAFT_PYTHON_SANDBOX=weak``.

The tool exists only when enabled explicitly (`default_tools(enable_python=True)`).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

from langchain_core.tools import BaseTool, StructuredTool, ToolException

NetworkIsolation = Literal["auto", "namespace", "audit"]
Isolation = Literal["os", "weak"]
ISOLATION_ENV = "GRAPHCRAFT_PYTHON_SANDBOX"  # "weak" opts every sandbox into the weaker mode

# Runs in the child before the user's code: forbids new processes (seccomp), installs the audit
# hook, then executes the code. The seccomp filter is the kernel's: once installed it cannot be
# removed, so switching the audit hook off does not bring fork or exec back, and a run cannot
# multiply its memory limit by starting processes. Threads (clone with CLONE_THREAD) still work;
# clone3 answers ENOSYS so that the C library falls back to clone; 32-bit and x32 system calls on
# x86-64 are refused. On other architectures, or a kernel without seccomp, the run goes on without
# the filter: the namespaces and the process limit still hold.
# The hook keeps its own references (default arguments, whose reassignment is itself an audited
# and refused event), so monkeypatching os/posixpath from the snippet does not change it.
_BOOTSTRAP = r"""
import os, sys

def _no_new_processes():
    import ctypes, errno, platform
    table = {"x86_64": (0xC000003E, (57, 58, 59, 322), 56, 435),  # fork vfork execve execveat; clone; clone3
             "aarch64": (0xC00000B7, (221, 281), 220, 435)}
    if platform.machine() not in table:
        return
    arch, denied, clone, clone3 = table[platform.machine()]
    allow, kill = 0x7FFF0000, 0x80000000
    eperm, enosys = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    n = len(denied)
    prog = [(0x20, 0, 0, 4), (0x15, 1, 0, arch), (0x06, 0, 0, kill), (0x20, 0, 0, 0),
            (0x35, n + 5, 0, 0x40000000)]  # an x32 system call: refused
    prog += [(0x15, n + 4 - i, 0, nr) for i, nr in enumerate(denied)]
    prog += [(0x15, 6, 0, clone3), (0x15, 1, 0, clone), (0x06, 0, 0, allow),
             (0x20, 0, 0, 16), (0x45, 1, 0, 0x00010000),  # clone: only with CLONE_THREAD
             (0x06, 0, 0, eperm), (0x06, 0, 0, allow), (0x06, 0, 0, enosys)]
    # the JSET above jumps over the EPERM return to ALLOW; every denied number jumps to EPERM
    Filter = ctypes.c_ubyte * 8 * len(prog)
    raw = Filter()
    for k, (code, jt, jf, value) in enumerate(prog):
        raw[k][:] = list(code.to_bytes(2, "little") + bytes([jt, jf]) + value.to_bytes(4, "little"))
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(38, 1, 0, 0, 0)  # no_new_privs, required to install a filter without privileges
    program = Prog(len(prog), ctypes.cast(raw, ctypes.c_void_p))
    libc.prctl(22, 2, ctypes.byref(program), 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER; best effort

def _make_hook(scratch, realpath=os.path.realpath, fsdecode=os.fsdecode, isinstance=isinstance,
               str=str, bytes=bytes, int=int, any=any, all=all, PermissionError=PermissionError,
               sep=os.sep, pathlike=os.PathLike,
               write_flags=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
    blocked = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
               "os.system", "os.kill", "os.killpg", "pty.", "ctypes.", "webbrowser.", "sys.remote_exec")
    path_events = frozenset(("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                             "os.chmod", "os.chown", "os.truncate", "os.utime", "shutil.rmtree", "os.replace"))
    guarded_attrs = frozenset(("__code__", "__defaults__", "__kwdefaults__"))
    # fork_exec raises no audit event of its own, and _ctypes reaches libc directly.
    blocked_modules = frozenset(("_posixsubprocess", "_ctypes"))

    def inside(path):
        try:
            real = realpath(fsdecode(path))
        except Exception:
            return False
        return real == scratch or real.startswith(scratch + sep)

    def hook(event, args):
        if event.startswith(blocked):
            raise PermissionError("sandbox: " + event + " is not allowed (no network, no processes)")
        if event == "import" and args and args[0] in blocked_modules:
            raise PermissionError("sandbox: importing " + str(args[0]) + " is not allowed (no processes)")
        if event == "object.__setattr__" and len(args) > 1 and args[1] in guarded_attrs:
            raise PermissionError("sandbox: changing a function's code or defaults is not allowed")
        if event == "open" and len(args) > 2 and not isinstance(args[0], int):
            mode, flags = args[1], args[2]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & write_flags))
            if writes and not inside(args[0]):
                raise PermissionError("sandbox: writing outside the scratch directory is not allowed: " + str(args[0]))
        if event in path_events:
            if not all(inside(a) for a in args if isinstance(a, (str, bytes, pathlike))):
                raise PermissionError("sandbox: " + event + " outside the scratch directory is not allowed")

    return hook

with open(sys.argv[2], encoding="utf-8") as _f:
    _code = compile(_f.read(), "<sandbox>", "exec")
_no_new_processes()
_hook = _make_hook(os.path.realpath(sys.argv[1]))
sys.argv = ["<sandbox>"]
sys.addaudithook(_hook)
del _hook, _make_hook, _f, _no_new_processes
for _name in ("ctypes", "ctypes._endian", "_ctypes", "platform"):  # imported above, before the hook existed
    sys.modules.pop(_name, None)
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
"""

NOBODY = 65534
# Processes the `nobody` user may have at once (all sandboxes together): a fork-bomb guard. Python
# itself needs one; concurrent runs share the count, so it is not 1.
NOBODY_NPROC = 64
OUTPUT_CAP_FACTOR = 4  # bytes read per stream before the run is killed, times max_output_chars
DEFAULT_DISK_MB = 64  # size of the scratch tmpfs
SCRATCH_FILES = 4096  # files (inodes) the scratch tmpfs may hold
FILE_SIZE_MB = 16  # RLIMIT_FSIZE: the largest single file
_LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")


class SandboxUnavailableError(ToolException):
    """The operating-system isolation cannot be set up here, and the weaker mode was not chosen."""


@dataclass
class SandboxResult:
    """What a run produced. ``ok`` is False on a non-zero exit, a timeout or a kill by a limit."""

    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool
    isolation: str
    output_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_truncated

    def render(self) -> str:
        """The text returned to the model."""
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip())
        if self.output_truncated:
            parts.append("error: too much output (the process was killed); print less")
        elif self.timed_out:
            parts.append("error: timed out (the process was killed)")
        elif self.returncode not in (0, None):
            if self.returncode < 0:
                name = signal.Signals(-self.returncode).name
                parts.append(f"error: killed by {name} (a resource limit was hit)")
            tail = self.stderr.strip().splitlines()[-6:]
            if tail:
                parts.append("stderr:\n" + "\n".join(tail))
        return "\n".join(parts) if parts else "(no output; use print() to show results)"


@functools.lru_cache(maxsize=4)
def isolation_prefix(python: str, network: bool = True) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(namespace prefix, privilege drop prefix) that work on this machine; either may be ().

    The namespace prefix is `unshare [-r] [-n] --pid --fork --kill-child` with whichever parts the
    kernel allows (network namespaces only when ``network``). When running as root, the child also
    drops to the `nobody` user with setpriv, so file permissions keep it out of everything it does
    not own.
    """
    namespace: tuple[str, ...] = ()
    unshare = shutil.which("unshare")
    if unshare and sys.platform.startswith("linux"):
        pid = ("--pid", "--fork", "--kill-child")
        net = (("-n",),) if network else ()
        candidates = [(unshare, *n, *p) for n in (*net, ()) for p in (pid, ())]
        candidates += [(unshare, "-r", *n, *p) for n in (*net, ()) for p in (pid, ())]
        for candidate in candidates:
            if len(candidate) > 1 and _probe([*candidate, "true"]):
                namespace = candidate
                break
    drop: tuple[str, ...] = ()
    setpriv = shutil.which("setpriv")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and setpriv:
        candidate = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
        if _probe([*namespace, *candidate, python, "-I", "-c", "pass"]):
            drop = candidate
    return namespace, drop


def _probe(command: list[str]) -> bool:
    """True when the command runs and succeeds here (used to find which isolation works)."""
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _os_prefix(unshare: str, user_namespace: bool) -> tuple[str, ...]:
    """unshare with every namespace the OS mode needs (and a user namespace, needed unless running as root)."""
    user = ("--user", "--map-root-user") if user_namespace else ()
    return (unshare, *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child")


def _run_as(prefix: tuple[str, ...]) -> int | None:
    """Who the snippet runs as: nobody when real root sets up the sandbox, else uid 0 of the user namespace."""
    return None if "--user" in prefix else NOBODY


@functools.lru_cache(maxsize=8)
def os_isolation(python: str, unshare: str | None) -> tuple[tuple[str, ...], str]:
    """(unshare prefix, "") when a full OS-isolated run works on this machine, else ((), the reason).

    Checked once per interpreter and unshare binary by running an empty snippet the real way.
    """
    if unshare is None or not sys.platform.startswith("linux"):
        return (), "no unshare command (util-linux) on this system"
    prefix = _os_prefix(unshare, user_namespace=os.geteuid() != 0)
    with tempfile.TemporaryDirectory(prefix="graphcraft-py-probe-") as run_dir:
        command = _launch_command(prefix, python, Path(run_dir), "pass", DEFAULT_DISK_MB)
        try:
            done = subprocess.run(command, capture_output=True, timeout=30, cwd=run_dir, env=_base_env())
        except (OSError, subprocess.SubprocessError) as exc:
            return (), f"{type(exc).__name__}: {exc}"
    if done.returncode == 0:
        return prefix, ""
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return (), (lines[-1] if lines else f"exit status {done.returncode}")[:200]


def _launch_command(prefix: tuple[str, ...], python: str, run_dir: Path, code: str, disk_mb: int) -> list[str]:
    """Writes the snippet into run_dir and returns the command that runs it inside new namespaces."""
    (run_dir / "root").mkdir()
    (run_dir / "snippet.py").write_text(code, encoding="utf-8")
    interpreter = str(Path(os.path.realpath(python)).parent.parent)
    prefixes = sorted({p for p in (sys.base_prefix, sys.prefix, interpreter) if p != "/"})  # never the whole disk
    config = {
        "root": str(run_dir / "root"),
        "code": str(run_dir / "snippet.py"),
        "prefixes": prefixes,
        "disk_mb": disk_mb,
        "inodes": SCRATCH_FILES,
        "uid": _run_as(prefix),
        "python": python,
        "bootstrap": _BOOTSTRAP,
    }
    return [*prefix, python, "-I", "-c", _LAUNCHER.read_text(encoding="utf-8"), json.dumps(config)]


def _base_env() -> dict[str, str]:
    """A minimal environment: nothing of the caller's (keys, tokens, proxies) reaches the sandbox."""
    return {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


class PythonSandbox:
    """Runs code snippets in a limited subprocess; one scratch directory per run (see the module docstring)."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 512,
        max_output_chars: int = 10_000,
        network_isolation: NetworkIsolation = "auto",
        python: str | None = None,
        disk_mb: int = DEFAULT_DISK_MB,
        isolation: Isolation | None = None,
    ) -> None:
        """``isolation`` "os" (the default) or "weak" (opt-in: no private file system, see the module
        docstring); unset, it is "weak" when ``network_isolation="audit"`` or GRAPHCRAFT_PYTHON_SANDBOX=weak."""
        self.timeout_s, self.memory_mb, self.max_output_chars, self.disk_mb = (
            timeout_s,
            memory_mb,
            max_output_chars,
            disk_mb,
        )
        self.python = python or sys.executable
        if isolation is None:
            from graphcraft.config import get_settings

            weak = network_isolation == "audit" or get_settings().python_sandbox == "weak"
            isolation = "weak" if weak else "os"
        self.mode: Isolation = isolation
        self._unavailable = ""
        if isolation == "os":
            self._namespace, self._unavailable = os_isolation(self.python, shutil.which("unshare"))
            self._drop: tuple[str, ...] = ("nobody",) if self._namespace and _run_as(self._namespace) else ()
        else:
            namespace, drop = isolation_prefix(self.python, network=network_isolation != "audit")
            if network_isolation == "namespace" and "-n" not in namespace:
                raise RuntimeError("network namespaces (unshare -n) are not available on this machine")
            self._namespace, self._drop = namespace, drop

    @property
    def isolation(self) -> str:
        """Which layers are active, e.g. 'mountns+netns+pidns+nobody+rlimits+audit'."""
        if self.mode == "os":
            if self._unavailable:
                return "unavailable"
            user = ["userns"] if "--user" in self._namespace else []
            layers = [*user, "mountns", "netns", "pidns", "ipcns"]
        else:
            layers = ["netns"] if "-n" in self._namespace else []
            layers += ["pidns"] if "--pid" in self._namespace else []
        layers += ["nobody"] if self._drop else []
        return "+".join([*layers, "rlimits", "audit"])

    def _limits(self) -> None:
        """Runs in the child between fork and exec."""
        mem = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = int(self.timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_MB * 1024 * 1024,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self._drop:  # counts nobody's processes; root (before it becomes nobody) is exempt
            resource.setrlimit(resource.RLIMIT_NPROC, (NOBODY_NPROC, NOBODY_NPROC))

    def run(self, code: str) -> SandboxResult:
        """Run ``code``; raises SandboxUnavailableError when the OS isolation is needed but cannot be had."""
        if self._unavailable:
            raise SandboxUnavailableError(
                f"python sandbox unavailable: this machine cannot create the namespaces it needs "
                f"({self._unavailable}); to run with the weaker in-process guard instead, use "
                f"PythonSandbox(isolation='weak') or set {ISOLATION_ENV}=weak"
            )
        with tempfile.TemporaryDirectory(prefix="graphcraft-py-") as scratch:
            if self.mode == "os":
                command = _launch_command(self._namespace, self.python, Path(scratch), code, self.disk_mb)
                cwd, env = Path(scratch), _base_env()
            else:
                command, cwd, env = self._weak_command(Path(scratch), code)
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=self._limits,
                start_new_session=True,
            )
            try:
                out, err, timed_out, overflow = _collect(
                    proc, self.timeout_s, OUTPUT_CAP_FACTOR * self.max_output_chars
                )
            finally:
                _kill_group(proc.pid)  # also anything the snippet left behind
                _reap(proc)
        limit = self.max_output_chars
        return SandboxResult(
            stdout=_clip(out.decode("utf-8", "replace"), limit),
            stderr=_clip(err.decode("utf-8", "replace"), limit),
            returncode=None if timed_out else proc.returncode,
            timed_out=timed_out,
            isolation=self.isolation,
            output_truncated=overflow,
        )

    def _weak_command(self, scratch: Path, code: str) -> tuple[list[str], Path, dict[str, str]]:
        """The weaker mode: the host's file system, a scratch folder on it, the audit hook as the guard."""
        code_path = scratch / "snippet.py"
        code_path.write_text(code, encoding="utf-8")
        work = scratch / "work"
        work.mkdir()
        if self._drop:
            for path in (scratch, code_path, work):
                os.chown(path, NOBODY, NOBODY)
        command = [*self._namespace, *self._drop, self.python, "-I", "-c", _BOOTSTRAP, str(work), str(code_path)]
        return command, work, {**_base_env(), "HOME": str(work)}


def _collect(proc: subprocess.Popen, timeout_s: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Read both pipes until EOF and exit, the deadline, or more than ``cap`` bytes on one stream.

    Unlike communicate(), memory stays bounded and nothing waits for an EOF that a process which
    escaped the group (holding the pipe open) would never send.
    Returns (stdout, stderr, timed_out, output_over_cap).
    """
    deadline = time.monotonic() + timeout_s
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None  # the child is started with stdout=PIPE, stderr=PIPE
    buffers = {stdout: bytearray(), stderr: bytearray()}
    overflow = False
    with selectors.DefaultSelector() as selector:
        for stream in buffers:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map() and not overflow:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(buffers[stdout]), bytes(buffers[stderr]), True, False
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[cast(IO[Any], key.fileobj)]  # one of the two pipes registered above
                buffer += chunk
                if len(buffer) > cap:
                    del buffer[cap:]
                    overflow = True
    timed_out = False
    if not overflow:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            timed_out = True
    return bytes(buffers[stdout]), bytes(buffers[stderr]), timed_out, overflow


def _reap(proc: subprocess.Popen) -> None:
    """Close our pipe ends and collect the killed child without waiting on anyone else."""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _kill_group(pid: int) -> None:
    """SIGKILL the run's process group (already gone is fine)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _clip(text: str, limit: int) -> str:
    """Output cut to ``limit`` characters, saying so."""
    return text if len(text) <= limit else text[:limit] + f"\n[truncated at {limit} characters]"


def python_tool(sandbox: PythonSandbox | None = None) -> BaseTool:
    """The `python` tool: runs a snippet in the sandbox and returns stdout (and errors)."""
    box = sandbox or PythonSandbox()

    def python(code: str) -> str:
        result = box.run(code)
        if not result.ok:  # reported to the model as an error observation
            raise ToolException(result.render())
        return result.render()

    return StructuredTool.from_function(
        python,
        name="python",
        handle_tool_error=True,
        description=(
            "Run a short Python 3 program in an isolated sandbox (no network, no subprocesses, limited "
            f"memory, {box.timeout_s:g}s timeout) and return what it prints. Use print() for results."
        ),
    )
