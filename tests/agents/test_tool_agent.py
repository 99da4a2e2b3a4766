import sys
from pathlib import Path

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from graphcraft.graphs import tool_agent
from graphcraft.graphs.tool_agent import build
from graphcraft.memory import make_store, sqlite_checkpointer
from graphcraft.memory.checkpoints import thread_config
from graphcraft.runtime.context import Context
from graphcraft.runtime.result import TRACE_KEYS
from graphcraft.testing import ScriptedChatModel, final_state, tool_call
from graphcraft.tools import calculator_tool
from tests.agents.conftest import ANY, script
from tests.fakes import prompt_texts, scripted

ECHO_SERVER = Path(__file__).parents[1] / "tools" / "mcp_echo_server.py"


def test_uses_tools_and_answers(workspace):
    model = ScriptedChatModel(
        script=[
            tool_call("calculator", expression="17 * 23"),
            tool_call("write_file", path="result.txt", content="391"),
            "17 * 23 = 391, saved to result.txt",
        ]
    )
    out = build(model, workspace=workspace).invoke({"question": "Compute 17*23 and save it"})
    t = out["trace"]
    assert t["action"] == "answered" and t["stop_reason"] is None
    assert t["tool_call_count"] == 2 and t["llm_calls"] == 3
    assert set(out) == {"question", "answer", "sources", "trace"} and set(TRACE_KEYS) <= set(t)
    assert [c["tool"] for c in t["tool_calls"]] == ["calculator", "write_file"]
    assert [s["step"] for s in t["steps"]] == ["agent", "tools", "agent", "tools", "agent", "respond"]
    assert t["tool_calls"][0]["output"] == "391"  # the real calculator ran
    assert (workspace / "result.txt").read_text() == "391"
    # the model saw the observation before answering
    assert any(isinstance(m, ToolMessage) and m.content == "391" for m in model.calls[1].messages)


def test_tool_that_always_fails_stops_at_tool_budget(workspace):
    @tool
    def flaky(query: str) -> str:
        """A tool that always fails."""
        raise RuntimeError("service unavailable")

    counter = {"n": 0}

    def next_call(call):
        counter["n"] += 1
        return tool_call("flaky", query=f"attempt {counter['n']}")  # different args each time: no loop

    model = script([(ANY, next_call)])
    out = build(model, tools=[flaky], max_tool_calls=4, max_turns=20).invoke({"question": "use flaky"})
    t = out["trace"]
    assert t["action"] == "stopped" and t["stop_reason"] == "max_tool_calls"
    assert t["tool_call_count"] == 4 and t["failed_tool_calls"] == 4
    assert all("service unavailable" in c["output"] for c in t["tool_calls"])
    assert "Stopped before finishing (max_tool_calls)" in out["answer"]


def test_model_looping_on_the_same_call_is_stopped(workspace):
    model = ScriptedChatModel(script=[tool_call("list_files", path=".")], repeat_last=True)
    out = build(model, workspace=workspace, loop_limit=2, max_tool_calls=50).invoke({"question": "loop"})
    t = out["trace"]
    assert t["action"] == "stopped" and t["stop_reason"] == "repeated_tool_call"
    assert t["tool_call_count"] == 2 and model.call_count == 3  # third identical request refused
    # the open call was closed with an error message so the thread stays valid
    assert out["answer"].startswith("Stopped before finishing (repeated_tool_call)")


def test_turn_bound(workspace):
    calls = iter(range(1000))
    model = script([(ANY, lambda c: tool_call("calculator", expression=f"{next(calls)} + 1"))])
    out = build(model, workspace=workspace, max_turns=3, max_tool_calls=100).invoke({"question": "count"})
    assert out["trace"]["stop_reason"] == "max_turns" and out["trace"]["iterations"] == 3
    assert out["trace"]["action"] == "stopped" and out["trace"]["max_turns"] == 3


def test_unknown_tool_is_an_observation_not_a_crash(workspace):
    model = ScriptedChatModel(script=[tool_call("teleport", to="mars"), "I cannot teleport."])
    out = build(model, workspace=workspace).invoke({"question": "go"})
    assert (
        out["trace"]["tool_calls"][0]["ok"] is False
        and "unknown tool 'teleport'" in out["trace"]["tool_calls"][0]["output"]
    )
    assert out["answer"] == "I cannot teleport."


