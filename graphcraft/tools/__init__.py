"""LangChain tools for graphcraft agents.

`default_tools(workspace=...)` is the standard kit: calculator, read_file, write_file,
list_files, and python when enabled explicitly. Retrieval, graph-query, web-search and MCP
tools are added by their own factories (graphcraft.tools.retrieval, graphcraft.tools.mcp).
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.tools import BaseTool

from graphcraft.tools.calculator import calculator_tool
from graphcraft.tools.files import Workspace, file_tools

__all__ = ["default_tools", "calculator_tool", "file_tools", "Workspace"]


def default_tools(
    workspace: str | Path = "workspace",
    enable_python: bool = False,
    *,
    python_timeout_s: float = 10.0,
    python_memory_mb: int = 512,
) -> list[BaseTool]:
    """calculator, read_file, write_file, list_files (confined to `workspace`), and `python` if enabled."""
    tools: list[BaseTool] = [calculator_tool(), *file_tools(Workspace(workspace))]
    if enable_python:
        from graphcraft.tools.python_sandbox import PythonSandbox, python_tool

        tools.append(python_tool(PythonSandbox(timeout_s=python_timeout_s, memory_mb=python_memory_mb)))
    return tools
