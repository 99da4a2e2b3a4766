"""The consensus graph driven by scripted agents, one fake chat model per agent."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from graphcraft.chains.negotiate import position_schema
from graphcraft.errors import NoChatModelError
from graphcraft.graphs import consensus
from graphcraft.testing import ScriptCall, ScriptedChatModel, final_state

from .scripted_agents import agent, pos, prompts


def run(agents: list, question: str = "Should we ship the release on Friday?", **options: Any) -> dict:
    return consensus.build(agents=agents, **options).invoke({"question": question})


def run_state(agents: list, question: str = "Should we ship the release on Friday?", **options: Any) -> dict:
    """The run's whole final state: its ballots, broker topics and subscriptions too."""
    return final_state(consensus.build(agents=agents, **options), {"question": question})


def test_immediate_agreement_stops_after_round_zero() -> None:
    team = [agent("a", pos("Yes")), agent("b", pos("yes.")), agent("c", pos("YES"))]
    out = run(team, rounds=3)
    trace = out["trace"]
    assert out["trace"]["decision"] == "yes"
    assert trace["action"] == "converged" and trace["stop_reason"] is None and trace["rounds_to_convergence"] == 0
    assert trace["agreement_curve"] == [1.0] and trace["rounds"][0]["distribution"] == {"yes": 3}
    assert trace["llm_calls"] == 3 and all(s.model.call_count == 1 for s in team)
    assert trace["dissent"] == [] and "Decision: yes" in out["answer"]


def test_round_zero_is_independent_and_revisions_read_the_others() -> None:
    team = [
        agent("a", pos("yes", rationale="tests are green")),
        agent("b", pos("yes", rationale="customers are waiting")),
        agent("c", pos("no", rationale="friday deploys are risky"), pos("yes", rationale="persuaded by green tests")),
    ]
    out = run_state(team, rounds=3)
    trace = out["trace"]
    assert trace["action"] == "converged" and trace["stop_reason"] is None and trace["rounds_to_convergence"] == 1
    assert trace["agreement_curve"] == [pytest.approx(2 / 3, abs=1e-3), 1.0]
    assert trace["rounds"][1]["changed"] == [{"agent": "c", "from": "no", "to": "yes"}]
    first, second = prompts(team[2])
    assert "tests are green" not in first and "customers are waiting" not in first
    assert "tests are green" in second and "customers are waiting" in second and "friday deploys are risky" in second
    # every position went through the broker, one topic per publisher
    assert [m["round"] for m in out["topics"]["positions/c"]] == [0, 1]
    assert out["subscriptions"]["c"] == ["positions/a", "positions/b"]
    per_agent = trace["agents"]
    assert per_agent["c"]["stances"] == ["no", "yes"] and per_agent["a"]["llm_calls"] == 2
    assert sum(a["llm_calls"] for a in per_agent.values()) == trace["llm_calls"] == 6
    assert all(a["prompt_tokens"] > 0 and a["completion_tokens"] > 0 for a in per_agent.values())


def test_permanent_deadlock_stops_at_the_round_limit_and_reports_dissent() -> None:
    team = [
        agent("a", pos("yes", rationale="ready")),
        agent("b", pos("no", rationale="not tested")),
        agent("c", pos("later", rationale="wait for monday")),
    ]
    out = run(team, rounds=2)
    trace = out["trace"]
    assert trace["stop_reason"] == "round_limit" and trace["action"] == "stopped" and not trace["converged"]
    assert trace["rounds_to_convergence"] is None and trace["iterations"] == 2
    assert len(trace["agreement_curve"]) == 3 and all(
        x == pytest.approx(1 / 3, abs=1e-3) for x in trace["agreement_curve"]
    )
    assert all(s.model.call_count == 3 for s in team)
    assert trace["tie"] and out["trace"]["decision"] == "later"  # three-way tie, alphabetical
    dissent = {d["agent"]: d["rationale"] for d in trace["dissent"]}
    assert dissent == {"a": "ready", "b": "not tested"}
    assert "not tested" in out["answer"]


def test_malformed_output_is_repaired_and_recorded() -> None:
    team = [agent("a", "I think yes, probably", pos("yes")), agent("b", pos("yes")), agent("c", pos("yes"))]
    out = run_state(team)
    first = out["trace"]["rounds"][0]
    assert first["repaired"] == ["a"] and first["voters"] == 3
    assert out["trace"]["agents"]["a"]["repaired_rounds"] == [0] and out["trace"]["agents"]["a"]["llm_calls"] == 2
    record = next(b for b in out["ballots"] if b["agent"] == "a")
    assert record["status"] == "repaired" and record["attempts"] == 2 and record["errors"]
    assert "not valid" in prompts(team[0])[1]  # the repair prompt quotes the error


