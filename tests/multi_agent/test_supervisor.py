"""The supervisor graph: scripted handoffs over a real ingested store, bounds, repair and fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphcraft.errors import NoChatModelError
from graphcraft.graphs import supervisor
from graphcraft.testing import ScriptedChatModel, final_state, tool_call

CORPUS = {
    "harbour.md": (
        "# Maren harbour\n\nThe Maren harbour handled 1,250 ships in 2023. Each ship paid a berth fee of 480 euros.\n"
    ),
    "bakery.txt": "Marten's Bakery on Canal Street sells rye bread and cinnamon rolls. It is closed on Sundays.\n",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from graphcraft.api import ingest

    root = tmp_path_factory.mktemp("team")
    (root / "corpus").mkdir()
    for name, text in CORPUS.items():
        (root / "corpus" / name).write_text(text, encoding="utf-8")
    ingest([root / "corpus"], store=root / "store")
    return root / "store"


def route(next_: str, task: str = "", reason: str = "") -> dict:
    return {"next": next_, "task": task, "reason": reason}


def test_scripted_handoffs_research_analyse_write(store: Path) -> None:
    boss = ScriptedChatModel(
        script=[
            route("researcher", "find the 2023 ship count and the berth fee", "facts first"),
            route("analyst", "multiply 1250 by 480", "numbers"),
            route("writer", "write the answer", "ready"),
            route("FINISH", reason="written"),
        ]
    )
    researcher = ScriptedChatModel(
        script=[
            tool_call("search_documents", query="harbour ships 2023 berth fee"),
            "1,250 ships in 2023, fee 480 euros each [harbour.md]",
        ]
    )
    analyst = ScriptedChatModel(script=[tool_call("calculator", expression="1250 * 480"), "1250 * 480 = 600000"])
    writer = ScriptedChatModel(script=["The harbour earned 600,000 euros in berth fees in 2023 [harbour.md]."])
    graph = supervisor.build(boss, agents={"researcher": researcher, "analyst": analyst, "writer": writer}, store=store)
    out = final_state(graph, {"question": "How much did the harbour earn from berth fees in 2023?"})
    trace = out["trace"]

    assert out["answer"].startswith("The harbour earned 600,000") and trace["answered_by"] == "writer"
    assert trace["action"] == "answered" and trace["stop_reason"] is None and trace["handoffs"] == 3
    assert trace["iterations"] == 3 and len(trace["steps"]) == 7  # 4 supervisor turns, 3 members' work
    workers = [
        (s["actor"], [c["tool"] for c in s.get("tool_calls", [])]) for s in trace["steps"] if s["action"] == "work"
    ]
    assert workers == [("researcher", ["search_documents"]), ("analyst", ["calculator"]), ("writer", [])]
    assert trace["who_did_what"][0] == "supervisor -> researcher: find the 2023 ship count and the berth fee"
    # provenance from the real retriever, the harbour document first
    assert out["sources"] and out["sources"][0]["source"].endswith("harbour.md") and out["sources"][0]["chunk_id"]
    # the calculator really ran
    analyst_entry = out["scratchpads"]["analyst"][0]
    assert analyst_entry["tool_calls"][0]["output"].strip().startswith("600000")
    # each member used its own model; the supervisor made one call per decision
    assert (boss.call_count, researcher.call_count, analyst.call_count, writer.call_count) == (4, 2, 2, 1)
    assert {k: v["llm_calls"] for k, v in trace["agents"].items()} == {
        "supervisor": 4,
        "researcher": 2,
        "analyst": 2,
        "writer": 1,
    }
    assert trace["llm_calls"] == 9
    # shared history reaches the writer; the researcher's raw search results stay in its scratchpad
    writer_prompt = writer.calls[0].text
    assert "1,250 ships in 2023, fee 480 euros each" in writer_prompt and "1250 * 480 = 600000" in writer_prompt
    assert "Each ship paid a berth fee" not in writer_prompt
    assert "Each ship paid a berth fee" in researcher.calls[1].text


def test_endless_handoffs_stop_at_the_bound() -> None:
    boss = ScriptedChatModel(script=lambda call: route("researcher", "look again"))
    researcher = ScriptedChatModel(script=lambda call: "nothing new")
    out = supervisor.build(
        boss, agents=[{"name": "researcher", "model": researcher}], max_handoffs=3, max_llm_calls=100
    ).invoke({"question": "Loop forever?"})
    trace = out["trace"]
    assert trace["stop_reason"] == "max_handoffs" and trace["handoffs"] == 3 and trace["action"] == "stopped"
    assert boss.call_count == 3 and researcher.call_count == 3
    assert trace["who_did_what"][-1] == "supervisor stopped: max_handoffs"
    assert trace["answered_by"] == "researcher" and out["answer"] == "nothing new"


def test_token_budget_stops_the_team() -> None:
    boss = ScriptedChatModel(script=lambda call: route("writer", "write " * 50))
    writer = ScriptedChatModel(script=lambda call: "draft " * 200)
    out = supervisor.build(boss, agents={"writer": writer}, token_budget=300, max_handoffs=50).invoke(
        {"question": "Write."}
    )
    trace = out["trace"]
    assert trace["stop_reason"] == "token_budget" and trace["handoffs"] < 50
    assert trace["prompt_tokens"] + trace["completion_tokens"] >= 300


def test_call_budget_from_settings_stops_the_team() -> None:
    boss = ScriptedChatModel(script=lambda call: route("writer", "again"))
    writer = ScriptedChatModel(script=lambda call: "draft")
    out = supervisor.build(boss, agents={"writer": writer}, max_llm_calls=5).invoke({"question": "Write."})
    # decide + write, decide + write, decide: the writer's third turn comes after the budget is spent
    assert out["trace"]["stop_reason"] == "max_llm_calls" and out["trace"]["llm_calls"] == 5
    assert (boss.call_count, writer.call_count) == (3, 2)
    assert out["trace"]["who_did_what"][-2:] == ["writer skipped: max_llm_calls", "supervisor stopped: max_llm_calls"]


def test_malformed_route_is_repaired_and_names_are_normalised() -> None:
    boss = ScriptedChatModel(script=[route("the writer please"), route("Writer.", "write it"), route("finish")])
    writer = ScriptedChatModel(script=["Done."])
    out = supervisor.build(boss, agents={"writer": writer}).invoke({"question": "Say done."})
    first = out["trace"]["steps"][0]
    assert first["to"] == "writer" and first["structured_output"]["attempts"] == 2
    assert "must be one of" in boss.calls[1].text or "not valid" in boss.calls[1].text
    assert out["trace"]["action"] == "answered" and out["trace"]["stop_reason"] is None and out["answer"] == "Done."


def test_unusable_router_falls_back_to_the_next_idle_member_recorded() -> None:
    boss = ScriptedChatModel(script=lambda call: "I cannot decide")
    members = {
        name: ScriptedChatModel(script=lambda call, n=name: f"{n} report")
        for name in ("researcher", "analyst", "writer")
    }
    out = supervisor.build(boss, agents=members, max_llm_calls=100).invoke({"question": "Anything?"})
    trace = out["trace"]
    handoffs = [s for s in trace["steps"] if s["actor"] == "supervisor"]
    assert [s["to"] for s in handoffs] == ["researcher", "analyst", "writer", "FINISH"]
    assert all(s["structured_output"]["fallback"] for s in handoffs)
    assert out["answer"] == "writer report" and trace["action"] == "answered" and trace["stop_reason"] is None


def test_scratchpad_carries_a_members_own_earlier_work() -> None:
    boss = ScriptedChatModel(script=[route("analyst", "compute 6*7"), route("analyst", "now add 8"), route("FINISH")])
    analyst = ScriptedChatModel(
        script=[tool_call("calculator", expression="6*7"), "42", tool_call("calculator", expression="42+8"), "50"]
    )
    out = final_state(supervisor.build(boss, agents={"analyst": analyst}), {"question": "6*7+8?"})
    second_assignment = analyst.calls[2].text
    assert "Your scratchpad" in second_assignment and "calculator({'expression': '6*7'}) -> 42" in second_assignment
    assert [e["task"] for e in out["scratchpads"]["analyst"]] == ["compute 6*7", "now add 8"]
    assert out["answer"] == "50" and out["trace"]["answered_by"] == "analyst"


def test_custom_member_with_its_own_tools() -> None:
    from graphcraft.tools.calculator import calculator_tool

    boss = ScriptedChatModel(script=[route("auditor", "check 2+2"), route("FINISH")])
    auditor_model = ScriptedChatModel(script=[tool_call("calculator", expression="2+2"), "verified: 4"])
    auditor = supervisor.TeamMember(
        "auditor", "double-checks numbers", "You audit numbers.", [calculator_tool()], auditor_model
    )
    out = supervisor.build(boss, agents=[auditor, "writer"]).invoke({"question": "Is 2+2 4?"})
    assert "auditor: double-checks numbers" in boss.calls[0].text and "writer:" in boss.calls[0].text
    assert out["answer"] == "verified: 4"


def test_no_chat_model_is_reported_at_run_time() -> None:
    graph = supervisor.build()
    with pytest.raises(NoChatModelError, match="GRAPHCRAFT_CHAT_MODEL"):
        graph.invoke({"question": "Who?"})


def test_bad_team_is_rejected_at_build() -> None:
    with pytest.raises(ValueError):
        supervisor.build(agents=["researcher", "researcher"])
    with pytest.raises(ValueError):
        supervisor.build(agents=["novelist"])


def test_members_whose_model_has_no_tool_calling_report_without_tools() -> None:
    from tests.fakes import scripted

    boss = ScriptedChatModel(script=[route("researcher", "find the fee"), route("FINISH")])
    researcher = scripted("I could not search; the fee is unknown.")  # no bind_tools
    out = supervisor.build(
        boss, agents=[{"name": "researcher", "model": researcher, "tools": supervisor.default_team()[0].tools}]
    ).invoke({"question": "Fee?"})
    [work] = [s for s in out["trace"]["steps"] if s["actor"] == "researcher"]
    assert work["stop_reason"] == "no_tool_calling" and work["tool_calls"] == []
    assert out["answer"] == "I could not search; the fee is unknown." and researcher.calls == 1


def test_the_graph_returns_the_ask_shape() -> None:
    boss = ScriptedChatModel(script=[route("writer", "write"), route("FINISH")])
    out = supervisor.build(boss, agents={"writer": ScriptedChatModel(script=["Done."])}).invoke({"question": "Go."})
    assert set(out) == {"question", "answer", "sources", "trace"}


def test_per_run_call_budget_bounds_the_supervisor_and_its_members() -> None:
    boss = ScriptedChatModel(script=lambda call: route("researcher", "look again"))
    researcher = ScriptedChatModel(script=lambda call: "nothing new")
    graph = supervisor.build(boss, agents=[{"name": "researcher", "model": researcher}], max_handoffs=50)
    out = graph.invoke({"question": "Loop?"}, config={"configurable": {"max_llm_calls": 1}})
    trace = out["trace"]
    assert trace["stop_reason"] == "max_llm_calls" and trace["llm_calls"] == 1
    assert (boss.call_count, researcher.call_count) == (1, 0)  # the member did not start past the budget
    assert trace["bounds"]["max_llm_calls"] == 1  # the trace reports the run's budget, not the build's
    assert out["answer"].startswith("No answer: the team stopped (max_llm_calls)")


def test_per_run_team_options_change_what_the_run_does() -> None:
    def endless(call) -> dict:  # a new calculation every turn: never answers, never repeats itself
        return tool_call("calculator", expression=f"{call.index} + 1")

    def run(configurable: dict) -> tuple[dict, ScriptedChatModel]:
        boss = ScriptedChatModel(script=lambda call: route("analyst", "keep computing"))
        analyst = ScriptedChatModel(script=endless)
        graph = supervisor.build(boss, agents={"analyst": analyst}, max_handoffs=3, max_tool_calls=4)
        return graph.invoke({"question": "Compute."}, config={"configurable": configurable})["trace"], analyst

    trace, analyst = run({})
    assert trace["handoffs"] == 3 and analyst.call_count == 3 * 5  # 4 tool calls and a 5th turn per assignment
    trace, analyst = run({"max_handoffs": 1, "max_tool_calls": 1})
    assert trace["stop_reason"] == "max_handoffs" and trace["handoffs"] == 1
    [work] = [s for s in trace["steps"] if s["actor"] == "analyst"]
    assert len(work["tool_calls"]) == 1 and work["stop_reason"] == "max_tool_calls" and analyst.call_count == 2
    assert trace["bounds"]["max_handoffs"] == 1 and trace["bounds"]["max_tool_calls"] == 1


def test_the_researcher_searches_the_store_of_the_run(store: Path, tmp_path: Path) -> None:
    boss = ScriptedChatModel(script=[route("researcher", "find the berth fee"), route("FINISH")])
    researcher = ScriptedChatModel(script=[tool_call("search_documents", query="berth fee"), "480 euros [harbour.md]"])
    graph = supervisor.build(boss, agents={"researcher": researcher}, store=tmp_path / "empty")
    out = graph.invoke({"question": "Fee?"}, config={"configurable": {"store": str(store)}})
    assert out["sources"] and out["sources"][0]["source"].endswith("harbour.md")


def test_a_new_question_on_a_thread_starts_a_fresh_run() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    boss = ScriptedChatModel(script=lambda call: route("FINISH") if "[writer]" in call.text else route("writer", "go"))
    writer = ScriptedChatModel(script=lambda call: f"answer {call.index + 1}")
    graph = supervisor.build(boss, agents={"writer": writer}, max_handoffs=2, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"question": "One?"}, config=thread)
    second = graph.invoke({"question": "Two?"}, config=thread)
    assert (first["answer"], second["answer"]) == ("answer 1", "answer 2")
    assert second["trace"]["handoffs"] == 1 and second["trace"]["llm_calls"] == 3 and len(second["trace"]["steps"]) == 3
    assert "One?" not in boss.calls[-1].text and "answer 1" not in boss.calls[-1].text


def test_finish_node_on_its_own() -> None:
    from langchain_core.messages import AIMessage

    state = {
        "question": "Fee?",
        "messages": [AIMessage("@researcher: find it", name="supervisor"), AIMessage("480 euros", name="researcher")],
        "handoffs": 1,
        "stop_reason": "max_handoffs",
        "steps": [{"actor": "supervisor", "action": "stop", "reason": "max_handoffs"}],
        "found_sources": [{"source": "a.md", "chunk_id": "a#1"}, {"source": "a.md", "chunk_id": "a#1"}],
    }
    out = supervisor.finish(state, {})  # no bound context: the default team
    assert out["answer"] == "480 euros" and out["sources"] == [{"source": "a.md", "chunk_id": "a#1"}]
    trace = out["trace"]
    assert (trace["action"], trace["stop_reason"], trace["answered_by"]) == ("stopped", "max_handoffs", "researcher")
    assert trace["who_did_what"] == ["supervisor stopped: max_handoffs"] and trace["iterations"] == 1