def test_model_without_tool_calling_acts_through_json_actions(workspace):
    model = scripted(
        {"tool": "calculator", "args": {"expression": "12 * 7"}},  # no bind_tools: JSON actions
        "not an action",
        {"tool": "final_answer", "answer": "12 * 7 = 84"},
    )
    out = build(model, workspace=workspace).invoke({"question": "What is 12 times 7?"})
    t = out["trace"]
    assert t["action"] == "answered" and t["stop_reason"] is None and out["answer"] == "12 * 7 = 84"
    assert [(c["tool"], c["output"]) for c in t["tool_calls"]] == [("calculator", "84")]  # the real calculator ran
    assert t["structured_outputs"] == {"calls": 2, "repairs": 1, "fallbacks": 0} and t["llm_calls"] == 3
    second = prompt_texts(model)[1]
    assert '{"tool": "calculator", "args": {"expression": "12 * 7"}}' in second and "Result of calculator: 84" in second
    assert "- calculator(expression)" in second  # the tools are described in the prompt


def test_model_without_tool_calling_that_never_acts_properly_gives_no_answer(workspace):
    model = scripted("I will just chat")
    out = build(model, workspace=workspace).invoke({"question": "hi"})
    t = out["trace"]
    assert t["action"] == "no_answer" and t["stop_reason"] is None
    assert out["answer"].startswith("Stopped before finishing (no_answer)")
    assert t["structured_outputs"]["fallbacks"] == 1 and t["tool_call_count"] == 0


