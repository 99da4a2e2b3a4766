"""Builds the python sandbox's private file system, then becomes the sandboxed interpreter.

Not imported: :mod:`graphcraft.tools.python_sandbox` passes this file's source to
``python -I -c`` behind ``unshare``, so it runs as the first process (PID 1) of new mount,
network, PID, IPC and UTS namespaces, as root there (real root, or the caller mapped to root
in a new user namespace), with the standard library only. It then:

1. mounts a small tmpfs as the new root and binds into it, read-only, only what Python needs
   (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, ``/etc`` and the interpreter's prefix), so the
   project, the home folders, ``/tmp``, ``/var`` and every store are simply not there;
2. adds ``/dev/null``, ``zero``, ``full``, ``random``, ``urandom``, a fresh ``/proc`` (of the new
   PID namespace) and ``/scratch``: a tmpfs of ``disk_mb`` megabytes and a bounded number of
   files, the only writable place (``/tmp`` points to it);
3. makes the new root read-only and pivots into it, detaching the host's file system;
4. gives up its privileges for good (the ``nobody`` user when it is real root; otherwise no
   capabilities, with the securebits that stop ``exec`` from granting them back, and
   no-new-privileges) and execs the interpreter that runs the snippet.

Any failure before the exec is one line on stderr and exit status 125.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | 1024 | 2048 | 4096  # + noatime, nodiratime, relatime
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 38, 24, 28
SECUREBITS_LOCKED_NOROOT = 0x2F  # NOROOT and NO_SETUID_FIXUP on, KEEP_CAPS off, all three locked
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}
DEVICES = ("null", "zero", "full", "random", "urandom")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    """Turn a failed libc call into an OSError naming what failed."""
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2) through libc: Python has no binding for it."""
    encode = lambda s: None if s is None else s.encode()  # noqa: E731 - a one-line helper
    _check(libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), f"mount {target}")


def bind_read_only(source: str, target: str) -> None:
    """Bind one directory or file read-only (not its submounts); keeps the flags the source must keep."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(source, target, None, MS_BIND)
    kept = os.statvfs(target).f_flag & KEPT_FLAGS
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def system_tree(root: str, extra: list[str]) -> None:
    """The read-only system folders and the interpreter's prefix; symlinks such as /bin -> usr/bin are copied."""
    done: list[str] = []
    for source in [*SYSTEM_DIRS, *extra]:
        source = os.path.normpath(source)
        if not os.path.lexists(source) or any(source == d or source.startswith(d + "/") for d in done):
            continue
        target = root + source
        if os.path.islink(source) and source in SYSTEM_DIRS:
            os.symlink(os.readlink(source), target)
        else:
            bind_read_only(os.path.realpath(source), target)
        done.append(source)


def devices_and_proc(root: str) -> None:
    """The harmless devices, the usual /dev symlinks and a /proc of the new PID namespace only."""
    os.makedirs(root + "/dev", exist_ok=True)
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            bind_read_only("/dev/" + name, f"{root}/dev/{name}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
    os.makedirs(root + "/proc", exist_ok=True)
    try:
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # some containers forbid a new proc: Python runs without it


def scratch(root: str, config: dict[str, Any]) -> None:
    """The one writable place: a tmpfs whose size and file count bound the disk a run can use."""
    os.makedirs(root + "/scratch")
    uid = config["uid"] if config["uid"] is not None else 0
    options = f"size={config['disk_mb']}m,nr_inodes={config['inodes']},mode=0700,uid={uid},gid={uid}"
    mount("tmpfs", root + "/scratch", "tmpfs", MS_NOSUID | MS_NODEV, options)
    os.symlink("scratch", root + "/tmp")
    os.makedirs(root + "/sandbox")
    with open(config["code"], encoding="utf-8") as source, open(root + "/sandbox/snippet.py", "w") as copy:
        copy.write(source.read())
    os.chmod(root + "/sandbox/snippet.py", 0o444)


def enter(root: str) -> None:
    """Make the new root read-only and switch to it; the host's file system is detached, not just hidden."""
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    number = PIVOT_ROOT.get(platform.machine())
    if number is not None and libc.syscall(number, b".", b".") == 0:
        _check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    else:
        os.chroot(".")
    os.chdir("/scratch")


def drop_privileges(uid: int | None) -> None:
    """Become `nobody` (real root), or keep uid 0 of the user namespace without any capability."""
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    else:
        _check(libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_NOROOT, 0, 0, 0), "securebits")
        for cap in range(64):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                break  # past the last capability this kernel knows
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()
        _check(libc.capset(header, data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def main() -> None:
    """Set everything up from the JSON config in argv[1], then exec the interpreter (or exit 125)."""
    config = json.loads(sys.argv[1])
    root = config["root"]
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,nr_inodes=4096,mode=0755")
        system_tree(root, config["prefixes"])
        devices_and_proc(root)
        scratch(root, config)
        enter(root)
        drop_privileges(config["uid"])
    except OSError as exc:
        print(f"sandbox: could not isolate the run: {exc}", file=sys.stderr, flush=True)
        os._exit(125)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    env.update(HOME="/scratch", TMPDIR="/scratch")
    python = config["python"]
    os.execve(python, [python, "-I", "-c", config["bootstrap"], "/scratch", "/sandbox/snippet.py"], env)


if __name__ == "__main__":
    main()
