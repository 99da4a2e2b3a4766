"""File tools confined to one workspace directory.

Every path the model gives is relative to the workspace. Absolute paths, ``..`` that climbs
out, and symlinks whose target lies outside are refused. The check resolves the real path
(following every symlink) and requires it to stay under the real workspace root; the final
open uses O_NOFOLLOW so a symlink swapped in after the check is not followed either.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from langchain_core.tools import BaseTool, StructuredTool, ToolException

MAX_READ_BYTES = 1_000_000
MAX_WRITE_BYTES = 1_000_000
MAX_LIST_ENTRIES = 500


class WorkspaceError(ToolException):
    """A path escapes the workspace or the file operation failed; returned to the model as text."""


class Workspace:
    """A directory the file tools may read and write, and nothing outside it."""

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        root = Path(root).expanduser()
        if create:
            root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise WorkspaceError(f"workspace {root} is not a directory")
        self.root = root.resolve(strict=True)

    def resolve(self, path: str) -> Path:
        """The real path for a workspace-relative path, or WorkspaceError if it would escape."""
        raw = (path or ".").strip()
        if "\x00" in raw:
            raise WorkspaceError("path contains a NUL byte")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise WorkspaceError("path contains characters that are not valid UTF-8 (lone surrogates)") from None
        if raw.startswith("~") or Path(raw).is_absolute() or PurePosixPath(raw.replace("\\", "/")).is_absolute():
            raise WorkspaceError(f"absolute paths are not allowed: {raw!r}; use a path relative to the workspace")
        with _fs_errors(raw):
            candidate = (self.root / raw).resolve(strict=False)
        if not candidate.is_relative_to(self.root):
            raise WorkspaceError(f"path {raw!r} leaves the workspace (through '..' or a symlink)")
        return candidate

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def read(self, path: str) -> str:
        target = self.resolve(path)
        with _fs_errors(path):
            if not target.exists():
                raise WorkspaceError(f"no such file: {_show(path)}")
            if not target.is_file():
                raise WorkspaceError(f"{_show(path)} is not a regular file")
            fd = _open_nofollow(target, os.O_RDONLY)
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(MAX_READ_BYTES + 1)
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            text += f"\n[truncated at {MAX_READ_BYTES} bytes]"
        return text

    def write(self, path: str, content: str, append: bool = False) -> str:
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise WorkspaceError("content contains characters that are not valid UTF-8 (lone surrogates)") from None
        if len(data) > MAX_WRITE_BYTES:
            raise WorkspaceError(f"content larger than {MAX_WRITE_BYTES} bytes")
        target = self.resolve(path)
        with _fs_errors(path):
            if target == self.root or target.is_dir():
                raise WorkspaceError(f"{_show(path)} is a directory")
            if target.exists() and not target.is_file():
                raise WorkspaceError(f"{_show(path)} is not a regular file")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise WorkspaceError(f"cannot write {_show(path)}: a parent folder is a file") from None
            # Re-check after mkdir: a parent may have been swapped for a symlink meanwhile.
            if not target.parent.resolve().is_relative_to(self.root):
                raise WorkspaceError(f"path {_show(path)} leaves the workspace")
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            fd = _open_nofollow(target, flags)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return f"wrote {len(data)} bytes to {self.relative(target)}"

    def list(self, path: str = ".", recursive: bool = False) -> list[str]:
        base = self.resolve(path)
        with _fs_errors(path):
            if not base.is_dir():
                raise WorkspaceError(f"no such directory: {_show(path)}")
            walker = sorted(base.rglob("*") if recursive else base.iterdir())
        entries: list[str] = []
        for entry in walker:
            if entry.is_symlink() and not _link_stays_inside(entry, self.root):
                continue  # do not reveal where escaping links point; skip loops
            rel = entry.relative_to(self.root).as_posix()
            entries.append(rel + "/" if entry.is_dir() else rel)
            if len(entries) >= MAX_LIST_ENTRIES:
                entries.append(f"[truncated at {MAX_LIST_ENTRIES} entries]")
                break
        return entries


def _open_nofollow(target: Path, flags: int) -> int:
    """Open a regular file only: O_NONBLOCK so a FIFO cannot block the open, then fstat to refuse it."""
    try:
        fd = os.open(target, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise WorkspaceError(f"cannot open {_show(target.name)}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WorkspaceError(f"{_show(target.name)} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _link_stays_inside(link: Path, root: Path) -> bool:
    try:
        return link.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _show(path: str, limit: int = 80) -> str:
    """A path for a one-line message (long names are cut)."""
    return repr(path if len(path) <= limit else path[:limit] + "...")


@contextmanager
def _fs_errors(path: str) -> Iterator[None]:
    """Turn the OS's failures (loops, names too long, ...) into a one-line WorkspaceError."""
    try:
        yield
    except WorkspaceError:
        raise
    except RuntimeError:  # pathlib: "Symlink loop from ..."
        raise WorkspaceError(f"symlink loop in {_show(path)}") from None
    except OSError as exc:
        reason = "symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or type(exc).__name__)
        raise WorkspaceError(f"cannot access {_show(path)}: {reason}") from None


def file_tools(workspace: str | Path | Workspace) -> list[BaseTool]:
    """read_file, write_file and list_files bound to one workspace."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)

    def read_file(path: str) -> str:
        return ws.read(path)

    def write_file(path: str, content: str, append: bool = False) -> str:
        return ws.write(path, content, append=append)

    def list_files(path: str = ".", recursive: bool = False) -> str:
        entries = ws.list(path, recursive=recursive)
        return "\n".join(entries) if entries else "(empty)"

    return [
        StructuredTool.from_function(
            read_file,
            name="read_file",
            description="Read a UTF-8 text file from the workspace. path is relative to the workspace.",
            handle_tool_error=True,
        ),
        StructuredTool.from_function(
            write_file,
            name="write_file",
            description=(
                "Write text to a file in the workspace (creates folders; overwrites unless append=true). "
                "path is relative to the workspace."
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