def test_sandbox_escape_through_the_agent_is_refused(workspace, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    model = ScriptedChatModel(
        script=[
            tool_call("read_file", path="../secret.txt"),
            tool_call("python", code=f"open({str(tmp_path / 'x')!r}, 'w').write('ESCAPED')"),
            "done",
        ]
    )
    out = build(model, workspace=workspace, enable_python=True).invoke({"question": "steal"})
    outputs = [c["output"] for c in out["trace"]["tool_calls"]]
    assert not any(c["ok"] for c in out["trace"]["tool_calls"])
    assert "leaves the workspace" in outputs[0] and "TOP SECRET" not in outputs[0]
    assert not (tmp_path / "x").exists()


def test_agent_calls_mcp_echo_tool(workspace, tmp_path):
    config = {"mcpServers": {"echo": {"command": sys.executable, "args": [str(ECHO_SERVER)]}}}
    model = ScriptedChatModel(script=[tool_call("echo", text="graphcraft"), "The server said tfarchparg."])
    out = build(model, workspace=workspace, mcp_config=config).invoke({"question": "echo graphcraft"})
    call = out["trace"]["tool_calls"][0]
    assert call["tool"] == "echo" and call["ok"] and call["output"] == "echo:tfarchparg"
    assert "echo" in model.calls[0].tools  # the MCP tool was offered to the model


def test_conversation_resumes_from_sqlite_checkpoint(workspace, tmp_path):
    db = tmp_path / "threads.sqlite"
    first = ScriptedChatModel(script=["Nice to meet you, Ada."])
    build(first, workspace=workspace, checkpointer=sqlite_checkpointer(db)).invoke(
        {"question": "My name is Ada."}, thread_config("t1")
    )
    # a new process would build a new graph and saver on the same file
    second = ScriptedChatModel(script=["Your name is Ada."])
    out = build(second, workspace=workspace, checkpointer=sqlite_checkpointer(db)).invoke(
        {"question": "What is my name?"}, thread_config("t1")
    )
    seen = second.calls[0].text
    assert "My name is Ada." in seen and "Nice to meet you, Ada." in seen
    assert out["answer"] == "Your name is Ada."
    other = ScriptedChatModel(script=["I don't know."])
    build(other, workspace=workspace, checkpointer=sqlite_checkpointer(db)).invoke(
        {"question": "What is my name?"}, thread_config("t2")
    )
    assert "My name is Ada." not in other.calls[0].text


def test_long_conversation_is_summarised_and_trimmed(workspace):
    from langgraph.checkpoint.memory import InMemorySaver

    summaries = []

    def respond(call):
        if "running summary" in call.text:
            summaries.append(call.last)
            return "Summary: user asked about topics 0..n; assistant answered each."
        return "ok " + "word " * 40

    model = ScriptedChatModel(script=respond)
    agent = build(model, workspace=workspace, context_tokens=400, checkpointer=InMemorySaver())
    cfg = thread_config("long")
    for i in range(8):
        out = agent.invoke({"question": f"Tell me about topic {i} " + "detail " * 30}, cfg)
    state = agent.get_state(cfg).values
    assert summaries, "older turns were never summarised"
    assert state["summary"].startswith("Summary:")
    assert "topic 0" not in " ".join(str(m.content) for m in state["messages"])  # folded into the summary
    last_prompt = model.calls[-1]
    assert any("Summary of the earlier conversation" in str(m.content) for m in last_prompt.messages)
    assert out["trace"]["action"] == "answered" and out["trace"]["stop_reason"] is None


def test_long_term_memory_written_and_recalled_across_threads(workspace, embeddings):
    store = make_store(embeddings)

    def respond(call):
        if call.schema == "Facts":
            return {"facts": ["The user's favourite language is Rust."]}
        return "Noted: you like Rust."

    model = ScriptedChatModel(script=respond)
    agent = build(model, workspace=workspace, memory_store=store, remember_facts=True)
    out = agent.invoke({"question": "I love programming in Rust."}, {"configurable": {"user_id": "ada"}})
    assert out["trace"]["episode_saved"] and out["trace"]["facts_saved"] == 1
    assert (
        out["trace"]["llm_calls"] == 2 and out["trace"]["structured_outputs"]["calls"] == 1
    )  # the fact extraction counts

    later = ScriptedChatModel(script=["You like Rust."])
    out = build(later, workspace=workspace, memory_store=store).invoke(
        {"question": "Which programming language do I like?"}, {"configurable": {"user_id": "ada"}}
    )
    assert out["trace"]["memories_recalled"] >= 1
    assert "favourite language is Rust" in later.calls[0].messages[0].content  # recalled into the system prompt
    stranger = ScriptedChatModel(script=["No idea."])
    out = build(stranger, workspace=workspace, memory_store=store).invoke(
        {"question": "Which programming language do I like?"}, {"configurable": {"user_id": "bob"}}
    )
    assert out["trace"]["memories_recalled"] == 0


def test_token_budget(workspace):
    model = ScriptedChatModel(
        script=[tool_call("calculator", expression="1+1")] * 2 + [tool_call("calculator", expression="2+2")] * 50
    )
    out = build(model, workspace=workspace, token_budget=120, max_tool_calls=100, loop_limit=100).invoke(
        {"question": "x " * 50}
    )
    assert out["trace"]["action"] == "stopped" and out["trace"]["stop_reason"] == "token_budget"


def adds_one_until_three_results(call):
    """Calls the calculator with new arguments until it has three results, then answers."""
    seen = sum(1 for m in call.messages if isinstance(m, ToolMessage))
    return tool_call("calculator", expression=f"{seen} + 1") if seen < 3 else "three results"


def test_per_run_configuration_reaches_every_node(workspace):
    model = ScriptedChatModel(script=adds_one_until_three_results)
    agent = build(model, workspace=workspace)
    full = agent.invoke({"question": "count"})
    assert full["trace"]["action"] == "answered" and full["trace"]["tool_call_count"] == 3
    assert full["trace"]["llm_calls"] == 4

    one_call = agent.invoke({"question": "count"}, config={"configurable": {"max_tool_calls": 1}})
    assert one_call["trace"]["stop_reason"] == "max_tool_calls" and one_call["trace"]["tool_call_count"] == 1
    assert one_call["trace"]["max_tool_calls"] == 1 and one_call["trace"]["llm_calls"] == 2

    one_llm_call = final_state(agent, {"question": "count"}, {"configurable": {"max_llm_calls": 1}})
    assert one_llm_call["stop_reason"] == "max_llm_calls" and one_llm_call["turns"] == 1
    assert one_llm_call["tool_calls"] == [] and one_llm_call["trace"]["llm_calls"] == 1

    prompt = "You answer in French."
    agent.invoke({"question": "count"}, config={"configurable": {"system_prompt": prompt}})
    assert model.calls[-1].messages[0].content == prompt
    again = agent.invoke({"question": "count"})  # the overrides were for their runs only
    assert again["trace"]["tool_call_count"] == 3 and model.calls[-1].messages[0].content != prompt


def test_tools_node_runs_on_its_own():
    compiled = build(tools=[calculator_tool()])
    call = {"name": "calculator", "args": {"expression": "6 * 7"}, "id": "c1"}
    state = {"question": "q", "messages": [AIMessage("", tool_calls=[call])], "tool_calls": [], "steps": []}
    update = tool_agent.run_tools(state, compiled.config)
    assert [m.content for m in update["messages"]] == ["42"] and update["tool_calls"][0]["ok"]
    assert update["steps"] == [{"step": "tools", "calls": [{"tool": "calculator", "ok": True}]}]
    # the bounds of the loop, checked before the call runs
    ctx = Context(options={"max_tool_calls": 1, "max_turns": 5, "loop_limit": 1})
    assert tool_agent.stop_reason(state, ctx, [call]) is None
    assert tool_agent.stop_reason({**state, **update}, ctx, [call]) == "repeated_tool_call"
    assert tool_agent.stop_reason({**state, **update}, ctx, [{**call, "args": {"expression": "1"}}]) == "max_tool_calls"
    assert tool_agent.stop_reason({**state, "turns": 5}, ctx) == "max_turns"
