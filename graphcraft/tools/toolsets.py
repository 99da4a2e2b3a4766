"""The tools an agent graph runs with: the ones its build names, or the default kit in a workspace.

A graph's tools are resolved inside a node on first use, not at build time, so importing a
graph module creates no workspace and starts no MCP server; they are resolved once per run
context (a build, or a build with one set of per-run overrides) and reused by its later runs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from weakref import WeakKeyDictionary

from langchain_core.tools import BaseTool

from graphcraft.config import Settings
from graphcraft.runtime.context import Context
from graphcraft.tools import default_tools

_resolved: WeakKeyDictionary[Context, list[BaseTool]] = WeakKeyDictionary()
_lock = threading.Lock()  # parallel plan steps ask for the tools at the same time


def default_toolset(
    settings: Settings, workspace: str | Path | None = None, enable_python: bool = False
) -> list[BaseTool]:
    """calculator and the file tools confined to `workspace` (default: <store>/workspace), python if enabled."""
    root = Path(workspace) if workspace is not None else Path(settings.store) / "workspace"
    return default_tools(workspace=root, enable_python=enable_python)


def toolset(ctx: Context) -> list[BaseTool]:
    """A run's tools, from its options: "tools", else the default kit ("workspace",
    "enable_python"); plus the tools of the MCP servers in "mcp_config", when given."""
    with _lock:
        if ctx not in _resolved:
            _resolved[ctx] = _resolve(ctx)
        return _resolved[ctx]


def _resolve(ctx: Context) -> list[BaseTool]:
    tools = ctx.option("tools")
    chosen = (
        list(tools)
        if tools is not None
        else default_toolset(ctx.settings, ctx.option("workspace"), bool(ctx.option("enable_python", False)))
    )
    if ctx.option("mcp_config") is not None:
        from graphcraft.tools.mcp import load_mcp_tools

        chosen += load_mcp_tools(ctx.option("mcp_config"))
    return chosen
