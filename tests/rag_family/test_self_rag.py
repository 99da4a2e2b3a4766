"""self_rag: offline run on the real store, and every branch with scripted models: verified in one
round, a critic never satisfied (stops at the round bound), a token budget that runs out,
malformed JSON from the checker, and no new query to try; bounds and the graph's own options
given per run, and the nodes called on their own."""

from __future__ import annotations

from graphcraft.api import build_graph
from graphcraft.graphs import self_rag
from graphcraft.runtime.result import TRACE_KEYS

from .conftest import all_relevant, scripted

QUESTION = "Who is the chief executive of Lindqvar Metropolitan Transit?"
ANSWER = "LMT's chief executive since 2019 is Rasmus Oyelaran [1]."


def run(store, model=None, **options):  # type: ignore[no-untyped-def]
    graph = build_graph("self_rag", model=model, store=store, **options)
    return graph.invoke({"question": QUESTION})


def rejecting(grounded: bool, reason: str):  # type: ignore[no-untyped-def]
    """A checker that finds no answer useful (grounded or not, for `reason`), a critic with a new query each time."""
    return scripted(
        {
            "_Grades": all_relevant,
            "Assessment": {"grounded": grounded, "useful": False, "reason": reason},
            "CriticReply": lambda call: {"critique": reason, "search_query": f"query {call.index}"},
        },
        text=ANSWER,
    )


def test_offline_run_returns_cited_answer_and_explains_itself(store_dir) -> None:  # type: ignore[no-untyped-def]
    out = run(store_dir)
    trace = out["trace"]
    assert set(out) == {"question", "answer", "sources", "trace"} and set(TRACE_KEYS) <= set(trace)
    assert trace["graph"] == "self_rag" and trace["llm_calls"] == 0
    assert 1 <= trace["iterations"] <= trace["budget"]["max_iterations"]
    assert (trace["action"], trace["stop_reason"]) in {
        ("verified", None),
        ("stopped", "max_iterations"),
        ("no_new_query", None),
    }
    assert len(trace["attempts"]) == trace["iterations"] and len(trace["loops"]) == trace["iterations"] - 1
    assert all(loop["because"] for loop in trace["loops"])
    if not trace["abstained"]:
        assert out["sources"] and all(s["chunk_id"] and s["source"].endswith(".md") for s in out["sources"])


def test_verified_in_one_round(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {"_Grades": all_relevant, "Assessment": {"grounded": True, "useful": True, "reason": "ok"}}, text=ANSWER
    )
    out = run(store_dir, model)
    trace = out["trace"]
    assert out["answer"] == ANSWER and out["sources"]
    assert (trace["action"], trace["stop_reason"], trace["iterations"], trace["verified"], trace["loops"]) == (
        "verified",
        None,
        1,
        True,
        [],
    )
    assert trace["llm_calls"] == 3 == model.call_count  # grade, generate, check


def test_critic_never_satisfied_stops_at_the_round_bound(store_dir) -> None:  # type: ignore[no-untyped-def]
    queries = iter(f"LMT leadership query {i}" for i in range(100))
    model = scripted(
        {
            "_Grades": all_relevant,
            "Assessment": {"grounded": False, "useful": False, "reason": "never good enough"},
            "CriticReply": lambda call: {"critique": "still unsupported", "search_query": next(queries)},
        },
        text=ANSWER,
    )
    out = run(store_dir, model, max_iterations=3, token_budget=10**9, max_llm_calls=1000)
    trace = out["trace"]
    assert (trace["action"], trace["stop_reason"], trace["iterations"]) == ("stopped", "max_iterations", 3)
    assert len(trace["loops"]) == 2 and all(loop["because"] == "never good enough" for loop in trace["loops"])
    assert trace["queries"] == [QUESTION, "LMT leadership query 0", "LMT leadership query 1"]
    assert not trace["verified"] and trace["abstained"] and out["sources"] == []  # no grounded attempt: abstain
    assert model.call_count == 3 * 3 + 2  # three rounds of grade/generate/check, two critiques