def test_agent_that_never_answers_properly_is_excluded_each_round() -> None:
    team = [agent("a", pos("yes")), agent("b", pos("no"), pos("yes")), agent("broken", "no json here")]
    out = run_state(team, rounds=2, max_repairs=1)
    trace = out["trace"]
    assert [r["excluded"][0]["agent"] for r in trace["rounds"]] == ["broken", "broken"]
    assert all(r["excluded"][0]["errors"] for r in trace["rounds"])
    assert trace["agents"]["broken"]["excluded_rounds"] == [0, 1]
    assert trace["agents"]["broken"]["llm_calls"] == 4  # 2 rounds x (1 call + 1 repair)
    assert trace["action"] == "converged" and trace["stop_reason"] is None and trace["rounds"][1]["voters"] == 2
    assert out["trace"]["decision"] == "yes" and all(d["agent"] != "broken" for d in trace["dissent"])
    assert "broken" not in out["topics"].get("positions/broken", [{}])[0].get("sender", "")


def test_quorum_prevents_converging_on_a_single_voter() -> None:
    team = [agent("a", pos("yes")), agent("b", "junk"), agent("c", "junk")]
    out = run(team, rounds=1, max_repairs=0)
    assert out["trace"]["stop_reason"] == "round_limit" and out["trace"]["decision"] == "yes"


def test_stance_outside_the_options_is_repaired() -> None:
    team = [agent("a", pos("absolutely"), pos("Approve")), agent("b", pos("approve")), agent("c", pos("reject"))]
    out = run_state(team, options=["approve", "reject"], rounds=0)
    assert out["trace"]["rounds"][0]["distribution"] == {"approve": 2, "reject": 1}
    record = next(b for b in out["ballots"] if b["agent"] == "a")
    assert record["status"] == "repaired" and record["stated"] == "Approve"
    assert "approve, reject" in prompts(team[0])[0]
    schema = position_schema(("approve", "reject")).model_json_schema()
    assert "exactly one of: approve, reject" in schema["properties"]["stance"]["description"]


TIES = {
    # 2 vs 2 agents; "yes" has more summed confidence
    "majority": ([pos("yes", 0.9), pos("yes", 0.9), pos("no", 0.5), pos("no", 0.5)], "yes", "confidence"),
    # equal summed confidence (0.6 + 0.4 = 1.0); "yes" has more agents
    "confidence": ([pos("yes", 0.6), pos("yes", 0.4), pos("no", 1.0)], "yes", "count"),
    # x, y and z all get 4 Borda points; x has two first choices
    "borda": (
        [
            pos("x", ranking=["y", "z"]),
            pos("x", ranking=["z", "y"]),
            pos("y", ranking=["z", "x"]),
            pos("z", ranking=["y", "x"]),
        ],
        "x",
        "first_choices",
    ),
    # no unanimity -> majority fallback, itself tied on count and confidence -> alphabetical
    "unanimity": ([pos("yes", 0.5), pos("no", 0.5)], "no", "alphabetical"),
}


@pytest.mark.parametrize("rule", sorted(TIES))
def test_ties_under_each_rule_end_in_a_recorded_decision(rule: str) -> None:
    replies, expected, tie_break = TIES[rule]
    out = run([agent(f"a{i}", r) for i, r in enumerate(replies)], rounds=1, rule=rule)
    trace = out["trace"]
    assert trace["stop_reason"] == "round_limit" and len(trace["agreement_curve"]) == 2
    assert (out["trace"]["decision"], trace["tie"], trace["tie_break"]) == (expected, True, tie_break)
    assert trace["fallback_rule"] == ("majority" if rule == "unanimity" else None)
    assert f"broken by {tie_break}" in out["answer"] and trace["dissent"]


def test_positions_within_a_round_run_in_parallel() -> None:
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def script(call: ScriptCall) -> dict:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return pos("yes")

    team = [agent(f"a{i}") for i in range(9)]
    for spec in team:
        spec.model = ScriptedChatModel(script=script)
    start = time.perf_counter()
    out = run(team)
    assert state["peak"] == 9  # every agent of round 0 was in flight at once (default pool would cap at cpu+4)
    assert out["trace"]["llm_calls"] == 9 and time.perf_counter() - start < 9 * 0.15


