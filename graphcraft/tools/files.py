"""File tools confined to one workspace directory.

Every path the model gives is relative to the workspace; absolute paths are refused. A path is
never handed to the kernel as a whole, because a concurrent process could swap any folder on
it for a symlink between a check and the open. Instead the tools walk it one component at a
time from a descriptor of the workspace folder (``openat`` style): each folder is opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to the descriptor of its parent, so a symlink is never
followed by the kernel, whatever is swapped in and when. A symlink found on the way is read
(``readlinkat``) and its target walked the same way: ``..`` pops a folder this walk opened
(never above the workspace) and an absolute target must lie in the workspace. The file is
then opened relative to the last folder's descriptor, again with ``O_NOFOLLOW``; before data
is returned or written, the folder is checked to still lie inside the workspace (in case it
was moved out meanwhile). The workspace folder itself is identified by its device and inode
when the tools are made: a folder or symlink put in its place later is refused.

Only regular files are read or written (not FIFOs, devices or sockets), and not a file with
several hard links, since its data is shared with a path that may lie outside.

Sizes are bounded: a write of more than MAX_WRITE_BYTES is refused before its text is copied
or encoded (and before LangChain formats the tool input); text is encoded and written in
chunks; a file grows to at most ``max_file_bytes`` through appends, and all files of the
workspace together to at most ``quota_bytes`` (writes of one workspace are serialised by a
lock on its folder, so concurrent writers cannot overshoot). An overwrite goes to a new file
that replaces the old one only when complete, so a refused or failed write leaves the old
content in place.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import os
import secrets
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException

MAX_READ_BYTES = 1_000_000
MAX_WRITE_BYTES = 1_000_000  # one write_file call
MAX_FILE_BYTES = 10_000_000  # one file, appends included
DEFAULT_QUOTA_BYTES = 100_000_000  # every file of the workspace together
MAX_LIST_ENTRIES = 500
MAX_SCAN_ENTRIES = 100_000  # entries visited to list or to measure the workspace
MAX_SYMLINKS = 40  # symlinks followed in one path, as the kernel allows
MAX_DEPTH = 128  # folders nested in a path, in a listing or a size measurement (each holds a descriptor)
NAME_MAX = 255
_CHUNK_CHARS = 65_536
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OVERSIZED = "\x00graphcraft: content over the write limit\x00"
_TEMP_PREFIX = ".graphcraft-write-"


class WorkspaceError(ToolException):
    """A path escapes the workspace or the file operation failed; returned to the model as text."""


class Workspace:
    """A directory the file tools may read and write, and nothing outside it."""

    def __init__(
        self,
        root: str | Path,
        *,
        create: bool = True,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        root = Path(root).expanduser()
        if create:
            root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise WorkspaceError(f"workspace {root} is not a directory")
        self.root = root.resolve(strict=True)
        info = os.stat(self.root)
        self._identity = (info.st_dev, info.st_ino)
        self.quota_bytes = quota_bytes
        self.max_file_bytes = max_file_bytes

    # -- walking a path ------------------------------------------------------------------------
    def _open_root(self) -> int:
        """A descriptor of the workspace folder, refused if something else now has its name."""
        try:
            fd = os.open(self.root, _DIR_FLAGS)
        except OSError as exc:
            raise WorkspaceError(f"the workspace folder is gone or was replaced: {exc.strerror}") from None
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != self._identity:
            os.close(fd)
            raise WorkspaceError("the workspace folder was replaced by another one")
        return fd

    @contextmanager
    def _walk(self, path: str, *, final: bool, create_dirs: bool = False) -> Iterator[tuple[int, str, list[str]]]:
        """Resolve ``path`` component by component from the workspace's descriptor.

        With ``final`` the last component is not opened: yields (descriptor of its folder, its
        name, workspace-relative parts); symlinks on it are followed like the others. Without,
        the whole path must be a folder: yields (its descriptor, "", parts). Descriptors are
        closed on exit.
        """
        pending = deque(_parts(path))
        stack = [(self._open_root(), "")]
        links = 0
        try:
            while pending:
                part = pending.popleft()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) == 1:
                        raise WorkspaceError(f"path {_show(path)} leaves the workspace (through '..' or a symlink)")
                    os.close(stack.pop()[0])
                    continue
                if final and not any(p not in ("", ".") for p in pending):
                    target = _readlink(stack[-1][0], part)
                    if target is None:
                        yield stack[-1][0], part, [name for _, name in stack[1:]] + [part]
                        return
                else:
                    if len(stack) > MAX_DEPTH:
                        raise WorkspaceError(f"{_show(path)} is nested over {MAX_DEPTH} folders deep")
                    fd, target = self._descend(stack[-1][0], part, path, create_dirs)
                    if fd is not None:
                        stack.append((fd, part))
                        continue
                links += 1
                if links > MAX_SYMLINKS:
                    raise WorkspaceError(f"symlink loop in {_show(path)}")
                assert target is not None
                self._splice(target, pending, stack, path)
            if final:
                raise WorkspaceError(f"{_show(path)} is a directory")
            yield stack[-1][0], "", [name for _, name in stack[1:]]
        finally:
            for fd, _ in stack:
                os.close(fd)

    def _descend(self, dirfd: int, part: str, path: str, create: bool) -> tuple[int | None, str | None]:
        """Open the folder ``part`` without following a symlink: (descriptor, None) or (None, symlink target)."""
        for _attempt in range(MAX_SYMLINKS):
            try:
                return os.open(part, _DIR_FLAGS, dir_fd=dirfd), None
            except FileNotFoundError:
                if not create:
                    raise WorkspaceError(f"no such file or directory: {_show(path)}") from None
                with _fs_errors(path):
                    try:
                        os.mkdir(part, 0o755, dir_fd=dirfd)
                    except FileExistsError:
                        pass  # made meanwhile (or swapped): open it again
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise _as_workspace_error(exc, path) from None
                target = _readlink(dirfd, part)
                if target is not None:
                    return None, target
                info = _lstat(dirfd, part)
                if info is not None and not (stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                    raise WorkspaceError(f"cannot use {_show(path)}: a parent folder is a file") from None
                # swapped back to a folder (or removed) since the open: try again
        raise WorkspaceError(f"{_show(path)} keeps changing while it is opened")

    def _splice(self, target: str, pending: deque[str], stack: list[tuple[int, str]], path: str) -> None:
        """Continue the walk at a symlink's target: relative to its folder, or from the workspace if absolute."""
        parts = target.split("/")
        if target.startswith("/"):
            root_parts = self.root.parts[1:]
            inner = [p for p in parts[1:] if p != ""]
            if tuple(inner[: len(root_parts)]) != root_parts:
                raise WorkspaceError(f"path {_show(path)} leaves the workspace (through '..' or a symlink)")
            while len(stack) > 1:
                os.close(stack.pop()[0])
            parts = inner[len(root_parts) :]
        pending.extendleft(reversed(parts))

    def _check_inside(self, dirfd: int, path: str) -> None:
        """Refuse when the folder no longer lies in the workspace (it was moved out while in use)."""
        fd = os.dup(dirfd)
        try:
            for _level in range(4096):
                info = os.fstat(fd)
                if (info.st_dev, info.st_ino) == self._identity:
                    return
                parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = parent
                if os.fstat(fd).st_ino == info.st_ino and os.fstat(fd).st_dev == info.st_dev:
                    break  # the file system's root: the workspace was not on the way
        finally:
            os.close(fd)
        raise WorkspaceError(f"{_show(path)} was moved out of the workspace while in use")

    # -- the public operations -----------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """The real path for a workspace-relative path, or WorkspaceError if it would escape."""
        with _fs_errors(path), self._walk(path, final=True) as (_dirfd, _name, rel):
            return self.root.joinpath(*rel)

    def relative(self, path: Path) -> str:
        """A real path inside the workspace as the workspace-relative text shown to the model."""
        return path.relative_to(self.root).as_posix() or "."

    def read(self, path: str) -> str:
        """The text of a regular file (at most MAX_READ_BYTES; invalid UTF-8 replaced)."""
        with _fs_errors(path), self._walk(path, final=True) as (dirfd, name, _rel):
            fd = _open_in(dirfd, name, os.O_RDONLY, path)
            with os.fdopen(fd, "rb") as handle:
                _refuse_hard_link(os.fstat(handle.fileno()), path)
                data = handle.read(MAX_READ_BYTES + 1)
            self._check_inside(dirfd, path)
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            text += f"\n[truncated at {MAX_READ_BYTES} bytes]"
        return text

    def write(self, path: str, content: str, append: bool = False) -> str:
        """Write or append text, creating folders; within the per-write, per-file and workspace limits."""
        size = _encoded_size(content)
        with _fs_errors(path), self._locked(), self._walk(path, final=True, create_dirs=True) as (dirfd, name, rel):
            existing = _lstat(dirfd, name)
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise WorkspaceError(f"{_show(path)} is a directory")
            if existing is not None and not stat.S_ISREG(existing.st_mode):
                raise WorkspaceError(f"{_show(path)} is not a regular file")
            old = existing.st_size if existing is not None else 0
            self._check_sizes(path, old + size if append else size, size if append else size - old)
            if append:
                self._append(dirfd, name, content, path)
            else:
                self._replace(dirfd, name, content, path, existing)
        return f"wrote {size} bytes to {'/'.join(rel)}"

    def list(self, path: str = ".", recursive: bool = False) -> list[str]:
        """Entries of a folder, sorted, folders ending in '/'; links leading outside are left out."""
        with _fs_errors(path):
            try:
                with self._walk(path, final=False) as (dirfd, _name, rel):
                    self._check_inside(dirfd, path)
                    found: builtins.list[tuple[builtins.list[str], str]] = []
                    self._scan(dirfd, rel, recursive, found)
            except WorkspaceError as exc:
                if "no such file" in str(exc) or "a parent folder is a file" in str(exc):
                    raise WorkspaceError(f"no such directory: {_show(path)}") from None
                raise
        entries = [shown for _key, shown in sorted(found)]
        if len(entries) > MAX_LIST_ENTRIES:
            entries = entries[:MAX_LIST_ENTRIES] + [f"[truncated at {MAX_LIST_ENTRIES} entries]"]
        return entries

    # -- helpers of write and list ---------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time per workspace, across threads and processes (a lock on its folder)."""
        fd = self._open_root()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _check_sizes(self, path: str, file_size: int, growth: int) -> None:
        """Refuse a write that would make the file too big or the workspace go over its quota."""
        if file_size > self.max_file_bytes:
            raise WorkspaceError(
                f"{_show(path)} would hold {file_size} bytes: a file may hold at most {self.max_file_bytes} bytes"
            )
        used = self._usage()
        if growth > 0 and used + growth > self.quota_bytes:
            raise WorkspaceError(
                f"the workspace quota is full: {used} of {self.quota_bytes} bytes used, this write adds {growth}"
            )

    def _usage(self) -> int:
        """Bytes in all regular files of the workspace (symlinks not followed)."""
        root = self._open_root()
        try:
            return _measure(root, [0], 0)
        finally:
            os.close(root)

    def _append(self, dirfd: int, name: str, content: str, path: str) -> None:
        """Append to the file itself (created if missing); refused for hard links, whose data is shared."""
        fd = _open_in(dirfd, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path)
        try:
            _refuse_hard_link(os.fstat(fd), path)
            self._check_inside(dirfd, path)
            _write_chunks(fd, content)
        finally:
            os.close(fd)

    def _replace(self, dirfd: int, name: str, content: str, path: str, existing: os.stat_result | None) -> None:
        """Write a new file next to the old one, then rename it over the old one (which is never followed)."""
        temp = f"{_TEMP_PREFIX}{secrets.token_hex(8)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o644, dir_fd=dirfd)
        try:
            try:
                self._check_inside(dirfd, path)
                _write_chunks(fd, content)
                if existing is not None:
                    os.fchmod(fd, stat.S_IMODE(existing.st_mode))
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except BaseException:
            with _ignore_vanished():
                os.unlink(temp, dir_fd=dirfd)
            raise

    def _scan(
        self, dirfd: int, rel: builtins.list[str], recursive: bool, found: builtins.list[tuple[builtins.list[str], str]]
    ) -> None:
        """Entries of a folder (and, when recursive, of its real subfolders, not of symlinked ones)."""
        with os.scandir(dirfd) as entries:
            names = sorted(entry.name for entry in entries)
        for entry_name in names:
            if len(found) >= MAX_SCAN_ENTRIES:
                return
            if entry_name.startswith(_TEMP_PREFIX):
                continue  # a write in progress
            parts = [*rel, entry_name]
            info = _lstat(dirfd, entry_name)
            if info is None:
                continue  # removed meanwhile
            if stat.S_ISLNK(info.st_mode):
                kind = self._link_kind("/".join(parts))
                if kind is not None:  # escaping links and loops are not shown (nor where they point)
                    found.append((parts, "/".join(parts) + ("/" if kind else "")))
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            found.append((parts, "/".join(parts) + ("/" if is_dir else "")))
            if is_dir and recursive and len(parts) < MAX_DEPTH:
                with _ignore_vanished():
                    sub = os.open(entry_name, _DIR_FLAGS, dir_fd=dirfd)
                    try:
                        self._scan(sub, parts, recursive, found)
                    finally:
                        os.close(sub)

    def _link_kind(self, rel: str) -> bool | None:
        """For a symlink in the workspace: True if it leads to a folder inside, False to a file inside,
        None if it leads outside, nowhere, or round in a loop."""
        try:
            with self._walk(rel, final=True) as (dirfd, name, _parts):
                info = _lstat(dirfd, name)
        except (WorkspaceError, OSError):
            return None
        return None if info is None else stat.S_ISDIR(info.st_mode)


