import os

import pytest

from graphcraft.tools import default_tools
from graphcraft.tools.files import Workspace, WorkspaceError, file_tools


@pytest.fixture
def layout(tmp_path):
    """A workspace next to a secret file outside it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (ws / "notes").mkdir()
    (ws / "notes" / "a.txt").write_text("alpha")
    return ws, secret


def _tools(ws):
    return {t.name: t for t in file_tools(ws)}


def test_read_write_list_inside_workspace(layout):
    ws, _ = layout
    tools = _tools(ws)
    assert tools["read_file"].invoke({"path": "notes/a.txt"}) == "alpha"
    assert "wrote 5 bytes" in tools["write_file"].invoke({"path": "out/b.txt", "content": "bravo"})
    assert (ws / "out" / "b.txt").read_text() == "bravo"
    tools["write_file"].invoke({"path": "out/b.txt", "content": "!", "append": True})
    assert (ws / "out" / "b.txt").read_text() == "bravo!"
    listing = tools["list_files"].invoke({"path": ".", "recursive": True}).splitlines()
    assert listing == ["notes/", "notes/a.txt", "out/", "out/b.txt"]


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "notes/../../secret.txt", "/etc/passwd", "~/.bashrc", "notes/../../../../../etc/passwd"],
)
def test_traversal_and_absolute_paths_refused(layout, path):
    ws, _ = layout
    tools = _tools(ws)
    out = tools["read_file"].invoke({"path": path})
    assert "TOP SECRET" not in out and "root:" not in out
    assert "not allowed" in out or "leaves the workspace" in out
    out = tools["write_file"].invoke({"path": path, "content": "pwned"})
    assert "not allowed" in out or "leaves the workspace" in out


def test_absolute_path_into_workspace_is_still_refused(layout):
    ws, _ = layout
    with pytest.raises(WorkspaceError, match="absolute"):
        Workspace(ws).resolve(str(ws / "notes" / "a.txt"))


def test_symlink_escapes_refused(layout):
    ws, secret = layout
    os.symlink(secret, ws / "link.txt")
    os.symlink(secret.parent, ws / "outside_dir")
    tools = _tools(ws)
    assert "leaves the workspace" in tools["read_file"].invoke({"path": "link.txt"})
    assert "leaves the workspace" in tools["read_file"].invoke({"path": "outside_dir/secret.txt"})
    # Writing through the link must not touch the file it points to.
    assert "leaves the workspace" in tools["write_file"].invoke({"path": "link.txt", "content": "pwned"})
    assert "leaves the workspace" in tools["write_file"].invoke({"path": "outside_dir/new.txt", "content": "x"})
    assert secret.read_text() == "TOP SECRET"
    assert not (secret.parent / "new.txt").exists()
    assert "leaves the workspace" in tools["list_files"].invoke({"path": "outside_dir"})
    # Escaping links are hidden from listings.
    assert "link.txt" not in tools["list_files"].invoke({"path": "."})


def test_symlink_inside_workspace_is_fine(layout):
    ws, _ = layout
    os.symlink(ws / "notes" / "a.txt", ws / "alias.txt")
    assert _tools(ws)["read_file"].invoke({"path": "alias.txt"}) == "alpha"


def test_missing_file_and_directory_errors(layout):
    ws, _ = layout
    tools = _tools(ws)
    assert "no such file" in tools["read_file"].invoke({"path": "nope.txt"})
    assert "is a directory" in tools["write_file"].invoke({"path": "notes", "content": "x"})
    assert "no such directory" in tools["list_files"].invoke({"path": "nope"})
    assert "NUL" in tools["read_file"].invoke({"path": "a\x00b"})


def test_default_tools_names(tmp_path):
    names = [t.name for t in default_tools(workspace=tmp_path / "w")]
    assert names == ["calculator", "read_file", "write_file", "list_files"]
    names = [t.name for t in default_tools(workspace=tmp_path / "w", enable_python=True)]
    assert names == ["calculator", "read_file", "write_file", "list_files", "python"]


def _one_line_error(out: str) -> str:
    assert "\n" not in out and "Traceback" not in out
    return out


def test_symlink_loops_are_errors_and_skipped_by_listing(layout):
    ws, _ = layout
    os.symlink("loop_b", ws / "loop_a")
    os.symlink("loop_a", ws / "loop_b")
    os.symlink("self", ws / "notes" / "self")
    tools = _tools(ws)
    assert "symlink loop" in _one_line_error(tools["read_file"].invoke({"path": "loop_a"}))
    assert "symlink loop" in _one_line_error(tools["write_file"].invoke({"path": "notes/self/x", "content": "x"}))
    with pytest.raises(WorkspaceError, match="symlink loop"):
        Workspace(ws).resolve("loop_b/inner.txt")
    listing = tools["list_files"].invoke({"path": ".", "recursive": True}).splitlines()
    assert listing == ["notes/", "notes/a.txt"]


def test_write_under_a_file_is_a_clear_error(layout):
    ws, _ = layout
    tools = _tools(ws)
    out = _one_line_error(tools["write_file"].invoke({"path": "notes/a.txt/child.txt", "content": "x"}))
    assert "parent folder is a file" in out
    out = _one_line_error(tools["write_file"].invoke({"path": "notes/a.txt/deeper/child.txt", "content": "x"}))
    assert "parent folder is a file" in out
    assert (ws / "notes" / "a.txt").read_text() == "alpha"


def test_name_too_long_and_lone_surrogates(layout):
    ws, _ = layout
    tools = _tools(ws)
    for path in ("x" * 300, "d/" + "y" * 300 + "/z.txt"):
        out = _one_line_error(tools["write_file"].invoke({"path": path, "content": "x"}))
        assert "too long" in out and len(out) < 200
        assert "too long" in _one_line_error(tools["read_file"].invoke({"path": path}))
    assert "surrogates" in _one_line_error(tools["read_file"].invoke({"path": "bad\ud800.txt"}))
    assert "surrogates" in _one_line_error(tools["write_file"].invoke({"path": "ok.txt", "content": "\udc80"}))
    assert not (ws / "ok.txt").exists()


def test_fifo_does_not_block(layout):
    ws, _ = layout
    os.mkfifo(ws / "pipe")
    tools = _tools(ws)
    assert "not a regular file" in tools["read_file"].invoke({"path": "pipe"})
    assert "not a regular file" in tools["write_file"].invoke({"path": "pipe", "content": "x"})
    assert "not a regular file" in tools["write_file"].invoke({"path": "pipe", "content": "x", "append": True})


def test_open_refuses_a_fifo_swapped_in_after_the_checks(layout):
    """The final open itself must not block on a FIFO (O_NONBLOCK) and must refuse it (fstat)."""
    from graphcraft.tools.files import _open_nofollow

    ws, _ = layout
    os.mkfifo(ws / "pipe")
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT):
        with pytest.raises(WorkspaceError, match="not a regular file|No such device"):
            os.close(_open_nofollow(ws / "pipe", flags))