def test_ring_subscriptions_limit_what_each_agent_hears() -> None:
    team = [
        agent("a", pos("yes", rationale="alpha")),
        agent("b", pos("no", rationale="bravo")),
        agent("c", pos("no", rationale="charlie")),
    ]
    out = run_state(team, rounds=1, subscriptions={"a": ["b"], "b": ["c"], "c": ["a"]})
    assert out["subscriptions"] == {"a": ["positions/b"], "b": ["positions/c"], "c": ["positions/a"]}
    second = prompts(team[0])[1]
    assert "bravo" in second and "charlie" not in second


def test_team_from_a_size_and_one_default_model() -> None:
    model = ScriptedChatModel(script=lambda call: pos("no") if "skeptic" in call.text else pos("yes"))
    out = consensus.build(model, agents=3, rounds=0).invoke({"question": "Adopt the plan?"})
    roles = {a["role"] for a in out["trace"]["agents"].values()}
    assert roles == {"optimist", "skeptic", "pragmatist"}
    assert out["trace"]["dissent"][0]["agent"] == "agent2" and model.call_count == 3


def test_call_budget_stops_new_rounds() -> None:
    team = [agent("a", pos("yes")), agent("b", pos("no"))]
    out = run(team, rounds=10, max_llm_calls=5, max_repairs=0)
    assert out["trace"]["stop_reason"] == "max_llm_calls" and out["trace"]["llm_calls"] == 4


def test_call_budget_counts_the_repairs_a_round_may_need() -> None:
    # 2 agents x (1 + 1 repair) = 4 calls per round at worst: with 5 calls, after round 0 (2 calls)
    # a second round cannot be started (the old per-agent count, 2 + 2 <= 5, would have started it).
    team = [agent("a", pos("yes")), agent("b", pos("no"))]
    out = run(team, rounds=10, max_llm_calls=5, max_repairs=1)
    assert out["trace"]["stop_reason"] == "max_llm_calls" and out["trace"]["llm_calls"] == 2
    assert len(out["trace"]["rounds"]) == 1


def test_budget_too_small_for_round_zero_fails_before_any_call() -> None:
    team = [agent(n, pos("yes")) for n in "abcde"]
    graph = consensus.build(agents=team, max_llm_calls=1, max_repairs=0)
    with pytest.raises(consensus.ConsensusOptionError, match=r"max_llm_calls=1 cannot fund round 0: 5 agents"):
        graph.invoke({"question": "Go?"})
    assert all(spec.model.call_count == 0 for spec in team)


def test_no_chat_model_is_reported_at_run_time() -> None:
    graph = consensus.build(agents=2)  # building needs no model
    with pytest.raises(NoChatModelError, match="GRAPHCRAFT_CHAT_MODEL"):
        graph.invoke({"question": "Anything?"})


def test_cli_style_options_are_accepted() -> None:
    model = ScriptedChatModel(script=lambda call: pos("yes"))
    out = consensus.build(model, agents="4", rounds="2").invoke({"question": "Go?"})
    assert len(out["trace"]["agents"]) == 4 and out["trace"]["bounds"]["rounds"] == 2


def test_generic_runner_passes_agents_rounds_and_budget() -> None:
    from graphcraft.api import ask

    model = ScriptedChatModel(script=lambda call: pos("no") if "skeptic" in call.text else pos("yes"))
    result = ask("Adopt the plan?", graph="consensus", model=model, agents=5, rounds=2, max_llm_calls=15)
    trace = result["trace"]
    assert len(trace["agents"]) == 5 and trace["bounds"]["max_llm_calls"] == 15
    assert (
        trace["action"] == "converged" and trace["stop_reason"] is None and result["answer"].startswith("Decision: yes")
    )


def test_token_budget_stops_new_rounds() -> None:
    team = [agent("a", pos("yes", rationale="long argument " * 40)), agent("b", pos("no", rationale="counter " * 40))]
    out = run(team, rounds=10, token_budget=200)
    trace = out["trace"]
    assert trace["stop_reason"] == "token_budget" and len(trace["rounds"]) == 1
    assert trace["prompt_tokens"] + trace["completion_tokens"] >= 200


def test_async_invocation_runs_the_round_in_parallel() -> None:
    import asyncio

    team = [agent(f"a{i}", pos("yes"), latency_s=0.2) for i in range(6)]
    graph = consensus.build(agents=team, rounds=0)
    start = time.perf_counter()
    out = asyncio.run(graph.ainvoke({"question": "Async?"}))
    assert out["trace"]["decision"] == "yes" and time.perf_counter() - start < 6 * 0.2