def test_token_budget_runs_out_before_the_round_bound(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = rejecting(True, "incomplete")
    first = run(store_dir, model, max_iterations=10, token_budget=10**9, max_llm_calls=1000)
    per_round = (first["trace"]["prompt_tokens"] + first["trace"]["completion_tokens"]) / first["trace"]["iterations"]
    budget = int(per_round * 2.5)  # room for two rounds, not three
    model = rejecting(True, "incomplete")
    out = run(store_dir, model, max_iterations=10, token_budget=budget, max_llm_calls=1000)
    trace = out["trace"]
    assert trace["stop_reason"] == "token_budget" and trace["iterations"] < 10
    assert trace["tokens"] <= budget
    assert (
        not trace["verified"] and out["answer"] == ANSWER
    )  # grounded but unverified: the best attempt is returned, flagged


def test_malformed_checker_reply_falls_back_to_the_local_check(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted({"_Grades": all_relevant, "Assessment": "{not json"}, text=ANSWER)
    out = run(store_dir, model, max_iterations=1)
    check = [s for s in out["trace"]["steps"] if s["step"] == "check"][0]
    assert check["strategy"] == "llm->local_fallback"
    assert (out["trace"]["action"], out["trace"]["stop_reason"]) in {("verified", None), ("stopped", "max_iterations")}


def test_llm_call_cap_is_a_bound_too(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = rejecting(False, "no")
    out = run(store_dir, model, max_iterations=50, token_budget=10**9, max_llm_calls=8)
    assert out["trace"]["stop_reason"] == "max_llm_calls" and out["trace"]["llm_calls"] <= 8


def test_bounds_given_per_run(store_dir) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("self_rag", model=rejecting(False, "no"), store=store_dir, max_iterations=3)
    out = graph.invoke({"question": QUESTION}, config={"configurable": {"max_iterations": 2}})
    assert out["trace"]["budget"]["max_iterations"] == 2 and out["trace"]["iterations"] == 2
    assert out["trace"]["stop_reason"] == "max_iterations"
    model = rejecting(False, "no")
    graph = build_graph("self_rag", model=model, store=store_dir, max_iterations=3, max_llm_calls=1000)
    out = graph.invoke({"question": QUESTION}, config={"configurable": {"max_llm_calls": 4}})
    assert (out["trace"]["stop_reason"], out["trace"]["iterations"]) == ("max_llm_calls", 1)
    assert model.call_count == 3  # grade, generate, check: a second round would cross the cap
    assert graph.invoke({"question": QUESTION})["trace"]["iterations"] == 3  # the build's own bounds again


def test_graph_option_given_per_run(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = rejecting(True, "incomplete")
    graph = build_graph("self_rag", model=model, store=store_dir, max_iterations=1)
    best = graph.invoke({"question": QUESTION})
    assert best["answer"] == ANSWER and not best["trace"]["abstained"]  # the grounded attempt, unverified
    abstain = graph.invoke({"question": QUESTION}, config={"configurable": {"unverified": "abstain"}})
    assert abstain["trace"]["abstained"] and abstain["sources"] == [] and abstain["trace"]["chosen_round"] is None


def test_no_new_query_ends_the_loop(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {
            "_Grades": all_relevant,
            "Assessment": {"grounded": False, "useful": False, "reason": "no"},
            "CriticReply": {"critique": "nothing else to try", "search_query": QUESTION},
        },
        text=ANSWER,
    )
    out = run(store_dir, model, max_iterations=10, token_budget=10**9, max_llm_calls=1000)
    trace = out["trace"]
    assert (trace["action"], trace["stop_reason"]) == ("no_new_query", None)
    assert trace["steps"][-2]["step"] == "critique" and trace["steps"][-1] == {"step": "finish"}


def test_nodes_on_their_own(store_dir) -> None:  # type: ignore[no-untyped-def]
    config = build_graph("self_rag", store=store_dir).config
    state: dict = {"question": QUESTION}
    for node in (self_rag.retrieve, self_rag.grade, self_rag.generate, self_rag.check):
        state.update(node(state, config))
    assert [s["step"] for s in state["steps"]] == ["retrieve", "grade", "generate", "check"]
    assert state["queries"] == [QUESTION] and state["knowledge"] and state["iterations"] == 1
    assert state["attempts"][0]["answer"] == state["answer"] and state["sources"]
    assert state["attempts"][0]["grounded"] == state["check"]["grounded"] == state["steps"][-1]["grounded"]
    assert self_rag.after_check(state, config) == ("finish" if self_rag.verified(state) else "critique")
