"""self_rag: offline run on the real store, and every branch with scripted models: verified in one
round, a critic never satisfied (stops at the round bound), a token budget that runs out,
malformed JSON from the checker, and no new query to try."""

from __future__ import annotations

from graphcraft.api import build_graph

from .conftest import all_relevant, scripted

QUESTION = "Who is the chief executive of Lindqvar Metropolitan Transit?"
ANSWER = "LMT's chief executive since 2019 is Rasmus Oyelaran [1]."


def run(store, model=None, **options):  # type: ignore[no-untyped-def]
    graph = build_graph("self_rag", model=model, store=store, **options)
    return graph.invoke({"question": QUESTION})


def test_offline_run_returns_cited_answer_and_explains_itself(store_dir) -> None:  # type: ignore[no-untyped-def]
    out = run(store_dir)
    trace = out["trace"]
    assert trace["graph"] == "self_rag" and trace["llm_calls"] == 0
    assert 1 <= trace["iterations"] <= trace["budget"]["max_iterations"]
    assert trace["stop_reason"] in {"grounded_and_useful", "max_iterations", "no_new_query"}
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
    assert (trace["stop_reason"], trace["iterations"], trace["verified"], trace["loops"]) == (
        "grounded_and_useful",
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
    assert trace["stop_reason"] == "max_iterations" and trace["iterations"] == 3
    assert len(trace["loops"]) == 2 and all(loop["because"] == "never good enough" for loop in trace["loops"])
    assert trace["queries"] == [QUESTION, "LMT leadership query 0", "LMT leadership query 1"]
    assert not trace["verified"] and trace["abstained"] and out["sources"] == []  # no grounded attempt: abstain
    assert model.call_count == 3 * 3 + 2  # three rounds of grade/generate/check, two critiques


def test_token_budget_runs_out_before_the_round_bound(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {
            "_Grades": all_relevant,
            "Assessment": {"grounded": True, "useful": False, "reason": "incomplete"},
            "CriticReply": lambda call: {"critique": "incomplete", "search_query": f"query {call.index}"},
        },
        text=ANSWER,
    )
    first = run(store_dir, model, max_iterations=10, token_budget=10**9, max_llm_calls=1000)
    per_round = (first["trace"]["prompt_tokens"] + first["trace"]["completion_tokens"]) / first["trace"]["iterations"]
    budget = int(per_round * 2.5)  # room for two rounds, not three
    model = scripted(
        {
            "_Grades": all_relevant,
            "Assessment": {"grounded": True, "useful": False, "reason": "incomplete"},
            "CriticReply": lambda call: {"critique": "incomplete", "search_query": f"query {call.index}"},
        },
        text=ANSWER,
    )
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
    assert out["trace"]["stop_reason"] in {"grounded_and_useful", "max_iterations"}


def test_llm_call_cap_is_a_bound_too(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {
            "_Grades": all_relevant,
            "Assessment": {"grounded": False, "useful": False, "reason": "no"},
            "CriticReply": lambda call: {"critique": "no", "search_query": f"query {call.index}"},
        },
        text=ANSWER,
    )
    out = run(store_dir, model, max_iterations=50, token_budget=10**9, max_llm_calls=8)
    assert out["trace"]["stop_reason"] == "max_llm_calls" and out["trace"]["llm_calls"] <= 8


def test_budget_given_in_the_input_state(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {
            "_Grades": all_relevant,
            "Assessment": {"grounded": False, "useful": False, "reason": "no"},
            "CriticReply": lambda call: {"critique": "no", "search_query": f"query {call.index}"},
        },
        text=ANSWER,
    )
    graph = build_graph("self_rag", model=model, store=store_dir)
    out = graph.invoke({"question": QUESTION, "budget": {"max_iterations": 2}})
    assert out["trace"]["budget"]["max_iterations"] == 2 and out["trace"]["iterations"] == 2
