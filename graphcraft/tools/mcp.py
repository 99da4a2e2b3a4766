"""Tools from MCP servers (Model Context Protocol) through langchain-mcp-adapters.

Servers are described in a JSON or YAML file, either in the common `mcpServers` layout used by
desktop clients or as a plain mapping of server name to connection::

    {"mcpServers": {"echo": {"command": "python", "args": ["echo_server.py"]}}}
    servers:            # YAML, same meaning
      weather: {transport: http, url: "http://localhost:8000/mcp"}

A server with `command` is stdio; one with `url` is streamable HTTP unless `transport` says
otherwise. MCP tools are async; the loaded tools also get a sync entry point so they work in
graphs that are invoked synchronously (each call opens its own short session).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from langchain_core.tools import BaseTool, StructuredTool

from graphcraft.errors import GraphcraftError

T = TypeVar("T")


class MCPConfigError(GraphcraftError):
    """The MCP configuration file is missing, unreadable or describes no valid server."""


def load_mcp_config(source: str | Path | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Server name -> langchain-mcp-adapters connection dict, from a file path or a mapping."""
    if isinstance(source, dict):
        raw: Any = source
        base = Path.cwd()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise MCPConfigError(f"MCP config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text)
            else:
                raw = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - any parse error becomes one clear message
            raise MCPConfigError(f"cannot parse MCP config {path}: {exc}") from None
        base = path.parent
    if not isinstance(raw, dict):
        raise MCPConfigError("MCP config must be a mapping of server name to connection")
    servers = raw.get("mcpServers", raw.get("servers", raw))
    if not isinstance(servers, dict) or not servers:
        raise MCPConfigError("MCP config lists no servers")
    return {name: _connection(name, spec, base) for name, spec in servers.items()}


def _connection(name: str, spec: Any, base: Path) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise MCPConfigError(f"MCP server {name!r}: expected a mapping, got {type(spec).__name__}")
    conn = dict(spec)
    if "command" in conn:
        conn.setdefault("transport", "stdio")
        conn["args"] = [str(a) for a in conn.get("args", [])]
        if conn.get("cwd"):
            conn["cwd"] = str((base / str(conn["cwd"])).resolve())
    elif "url" in conn:
        conn.setdefault("transport", "streamable_http")
    else:
        raise MCPConfigError(f"MCP server {name!r}: needs 'command' (stdio) or 'url' (http/sse)")
    return conn


async def aload_mcp_tools(source: str | Path | dict[str, Any], *, prefix_server_name: bool = False) -> list[BaseTool]:
    """Connect to every configured server and return its tools (sync-callable as well)."""
    from langchain_mcp_adapters.client import MultiServerMCPClient
    from langchain_mcp_adapters.sessions import Connection

    # load_mcp_config checked each entry's shape (command -> stdio, url -> http/sse).
    connections = cast(dict[str, Connection], load_mcp_config(source))
    client = MultiServerMCPClient(connections, tool_name_prefix=prefix_server_name)
    try:
        tools = await client.get_tools()
    except Exception as exc:  # noqa: BLE001 - transport errors come wrapped in exception groups
        raise MCPConfigError(f"cannot load tools from MCP servers: {_root_cause(exc)}") from exc
    return [with_sync_entry(tool) for tool in tools]


def load_mcp_tools(source: str | Path | dict[str, Any], *, prefix_server_name: bool = False) -> list[BaseTool]:
    """Synchronous `aload_mcp_tools`; safe to call from inside a running event loop (e.g. Jupyter)."""
    return run_sync(aload_mcp_tools(source, prefix_server_name=prefix_server_name))


def with_sync_entry(tool: BaseTool) -> BaseTool:
    """Give an async-only StructuredTool a `func` that runs its coroutine to completion."""
    if not isinstance(tool, StructuredTool) or tool.func is not None or tool.coroutine is None:
        return tool
    coroutine = tool.coroutine

    def call(**kwargs: Any) -> Any:
        # A StructuredTool's coroutine is an async function, so calling it gives a coroutine.
        return run_sync(cast(Coroutine[Any, Any, Any], coroutine(**kwargs)))

    return tool.model_copy(update={"func": call})


def run_sync(awaitable: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, in a worker thread when a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(awaitable)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, awaitable).result()


def _root_cause(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