def _measure(dirfd: int, seen: list[int], depth: int) -> int:
    """Bytes of the regular files under a folder; descriptors are held only along the current branch."""
    if depth > MAX_DEPTH:
        raise WorkspaceError(f"the workspace is nested over {MAX_DEPTH} folders deep: cannot measure its size")
    total = 0
    with os.scandir(dirfd) as entries:
        for entry in entries:
            seen[0] += 1
            if seen[0] > MAX_SCAN_ENTRIES:
                raise WorkspaceError(f"the workspace holds over {MAX_SCAN_ENTRIES} entries: cannot measure its size")
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
            elif stat.S_ISDIR(info.st_mode):
                with _ignore_vanished():
                    sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dirfd)
                    try:
                        total += _measure(sub, seen, depth + 1)
                    finally:
                        os.close(sub)
    return total


def _parts(path: str) -> list[str]:
    """The components of a workspace-relative path, after the checks that need no file system."""
    raw = (path or ".").strip()
    if "\x00" in raw:
        raise WorkspaceError("path contains a NUL byte")
    try:
        encoded = raw.encode("utf-8")
    except UnicodeEncodeError:
        raise WorkspaceError("path contains characters that are not valid UTF-8 (lone surrogates)") from None
    if raw.startswith("~") or Path(raw).is_absolute() or PurePosixPath(raw.replace("\\", "/")).is_absolute():
        raise WorkspaceError(f"absolute paths are not allowed: {_show(raw)}; use a path relative to the workspace")
    parts = raw.split("/")
    if len(encoded) > 4096 or any(len(p.encode("utf-8")) > NAME_MAX for p in parts):
        raise WorkspaceError(f"cannot access {_show(raw)}: File name too long")
    return parts


