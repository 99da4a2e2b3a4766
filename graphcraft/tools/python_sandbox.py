"""Run model-written Python in a separate, limited process.

Layers, from strongest to weakest:
- a new PID namespace (`unshare --pid --fork --kill-child`) when available: killing the run
  kills every process it started, even one that escaped into a new session;
- a new network namespace (`unshare -n`, or `unshare -rn` for a normal user) when the kernel
  allows it: the child has only a downed loopback device, so no connection can succeed;
- when graphcraft runs as root, the child drops to the `nobody` user (setpriv), so ordinary
  file permissions keep it out of the project, the home directory and other processes;
- resource limits set in the child before exec: address space (memory), CPU seconds, file
  size, open files, and (as nobody) the number of processes;
- a wall-clock timeout and an output cap (both pipes are read incrementally) after which the whole
  process group is killed;
- an audit hook (PEP 578) installed before the user's code runs that refuses socket creation,
  process spawning (including importing `_posixsubprocess`), ctypes loading and writes outside the
  run's scratch directory. Audit hooks are not a security boundary on their own; they are the
  fallback when namespaces are unavailable and a clear error message otherwise.

The tool exists only when enabled explicitly (`default_tools(enable_python=True)`).
"""

from __future__ import annotations

import functools
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

# Runs in the child before the user's code: installs the audit hook, then executes the code.
# The hook keeps its own references (default arguments, whose reassignment is itself an audited
# and refused event), so monkeypatching os/posixpath from the snippet does not change it.
_BOOTSTRAP = r"""
import os, sys

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
_hook = _make_hook(os.path.realpath(sys.argv[1]))
sys.argv = ["<sandbox>"]
sys.addaudithook(_hook)
del _hook, _make_hook, _f
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
"""

NOBODY = 65534
# Processes the `nobody` user may have at once (all sandboxes together): a fork-bomb guard. Python
# itself needs one; concurrent runs share the count, so it is not 1.
NOBODY_NPROC = 64
OUTPUT_CAP_FACTOR = 4  # bytes read per stream before the run is killed, times max_output_chars


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
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class PythonSandbox:
    """Runs code snippets in a limited subprocess; one scratch directory per run."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 512,
        max_output_chars: int = 10_000,
        network_isolation: NetworkIsolation = "auto",
        python: str | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.python = python or sys.executable
        namespace, drop = isolation_prefix(self.python, network=network_isolation != "audit")
        if network_isolation == "namespace" and "-n" not in namespace:
            raise RuntimeError("network namespaces (unshare -n) are not available on this machine")
        self._namespace, self._drop = namespace, drop

    @property
    def isolation(self) -> str:
        """Which layers are active, e.g. 'netns+nobody+rlimits+audit'."""
        layers = (["netns"] if "-n" in self._namespace else []) + (["pidns"] if "--pid" in self._namespace else [])
        layers += ["nobody"] if self._drop else []
        return "+".join([*layers, "rlimits", "audit"])

    def _limits(self) -> None:
        """Runs in the child between fork and exec."""
        mem = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = int(self.timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self._drop:  # counts nobody's processes; root (before setpriv) is exempt
            resource.setrlimit(resource.RLIMIT_NPROC, (NOBODY_NPROC, NOBODY_NPROC))

    def run(self, code: str) -> SandboxResult:
        with tempfile.TemporaryDirectory(prefix="graphcraft-py-") as scratch:
            code_path = Path(scratch) / "snippet.py"
            code_path.write_text(code, encoding="utf-8")
            work = Path(scratch) / "work"
            work.mkdir()
            if self._drop:
                for path in (scratch, code_path, work):
                    os.chown(path, NOBODY, NOBODY)
            command = [*self._namespace, *self._drop, self.python, "-I", "-c", _BOOTSTRAP, str(work), str(code_path)]
            env = {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "HOME": str(work)}
            proc = subprocess.Popen(
                command,
                cwd=work,
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
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _clip(text: str, limit: int) -> str:
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
