import pytest

from graphcraft.errors import NoChatModelError
from graphcraft.graphs import load_graph_module

AGENT_GRAPHS = ["reflection", "planning", "plan_execute", "tool_agent", "tree_of_thought", "self_consistency"]


@pytest.mark.parametrize("name", AGENT_GRAPHS)
def test_module_contract_and_clear_error_without_model(name, tmp_path):
    module = load_graph_module(name)
    assert isinstance(module.DESCRIPTION, str) and module.DESCRIPTION
    assert module.graph is not None  # compiled at import without a model
    compiled = module.build(
        settings=None, **({"workspace": tmp_path} if name in ("tool_agent", "plan_execute") else {})
    )
    with pytest.raises(NoChatModelError, match="GRAPHCRAFT_CHAT_MODEL"):
        compiled.invoke({"question": "anything"})
