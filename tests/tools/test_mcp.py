import json
import sys
from pathlib import Path

import pytest

from graphcraft.tools.mcp import MCPConfigError, load_mcp_config, load_mcp_tools

SERVER = Path(__file__).with_name("mcp_echo_server.py")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp") / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"echo": {"command": sys.executable, "args": [str(SERVER)]}}}))
    return path


def test_config_layouts(tmp_path):
    yaml_file = tmp_path / "servers.yaml"
    yaml_file.write_text(
        "servers:\n  local:\n    command: python\n    args: [server.py]\n    cwd: sub\n"
        "  remote:\n    url: http://localhost:9/mcp\n"
    )
    conf = load_mcp_config(yaml_file)
    assert conf["local"]["transport"] == "stdio" and conf["local"]["cwd"] == str((tmp_path / "sub").resolve())
    assert conf["remote"]["transport"] == "streamable_http"
    assert load_mcp_config({"x": {"url": "http://h/sse", "transport": "sse"}})["x"]["transport"] == "sse"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot parse"),
        ("[]", "must be a mapping"),
        ("{}", "no servers"),
        ('{"a": {"x": 1}}', "needs 'command'"),
    ],
)
def test_bad_configs(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(MCPConfigError, match=message):
        load_mcp_config(path)


def test_missing_file():
    with pytest.raises(MCPConfigError, match="not found"):
        load_mcp_config("/nonexistent/mcp.json")


def test_loads_and_calls_stdio_server_tools(config_file):
    tools = {t.name: t for t in load_mcp_tools(config_file)}
    assert set(tools) == {"echo", "add"}
    out = tools["echo"].invoke({"text": "graphcraft"})
    text = out if isinstance(out, str) else " ".join(block["text"] for block in out)
    assert text == "echo:tfarchparg"


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(MCPConfigError, match="cannot load tools"):
        load_mcp_tools({"broken": {"command": sys.executable, "args": [str(tmp_path / "missing.py")]}})
