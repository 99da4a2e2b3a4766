"""File tools confined to one workspace directory.

Every path the model gives is relative to the workspace. Absolute paths, ``..`` that climbs
out, and symlinks whose target lies outside are refused. The check resolves the real path
(following every symlink) and requires it to stay under the real workspace root; the final
open uses O_NOFOLLOW so a symlink swapped in after the check is not followed either.
"""

from __future__ import annotations

import os
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
        if raw.startswith("~") or Path(raw).is_absolute() or PurePosixPath(raw.replace("\\", "/")).is_absolute():
            raise WorkspaceError(f"absolute paths are not allowed: {raw!r}; use a path relative to the workspace")
        candidate = (self.root / raw).resolve(strict=False)
        if not candidate.is_relative_to(self.root):
            raise WorkspaceError(f"path {raw!r} leaves the workspace (through '..' or a symlink)")
        return candidate

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def read(self, path: str) -> str:
        target = self.resolve(path)
        if not target.is_file():
            raise WorkspaceError(f"no such file: {path!r}")
        fd = _open_nofollow(target, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_READ_BYTES + 1)
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            text += f"\n[truncated at {MAX_READ_BYTES} bytes]"
        return text

    def write(self, path: str, content: str, append: bool = False) -> str:
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise WorkspaceError(f"content larger than {MAX_WRITE_BYTES} bytes")
        target = self.resolve(path)
        if target == self.root or target.is_dir():
            raise WorkspaceError(f"{path!r} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Re-check after mkdir: a parent may have been swapped for a symlink meanwhile.
        if not target.parent.resolve().is_relative_to(self.root):
            raise WorkspaceError(f"path {path!r} leaves the workspace")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = _open_nofollow(target, flags)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return f"wrote {len(data)} bytes to {self.relative(target)}"

    def list(self, path: str = ".", recursive: bool = False) -> list[str]:
        base = self.resolve(path)
        if not base.is_dir():
            raise WorkspaceError(f"no such directory: {path!r}")
        entries: list[str] = []
        walker = base.rglob("*") if recursive else base.iterdir()
        for entry in sorted(walker):
            if entry.is_symlink() and not entry.resolve().is_relative_to(self.root):
                continue  # do not reveal where escaping links point
            rel = entry.relative_to(self.root).as_posix()
            entries.append(rel + "/" if entry.is_dir() else rel)
            if len(entries) >= MAX_LIST_ENTRIES:
                entries.append(f"[truncated at {MAX_LIST_ENTRIES} entries]")
                break
        return entries


def _open_nofollow(target: Path, flags: int) -> int:
    try:
        return os.open(target, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise WorkspaceError(f"cannot open {target.name!r}: {exc.strerror}") from None


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
