"""The per-run Context: one place where a run's configurable becomes settings and options."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphcraft.config import get_settings
from graphcraft.errors import SettingsError
from graphcraft.runtime.context import CONTEXT_KEY, Context, bind_context, context


def test_a_run_overrides_settings_and_plain_options_converted_to_their_type() -> None:
    base = Context(get_settings(top_k=5), options={"max_tool_calls": 8, "strict": False, "mode": "auto"})
    run = base.for_config({"configurable": {"top_k": "2", "max_tool_calls": "3", "strict": "true", "mode": "local"}})
    assert run.settings.top_k == 2 and run.bounds.max_llm_calls == base.settings.max_llm_calls
    assert run.options == {"max_tool_calls": 3, "strict": True, "mode": "local"}
    assert base.settings.top_k == 5 and base.options["max_tool_calls"] == 8  # the bound context is unchanged
    assert base.for_config({"configurable": {"thread_id": "t", "unknown": 1}}) is base  # nothing to apply


@pytest.mark.parametrize(
    ("configurable", "message"),
    [({"top_k": "abc"}, "top_k"), ({"max_seconds": -1}, "max_seconds"), ({"max_tool_calls": "many"}, "max_tool_calls")],
)
def test_a_bad_per_run_value_is_a_one_line_error(configurable: dict, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Context(options={"max_tool_calls": 8}).for_config({"configurable": configurable})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_options_that_reach_the_host_or_hold_objects_cannot_be_changed_by_a_run(tmp_path: Path) -> None:
    """Any LangGraph Server client can send configurable: it must not move the file sandbox,
    switch python on, start MCP servers or swap the tools a graph was built with."""
    tools = [object()]
    built = {"workspace": str(tmp_path), "enable_python": False, "mcp_config": "", "tools": tools, "team": None}
    base = Context(options=built)
    attack = {"workspace": "/", "enable_python": True, "mcp_config": "servers.json", "tools": ["shell"], "team": "x"}
    run = base.for_config({"configurable": attack})
    assert run.options == built and run.options["tools"] is tools


def test_variants_are_cached_and_bounded() -> None:
    base = Context(options={"n": 1})
    first = base.for_config({"configurable": {"n": 2}})
    assert base.for_config({"configurable": {"n": 2}}) is first
    for n in range(3, 40):
        base.for_config({"configurable": {"n": n}})
    assert len(base.__dict__["_variants"]) <= 16


def test_each_graph_reads_its_own_bound_context_even_inside_a_parent() -> None:
    """LangGraph passes a parent's configurable to the subgraphs its nodes run: keys are per graph."""
    parent, child = Context(options={"who": "parent"}), Context(options={"who": "child"})
    config = {"configurable": {f"{CONTEXT_KEY}parent": parent, f"{CONTEXT_KEY}child": child, "who": "run"}}
    assert context(config, "child").options["who"] == "run" and context(config, "parent").options["who"] == "run"
    assert context({"configurable": config["configurable"] | {"who": None}}, "child") is child
    assert context(None, "lonely").options == {}  # a node called on its own gets a fresh context


def test_the_bound_context_stays_out_of_checkpoint_metadata(tmp_path: Path) -> None:
    """The context holds live objects (models, stores): it must never be written into a checkpoint."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graphcraft.graphs import crag

    saver = InMemorySaver()
    graph = crag.build(settings=get_settings(store=tmp_path / "none"), checkpointer=saver)
    assert any(k.startswith(CONTEXT_KEY) for k in graph.config["configurable"])
    with pytest.raises(Exception, match="empty|ingest"):
        graph.invoke({"question": "q"}, {"configurable": {"thread_id": "t"}})
    for checkpoint in saver.list({"configurable": {"thread_id": "t"}}):
        assert not any(str(k).startswith("__graphcraft") for k in checkpoint.metadata)
    assert bind_context(graph, "crag", Context()).config["configurable"][f"{CONTEXT_KEY}crag"] is not None


def test_a_list_option_takes_a_list_or_comma_separated_words() -> None:
    base = Context(options={"criteria": ("correctness", "clarity")})
    assert base.for_config({"configurable": {"criteria": "brevity, tone"}}).options["criteria"] == ("brevity", "tone")
    assert base.for_config({"configurable": {"criteria": ["a"]}}).options["criteria"] == ("a",)
    with pytest.raises(SettingsError):
        base.for_config({"configurable": {"criteria": {"a": 1}}})


def test_a_deployment_can_pin_what_runs_may_change(tmp_path: Path) -> None:
    """LangGraph Server clients send configurable: a deployment lists what they may tune, the rest is refused."""
    pinned = Context(get_settings(run_overrides="top_k, max_tool_calls"), options={"max_tool_calls": 8, "mode": "a"})
    run = pinned.for_config({"configurable": {"top_k": 2, "max_tool_calls": 1, "thread_id": "t"}})
    assert run.settings.top_k == 2 and run.options["max_tool_calls"] == 1
    for attempt in ({"store": str(tmp_path)}, {"chat_model": "openai:gpt-4o"}, {"base_url": "http://10.0.0.1"}):
        with pytest.raises(SettingsError, match="cannot be set per run here") as err:
            pinned.for_config({"configurable": attempt})
        assert "\n" not in str(err.value)
    with pytest.raises(SettingsError, match="mode"):
        pinned.for_config({"configurable": {"mode": "b"}})
    assert Context().for_config({"configurable": {"store": str(tmp_path)}}).settings.store == tmp_path  # default: all