def test_a_failing_provider_excludes_its_agent_not_the_panel() -> None:
    team = [agent("a", pos("yes")), agent("b", pos("yes")), agent("down", ConnectionError("provider unreachable"))]
    out = run(team, rounds=1)
    first = out["trace"]["rounds"][0]
    [excluded] = first["excluded"]
    assert excluded["agent"] == "down" and len(excluded["errors"]) == 1
    assert excluded["errors"][0].endswith("ConnectionError: provider unreachable")
    assert (
        out["trace"]["action"] == "converged"
        and out["trace"]["stop_reason"] is None
        and out["trace"]["decision"] == "yes"
    )


def test_the_graph_returns_the_ask_shape_and_a_step_per_step_taken() -> None:
    team = [agent("a", pos("yes")), agent("b", pos("no"), pos("yes"))]
    out = run(team, rounds=2)
    assert set(out) == {"question", "answer", "sources", "trace"}
    assert [(s["step"], s.get("round")) for s in out["trace"]["steps"]] == [
        ("convene", None),
        ("propose", 0),
        ("tally", 0),
        ("revise", 1),
        ("tally", 1),
        ("decide", None),
    ]


def test_per_run_call_budget_bounds_the_agents() -> None:
    team = [agent("a", pos("yes")), agent("b", pos("no"))]
    graph = consensus.build(agents=team, rounds=10, max_repairs=0)
    out = graph.invoke({"question": "Ship?"}, config={"configurable": {"max_llm_calls": 4}})
    trace = out["trace"]
    assert trace["stop_reason"] == "max_llm_calls" and trace["llm_calls"] == 4 and len(trace["rounds"]) == 2
    assert trace["bounds"]["max_llm_calls"] == 4 and all(s.model.call_count == 2 for s in team)
    with pytest.raises(consensus.ConsensusOptionError, match=r"max_llm_calls=1 cannot fund round 0: 2 agents"):
        graph.invoke({"question": "Ship?"}, config={"configurable": {"max_llm_calls": 1}})
    assert all(s.model.call_count == 2 for s in team)  # no call was made by the unfunded run


def test_per_run_options_change_rounds_and_rule() -> None:
    team = [agent("a", pos("yes", 0.9)), agent("b", pos("no", 0.2)), agent("c", pos("no", 0.3))]
    graph = consensus.build(agents=team, rounds=3)
    out = graph.invoke({"question": "Ship?"}, config={"configurable": {"rounds": 0, "rule": "confidence"}})
    trace = out["trace"]
    assert trace["stop_reason"] == "round_limit" and trace["bounds"]["rounds"] == 0 and len(trace["rounds"]) == 1
    assert (trace["rule"], trace["decision"]) == ("confidence", "yes") and all(s.model.call_count == 1 for s in team)
    default = graph.invoke({"question": "Ship?"})["trace"]
    assert (default["rule"], default["decision"], len(default["rounds"])) == ("majority", "no", 4)


def test_a_new_question_on_a_thread_starts_a_fresh_run() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    team = [agent("a", pos("yes")), agent("b", pos("yes"))]
    graph = consensus.build(agents=team, rounds=2, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t1"}}
    graph.invoke({"question": "One?"}, config=thread)
    second = graph.invoke({"question": "Two?"}, config=thread)["trace"]
    assert second["llm_calls"] == 2 and len(second["rounds"]) == 1 and second["agreement_curve"] == [1.0]
    state = graph.get_state(thread).values
    assert len(state["ballots"]) == 2 and [m["round"] for m in state["topics"]["positions/a"]] == [0]


def test_position_node_on_its_own() -> None:
    spec = agent("a", "not json", pos("Yes.", rationale="tests are green"))
    graph = consensus.build(agents=[spec, agent("b", pos("no"))], max_repairs=1)
    task = consensus.AgentTask(agent="a", question="Ship?", options=[], round=0)
    update = consensus.position(task, graph.config)  # the context the graph was built with
    [record] = update["ballots"]
    assert (record["status"], record["stance"], record["attempts"]) == ("repaired", "yes", 2)
    assert update["usage"]["llm_calls"] == 2 and update["agent_usage"]["a"]["llm_calls"] == 2
    [message] = update["topics"]["positions/a"]
    assert message["sender"] == "a" and message["round"] == 0 and message["content"]["rationale"] == "tests are green"