def _readlink(dirfd: int, name: str) -> str | None:
    """The target of the symlink ``name`` in the folder, or None when it is not a symlink (or is gone)."""
    try:
        return os.readlink(name, dir_fd=dirfd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _lstat(dirfd: int, name: str) -> os.stat_result | None:
    """The entry itself (a symlink is not followed), or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_in(dirfd: int, name: str, flags: int, path: str) -> int:
    """Open a regular file in a folder: never through a symlink, never blocking on a FIFO."""
    try:
        fd = os.open(name, flags | _FILE_FLAGS, 0o644, dir_fd=dirfd)
    except FileNotFoundError:
        raise WorkspaceError(f"no such file: {_show(path)}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink swapped in after the walk read this name
            raise WorkspaceError(f"{_show(path)} changed while it was opened; try again") from None
        raise _as_workspace_error(exc, path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WorkspaceError(f"{_show(path)} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _open_nofollow(target: Path, flags: int) -> int:
    """Open a regular file by path without following a final symlink or blocking on a FIFO."""
    dirfd = os.open(target.parent, _DIR_FLAGS)
    try:
        return _open_in(dirfd, target.name, flags, target.name)
    finally:
        os.close(dirfd)


def _refuse_hard_link(info: os.stat_result, path: str) -> None:
    """A file with several links shares its data with another path, which may lie outside: not ours to use."""
    if info.st_nlink > 1:
        raise WorkspaceError(
            f"{_show(path)} is a hard link: its data is shared with another path, which may lie outside the workspace"
        )


def _encoded_size(content: str) -> int:
    """UTF-8 size of the content, refused over MAX_WRITE_BYTES without copying or encoding all of it."""
    if not isinstance(content, str):
        raise WorkspaceError("content must be text")
    if len(content) > MAX_WRITE_BYTES or content.startswith(_OVERSIZED):
        raise WorkspaceError(f"content larger than {MAX_WRITE_BYTES} bytes")
    size = 0
    try:
        for start in range(0, len(content), _CHUNK_CHARS):
            size += len(content[start : start + _CHUNK_CHARS].encode("utf-8"))
            if size > MAX_WRITE_BYTES:
                raise WorkspaceError(f"content larger than {MAX_WRITE_BYTES} bytes (as UTF-8)")
    except UnicodeEncodeError:
        raise WorkspaceError("content contains characters that are not valid UTF-8 (lone surrogates)") from None
    return size


def _write_chunks(fd: int, content: str) -> None:
    """Encode and write a chunk at a time: never a second full copy of the text in memory."""
    for start in range(0, len(content), _CHUNK_CHARS):
        view = memoryview(content[start : start + _CHUNK_CHARS].encode("utf-8"))
        while view:
            view = view[os.write(fd, view) :]


def _show(path: str, limit: int = 80) -> str:
    """A path for a one-line message (long names are cut)."""
    return repr(path if len(path) <= limit else path[:limit] + "...")


def _as_workspace_error(exc: OSError, path: str) -> WorkspaceError:
    """An OS error as a one-line message naming the path (symlink loops by that name)."""
    reason = "symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or type(exc).__name__)
    return WorkspaceError(f"cannot access {_show(path)}: {reason}")


@contextmanager
def _fs_errors(path: str) -> Iterator[None]:
    """Turn the OS's failures (names too long, no space, ...) into a one-line WorkspaceError."""
    try:
        yield
    except WorkspaceError:
        raise
    except OSError as exc:
        raise _as_workspace_error(exc, path) from None


@contextmanager
def _ignore_vanished() -> Iterator[None]:
    """An entry removed or swapped by someone else while we look at it is skipped, not an error."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise


class _WriteFileTool(StructuredTool):
    """write_file, refusing oversized content before LangChain copies it (it formats every input for its
    callbacks: a 2 GB text would be copied before the size check ran)."""

    def run(self, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        """Shrink oversized content, then run as usual."""
        return super().run(_shrink(tool_input), *args, **kwargs)

    async def arun(self, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        """Shrink oversized content, then run as usual."""
        return await super().arun(_shrink(tool_input), *args, **kwargs)


def _shrink(tool_input: Any) -> Any:
    """The tool input with oversized content replaced by a short marker that the tool refuses."""
    if isinstance(tool_input, dict):
        content = tool_input.get("content")
        if isinstance(content, str) and len(content) > MAX_WRITE_BYTES:
            return {**tool_input, "content": _OVERSIZED}
    return tool_input


def file_tools(workspace: str | Path | Workspace) -> list[BaseTool]:
    """read_file, write_file and list_files bound to one workspace."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)

    def read_file(path: str) -> str:
        """Read a text file of the workspace."""
        return ws.read(path)

    def write_file(path: str, content: str, append: bool = False) -> str:
        """Write (or append) text to a file of the workspace."""
        return ws.write(path, content, append=append)

    def list_files(path: str = ".", recursive: bool = False) -> str:
        """List a folder of the workspace."""
        entries = ws.list(path, recursive=recursive)
        return "\n".join(entries) if entries else "(empty)"

    return [
        StructuredTool.from_function(
            read_file,
            name="read_file",
            description="Read a UTF-8 text file from the workspace. path is relative to the workspace.",
            handle_tool_error=True,
        ),
        _WriteFileTool.from_function(
            write_file,
            name="write_file",
            description=(
                "Write text to a file in the workspace (creates folders; overwrites unless append=true). "
                f"path is relative to the workspace; at most {MAX_WRITE_BYTES} bytes per call."
            ),
            handle_tool_error=True,
        ),
        StructuredTool.from_function(
            list_files,
            name="list_files",
            description="List files in a workspace folder (default: the workspace root); directories end with '/'.",
            handle_tool_error=True,
        ),
    ]
