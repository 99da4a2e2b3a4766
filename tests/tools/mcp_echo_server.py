"""A tiny stdio MCP server for tests: `echo` returns its text reversed and tagged, so a test can
tell the server really ran (the model never sees this output in advance)."""

from mcp.server.fastmcp import FastMCP

server = FastMCP("echo", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back, reversed, with a marker."""
    return f"echo:{text[::-1]}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    server.run("stdio")
