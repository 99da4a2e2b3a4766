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


# --- races: a concurrent process swaps directories and symlinks while the tools run -------------

# Atomically exchanges two names (a directory and a symlink to outside) as fast as it can, for a
# bounded time, in its own process so it truly runs alongside the tool calls. Prints the swap count.
_SWAPPER = r"""
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, end = sys.argv[1].encode(), sys.argv[2].encode(), time.monotonic() + float(sys.argv[3])
swaps = 0
while time.monotonic() < end:
    if libc.renameat2(-100, a, -100, b, 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
        raise SystemExit(f"renameat2 failed: errno {ctypes.get_errno()}")
    swaps += 1
print(swaps)
"""
RACE_SECONDS = 3.0


def _race(swap_a, swap_b, calls) -> tuple[int, int]:
    """Run each call in its own thread in a loop while a process swaps swap_a and swap_b.

    Returns (tool calls made, swaps made).
    """
    import subprocess
    import sys
    import threading

    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(swap_a), str(swap_b), str(RACE_SECONDS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    counts = [0] * len(calls)

    def loop(k: int) -> None:
        while swapper.poll() is None:
            calls[k](counts[k])
            counts[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out, _ = swapper.communicate(timeout=30)
    assert swapper.returncode == 0, out
    return sum(counts), int(out)


def _outside_layout(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    (outside / "only_outside.txt").write_text("TOP SECRET")
    return outside


@pytest.mark.parametrize("depth", [1, 3])
def test_directory_swapped_for_an_outside_symlink_never_leaks(tmp_path, depth):
    """A folder of the path (not only the last component) is exchanged with a symlink to outside."""
    outside = _outside_layout(tmp_path)
    ws = tmp_path / "ws"
    parent = ws.joinpath(*["n"] * (depth - 1))
    parent.mkdir(parents=True)
    (parent / "d").mkdir()
    (parent / "d" / "secret.txt").write_text("inside")
    os.symlink(outside, parent / "lnk")
    rel = "/".join([*["n"] * (depth - 1), "d"])
    tools = _tools(ws)
    leaks: list[str] = []

    def read(_k: int) -> None:
        out = tools["read_file"].invoke({"path": f"{rel}/secret.txt"})
        if "TOP SECRET" in out:
            leaks.append("read: " + out)

    def write(k: int) -> None:
        tools["write_file"].invoke({"path": f"{rel}/w{k}.txt", "content": "x"})
        tools["write_file"].invoke({"path": f"{rel}/sub{k}/deeper/w.txt", "content": "x", "append": True})

    def listing(_k: int) -> None:
        out = tools["list_files"].invoke({"path": rel, "recursive": True})
        if "only_outside" in out:
            leaks.append("list: " + out)

    calls, swaps = _race(parent / "d", parent / "lnk", [read, write, listing])
    assert calls > 200 and swaps > 1000, (calls, swaps)
    assert leaks == []
    assert sorted(p.name for p in outside.iterdir()) == ["only_outside.txt", "secret.txt"]
    assert (outside / "secret.txt").read_text() == "TOP SECRET"


def test_file_swapped_for_an_outside_symlink_never_leaks(tmp_path):
    """The last component is exchanged with a symlink to a file outside: never read nor written."""
    outside = _outside_layout(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f.txt").write_text("inside")
    os.symlink(outside / "secret.txt", ws / "flnk")
    tools = _tools(ws)
    leaks: list[str] = []

    def read(_k: int) -> None:
        out = tools["read_file"].invoke({"path": "f.txt"})
        if "TOP SECRET" in out:
            leaks.append(out)

    def write(k: int) -> None:
        tools["write_file"].invoke({"path": "f.txt", "content": f"w{k}", "append": k % 2 == 0})

    _race(ws / "f.txt", ws / "flnk", [read, write])
    assert leaks == []
    assert (outside / "secret.txt").read_text() == "TOP SECRET"
    assert (outside / "secret.txt").is_file() and not (outside / "secret.txt").is_symlink()


def test_workspace_root_replaced_by_a_symlink(tmp_path):
    """Moving the workspace away and putting a symlink to outside in its place leaks nothing."""
    outside = _outside_layout(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "secret.txt").write_text("inside")
    tools = _tools(ws)
    ws.rename(tmp_path / "moved")
    os.symlink(outside, ws)
    out = tools["read_file"].invoke({"path": "secret.txt"})
    assert "TOP SECRET" not in out
    tools["write_file"].invoke({"path": "new.txt", "content": "x"})
    assert "only_outside" not in tools["list_files"].invoke({"path": "."})
    assert not (outside / "new.txt").exists()


def test_hard_link_to_an_outside_file_is_refused(layout):
    """A hard link is a regular file inside the workspace whose data is shared with a file outside."""
    ws, secret = layout
    os.link(secret, ws / "hard.txt")
    tools = _tools(ws)
    out = _one_line_error(tools["read_file"].invoke({"path": "hard.txt"}))
    assert "TOP SECRET" not in out and "hard link" in out
    out = tools["write_file"].invoke({"path": "hard.txt", "content": "pwned", "append": True})
    assert "hard link" in out
    tools["write_file"].invoke({"path": "hard.txt", "content": "replaced"})  # a new file, the link is broken
    assert secret.read_text() == "TOP SECRET"
    assert (ws / "hard.txt").read_text() == "replaced"


# --- size: writes are streamed and bounded, appends have a per-file cap and a workspace quota ----

_BIG_WRITE = r"""
import resource, sys
from graphcraft.tools.files import Workspace, file_tools
content = "x" * 200_000_000
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[2] == "tool":
    out = {t.name: t for t in file_tools(sys.argv[1])}["write_file"].invoke({"path": "big.txt", "content": content})
else:
    try:
        out = Workspace(sys.argv[1]).write("big.txt", content)
    except Exception as exc:  # the WorkspaceError the tool turns into text
        out = str(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown, out.replace(chr(10), " ")[:200])
"""


@pytest.mark.parametrize("via", ["workspace", "tool"])
def test_huge_write_is_refused_without_copying_it(tmp_path, via):
    """A 200 MB text is refused before it is encoded or copied (by us or by LangChain's input formatting)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _BIG_WRITE, str(tmp_path / "ws"), via], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    grown_kib, message = out.stdout.split(" ", 1)
    assert "larger than" in message
    assert int(grown_kib) < 50_000, f"refusing a 200 MB write grew memory by {int(grown_kib) // 1024} MB"
    assert not (tmp_path / "ws" / "big.txt").exists()


def test_multibyte_content_over_the_limit_leaves_nothing_behind(layout):
    from graphcraft.tools.files import MAX_WRITE_BYTES

    ws, _ = layout
    tools = _tools(ws)
    text = "é" * (MAX_WRITE_BYTES // 2 + 10)  # fewer characters than the limit, more bytes
    out = _one_line_error(tools["write_file"].invoke({"path": "notes/a.txt", "content": text}))
    assert "larger than" in out
    assert (ws / "notes" / "a.txt").read_text() == "alpha"
    out = _one_line_error(tools["write_file"].invoke({"path": "notes/a.txt", "content": text, "append": True}))
    assert (ws / "notes" / "a.txt").read_text() == "alpha"


def test_appends_stop_at_the_per_file_cap(tmp_path):
    from graphcraft.tools.files import MAX_FILE_BYTES, MAX_WRITE_BYTES

    tools = _tools(tmp_path / "ws")
    chunk = "y" * MAX_WRITE_BYTES
    outcomes = [
        tools["write_file"].invoke({"path": "log.txt", "content": chunk, "append": True})
        for _ in range(MAX_FILE_BYTES // MAX_WRITE_BYTES + 3)
    ]
    assert any("wrote" in o for o in outcomes)
    refused = [_one_line_error(o) for o in outcomes if "wrote" not in o]
    assert refused and all("at most" in o for o in refused)
    assert (tmp_path / "ws" / "log.txt").stat().st_size <= MAX_FILE_BYTES


def test_workspace_quota_holds_under_concurrent_writers(tmp_path):
    import threading

    ws = Workspace(tmp_path / "ws", quota_bytes=5_000_000)
    tools = {t.name: t for t in file_tools(ws)}
    chunk = "z" * 400_000
    results: list[str] = []

    def writer(n: int) -> None:
        for k in range(8):
            results.append(tools["write_file"].invoke({"path": f"w{n}/f{k}.txt", "content": chunk, "append": k % 2}))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = sum(p.stat().st_size for p in (tmp_path / "ws").rglob("*") if p.is_file())
    assert used <= 5_000_000
    assert any("quota" in _one_line_error(r) for r in results if "wrote" not in r)
    # Overwriting a file counts its new size, not old + new: rewriting in place still works at the quota.
    first = next(p for p in (tmp_path / "ws").rglob("*.txt"))
    rel = first.relative_to(tmp_path / "ws").as_posix()
    assert "wrote" in tools["write_file"].invoke({"path": rel, "content": "small"})


def test_deep_and_wide_trees_are_bounded_not_crashing(tmp_path):
    """A folder chain deeper than the limits (made outside the tools) is a one-line error, not a crash."""
    from graphcraft.tools.files import MAX_DEPTH

    ws = tmp_path / "ws"
    ws.mkdir()
    fd = os.open(ws, os.O_RDONLY)
    for _ in range(MAX_DEPTH + 20):  # deeper than the walk, the listing and the measurement allow
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    tools = _tools(ws)
    deep = "/".join(["d"] * (MAX_DEPTH + 10)) + "/x.txt"
    assert "deep" in _one_line_error(tools["read_file"].invoke({"path": deep}))
    listing = tools["list_files"].invoke({"path": ".", "recursive": True}).splitlines()
    assert 0 < len(listing) <= MAX_DEPTH + 1
    assert "deep" in _one_line_error(tools["write_file"].invoke({"path": "top.txt", "content": "x"}))
