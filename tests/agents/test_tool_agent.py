import sys
from pathlib import Path

from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from graphcraft.graphs.tool_agent import build
from graphcraft.memory import make_store, sqlite_checkpointer
from graphcraft.memory.checkpoints import thread_config
from graphcraft.testing import ScriptedChatModel, tool_call
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
    assert t["stop_reason"] == "answered" and t["tool_call_count"] == 2 and t["llm_calls"] == 3
    assert [c["tool"] for c in t["tool_calls"]] == ["calculator", "write_file"]
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
    assert t["stop_reason"] == "max_tool_calls"
    assert t["tool_call_count"] == 4 and t["failed_tool_calls"] == 4
    assert all("service unavailable" in c["output"] for c in t["tool_calls"])
    assert "Stopped before finishing (max_tool_calls)" in out["answer"]


def test_model_looping_on_the_same_call_is_stopped(workspace):
    model = ScriptedChatModel(script=[tool_call("list_files", path=".")], repeat_last=True)
    out = build(model, workspace=workspace, loop_limit=2, max_tool_calls=50).invoke({"question": "loop"})
    t = out["trace"]
    assert t["stop_reason"] == "repeated_tool_call"
    assert t["tool_call_count"] == 2 and model.call_count == 3  # third identical request refused
    # the open call was closed with an error message so the thread stays valid
    assert out["answer"].startswith("Stopped before finishing (repeated_tool_call)")


def test_turn_bound(workspace):
    calls = iter(range(1000))
    model = script([(ANY, lambda c: tool_call("calculator", expression=f"{next(calls)} + 1"))])
    out = build(model, workspace=workspace, max_turns=3, max_tool_calls=100).invoke({"question": "count"})
    assert out["trace"]["stop_reason"] == "max_iterations" and out["trace"]["iterations"] == 3


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
    assert t["stop_reason"] == "answered" and out["answer"] == "12 * 7 = 84"
    assert [(c["tool"], c["output"]) for c in t["tool_calls"]] == [("calculator", "84")]  # the real calculator ran
    assert t["structured_outputs"] == {"calls": 2, "repairs": 1, "fallbacks": 0} and t["llm_calls"] == 3
    second = prompt_texts(model)[1]
    assert '{"tool": "calculator", "args": {"expression": "12 * 7"}}' in second and "Result of calculator: 84" in second
    assert "- calculator(expression)" in second  # the tools are described in the prompt


def test_model_without_tool_calling_that_never_acts_properly_gives_no_answer(workspace):
    model = scripted("I will just chat")
    out = build(model, workspace=workspace).invoke({"question": "hi"})
    t = out["trace"]
    assert t["stop_reason"] == "no_answer" and out["answer"].startswith("Stopped before finishing (no_answer)")
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
    assert out["trace"]["stop_reason"] == "answered"


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
    assert out["trace"]["stop_reason"] == "token_budget"
