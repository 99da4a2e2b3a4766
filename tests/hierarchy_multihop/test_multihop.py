"""Multi-hop graph and query decomposition: real retrieval, scripted chat models for the LLM paths."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from graphcraft.chains.answer import ABSTAIN
from graphcraft.chains.decompose import PlanError, bridge_answer, decompose, decompose_rules, substitute, validate_plan
from graphcraft.config import get_settings
from graphcraft.graphs import multihop
from graphcraft.graphs.multihop import build
from graphcraft.testing import ScriptCall, ScriptedChatModel, final_state

KNOWLEDGE_LINE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)


def _graph(store: Path, model=None, **options):  # type: ignore[no-untyped-def]
    return build(model=model, settings=get_settings(store=store), **options)


def reader(call: ScriptCall, plan: dict | str | None = None, compose: str | None = None):  # type: ignore[no-untyped-def]
    """A fake model that reads: it answers a hop only from the knowledge lines it was given.

    - decomposition (structured output): `plan`;
    - a hop ("Answer the question using ONLY ..."): the first proper name or number that the
      question asks for, found in the numbered knowledge, with that line's citation; else abstain;
    - the composition: `compose`, or the findings' last line.
    """
    text = call.text
    if call.schema == "Decomposition":
        return plan
    if "using ONLY the numbered knowledge" in text:
        question = text.rsplit("Question:", 1)[1].split("\n")[0]
        for number, line in KNOWLEDGE_LINE.findall(text):
            if "which district" in question.lower():
                found = re.search(r"in ([A-Z][a-z]+), a riverside district", line)
                if found:
                    return f"{found.group(1)} [{number}]"
            elif "how many residents" in question.lower():
                place = question.lower().split("does ")[-1].split(" have")[0].split("live in ")[-1].rstrip("?").strip()
                found = re.search(r"has ([\d,]+) residents", line)
                if found and place and place in line.lower():
                    return f"{found.group(1)} [{number}]"
        return ABSTAIN
    if "findings of its sub-questions" in text:
        findings = text.split("Findings:")[1].split("Question:")[0].strip()
        return compose or findings.split("\n")[-1].split("-> ")[-1]
    raise AssertionError(f"unexpected prompt: {text[:200]}")


# ------------------------------------------------------------------------------ plan validation


def test_validate_plan_repairs_unknown_self_and_cyclic_dependencies() -> None:
    hops, levels, repairs = validate_plan(
        [
            {"id": "q1", "question": "Which district hosts {q3}?", "depends_on": ["q3", "q1", "q9"]},
            {"id": "q2", "question": "What is the population of {q1}?", "depends_on": ["q1"]},
            {"id": "q3", "question": "Which company is based in {q2}?", "depends_on": ["q2"]},
        ]
    )
    assert any("self-dependency" in r for r in repairs) and any("'q9'" in r for r in repairs)
    assert any(r.startswith("cycle q1 -> q2 -> q3 -> q1") or "cycle" in r for r in repairs)
    assert levels == [["q1"], ["q2"], ["q3"]]
    assert (
        hops[0]["depends_on"] == [] and "{q3}" not in hops[0]["question"]
    )  # the dropped edge's placeholder is inlined
    assert hops[1]["depends_on"] == ["q1"] and hops[2]["depends_on"] == ["q2"]


def test_validate_plan_strict_refuses_with_a_clear_error() -> None:
    with pytest.raises(PlanError, match="cycle q1 -> q2 -> q1"):
        validate_plan([{"id": "q1", "question": "A of {q2}?"}, {"id": "q2", "question": "B of {q1}?"}], strict=True)
    with pytest.raises(PlanError, match="no sub-questions"):
        validate_plan([])


def test_validate_plan_bounds_hops_and_waves_and_finds_parallel_levels() -> None:
    chain = [{"id": f"q{i}", "question": f"step {i} after {{q{i - 1}}}" if i > 1 else "step 1"} for i in range(1, 8)]
    hops, levels, repairs = validate_plan(chain, max_hops=5, max_waves=3)
    assert [h["id"] for h in hops] == ["q1", "q2", "q3"] and len(levels) == 3
    assert any("max_hops=5" in r for r in repairs) and any("max_waves=3" in r for r in repairs)
    _, levels, _ = validate_plan(
        [{"id": "a", "question": "x?"}, {"id": "b", "question": "y?"}, {"id": "c", "question": "{a} and {b}?"}]
    )
    assert levels == [["a", "b"], ["c"]]


# ------------------------------------------------------------------------------ offline decomposition


def test_rules_split_relative_clauses_into_a_dependency_chain() -> None:
    subs, form = decompose_rules("How many residents live in the district where Verdant Labs has its head office?")
    assert form == "relative_clause"
    assert [s.depends_on for s in subs] == [[], ["q1"]]
    assert (
        "Verdant Labs has its head office" in subs[0].question
        and subs[1].question == "How many residents live in {q1}?"
    )
    subs, _ = decompose_rules(
        "What is the population of the district where the founder of the company that built the Kestrel K4 grew up?"
    )
    assert len(subs) == 3 and subs[0].question == "Which company built the Kestrel K4?" and subs[2].depends_on == ["q2"]


def test_rules_split_conjunctions_into_independent_questions() -> None:
    subs, form = decompose_rules("What is the population of Oldmere and Fenwick?")
    assert form == "conjunction" and [s.question for s in subs] == [
        "What is the population of Oldmere?",
        "What is the population of Fenwick?",
    ]
    subs, form = decompose_rules("When was the lighthouse built and who founded Verdant Labs?")
    assert form == "conjunction" and all(not s.depends_on for s in subs) and len(subs) == 2
    subs, form = decompose_rules(
        "What is the speed limit between the Tessel bridge and Grelle?"
    )  # a range, not two questions
    assert form == "single" and len(subs) == 1


def test_bridge_answer_keeps_short_answers_and_extracts_the_asked_name() -> None:
    assert bridge_answer("Who designed the weir?", "Edda Strand [1].") == "Edda Strand"
    long = "Verdant Labs has its head office in the Kestrel Tower in Oldmere, a riverside district of Norhaven. [1]"
    assert bridge_answer("Which district is the one where Verdant Labs has its head office?", long) == "Oldmere"
    assert substitute("How many residents live in {q1}?", {"q1": "Oldmere"}) == "How many residents live in Oldmere?"


# ------------------------------------------------------------------------------ the graph


def test_offline_two_hop_question_substitutes_the_bridge_and_cites_both_hops(corpus_store: Path) -> None:
    state = _graph(corpus_store).invoke(
        {"question": "How many residents live in the district where Verdant Labs has its head office?"}
    )
    hops = state["trace"]["hops"]
    assert state["trace"]["decomposition"]["strategy"] == "rules:relative_clause"
    assert hops[0]["bridge"] == "Oldmere" and hops[1]["question"] == "How many residents live in Oldmere?"
    assert "27,300" in state["answer"].split("How this was found")[0]
    sources = {Path(s["source"]).name for s in state["sources"]}
    assert {"verdant_labs.md", "norhaven_districts.md"} <= sources
    for hop in hops:  # every hop's citations appear in the answer
        assert re.findall(r"\[\d+\]", hop["answer"]) and all(
            c in state["answer"] for c in re.findall(r"\[\d+\]", hop["answer"])
        )
    assert state["trace"]["waves"] == [["q1"], ["q2"]] and state["trace"]["llm_calls"] == 0
    assert set(state) == {"question", "answer", "sources", "trace"}  # the output is the ask shape
    trace = state["trace"]
    assert trace["action"] == "answered" and trace["stop_reason"] is None and trace["iterations"] == 2
    assert [s["step"] for s in trace["steps"]] == ["decompose", "answer_subquestion", "answer_subquestion", "compose"]
    assert [(s["hop"], s["wave"]) for s in trace["steps"] if s["step"] == "answer_subquestion"] == [
        ("q1", 1),
        ("q2", 2),
    ]


def test_llm_chain_of_two_hops_answers_with_substitution(corpus_store: Path) -> None:
    plan = {
        "sub_questions": [
            {"id": "q1", "question": "In which district does Verdant Labs have its head office?", "depends_on": []},
            {"id": "q2", "question": "How many residents does {q1} have?", "depends_on": ["q1"]},
        ]
    }
    model = ScriptedChatModel(script=lambda call: reader(call, plan))
    state = _graph(corpus_store, model).invoke({"question": "How many people live where Verdant Labs is based?"})
    hops = {h["id"]: h for h in state["trace"]["hops"]}
    assert hops["q1"]["bridge"] == "Oldmere"
    assert (
        hops["q2"]["question"] == "How many residents does Oldmere have?"
    )  # the first answer went into the second question
    assert hops["q2"]["bridge"] == "27,300"  # read from the chunk that retrieval found for the substituted question
    hop2_prompt = next(c.text for c in model.calls if "How many residents does Oldmere have?" in c.text)
    assert "Oldmere has 27,300 residents" in hop2_prompt
    assert state["answer"].startswith("27,300") and state["trace"]["compose_strategy"] == "llm"
    cited = set(re.findall(r"\[(\d+)\]", state["answer"]))
    assert {str(s["citation"]) for s in state["sources"] if "q1" in s["hops"]} & cited  # hop 1 cited (listed finding)
    assert state["trace"]["llm_calls"] == model.call_count == 4  # plan, two hops, composition


def test_llm_cyclic_plan_is_repaired_and_runs(corpus_store: Path) -> None:
    plan = {
        "sub_questions": [
            {
                "id": "q1",
                "question": "In which district does Verdant Labs have its head office {q2}?",
                "depends_on": ["q2"],
            },
            {"id": "q2", "question": "How many residents does {q1} have?", "depends_on": ["q1"]},
        ]
    }
    model = ScriptedChatModel(script=lambda call: reader(call, plan))
    state = _graph(corpus_store, model).invoke({"question": "How many people live where Verdant Labs is based?"})
    decomposition = state["trace"]["decomposition"]
    assert any(r.startswith("cycle q1 -> q2 -> q1") for r in decomposition["repairs"])
    assert decomposition["levels"] == [["q1"], ["q2"]] and state["trace"]["waves"] == [["q1"], ["q2"]]
    assert state["trace"]["hops"][1]["question"] == "How many residents does Oldmere have?"
    with pytest.raises(PlanError, match="cycle"):
        _graph(corpus_store, ScriptedChatModel(script=lambda call: reader(call, plan)), strict=True).invoke(
            {"question": "x?"}
        )


def test_malformed_plan_json_falls_back_to_rules_after_bounded_repairs(corpus_store: Path) -> None:
    model = ScriptedChatModel(script=lambda call: reader(call, '{"sub_questions": [ {"id": "q1", "quest'))
    state = _graph(corpus_store, model).invoke(
        {"question": "How many residents live in the district where Verdant Labs has its head office?"}
    )
    decomposition = state["trace"]["decomposition"]
    plan_calls = [c for c in model.calls if c.schema == "Decomposition"]
    assert len(plan_calls) == 1 + get_settings().max_structured_repairs  # bounded, then the recorded fallback
    assert decomposition["strategy"] == "llm->rules:relative_clause" and decomposition["errors"]
    assert state["trace"]["hops"][1]["question"] == "How many residents live in Oldmere?"


def test_independent_sub_questions_run_in_parallel_in_one_superstep(corpus_store: Path) -> None:
    plan = {
        "sub_questions": [
            {"id": "q1", "question": "How many residents does Oldmere have?", "depends_on": []},
            {"id": "q2", "question": "How many residents does Fenwick have?", "depends_on": []},
        ]
    }
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def slow_reader(call: ScriptCall):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        reply = reader(call, plan, compose="Oldmere has 27,300 [1] and Fenwick 12,450 [2] residents.")
        if "using ONLY" in call.text:
            time.sleep(0.4)
            with lock:
                spans.append((start, time.perf_counter()))
        return reply

    graph = _graph(corpus_store, ScriptedChatModel(script=slow_reader))
    steps = {}
    final = {}
    for event in graph.stream({"question": "Compare the populations of Oldmere and Fenwick."}, stream_mode="debug"):
        if event["type"] == "task":
            steps.setdefault(event["payload"]["name"], []).append(event["step"])
        if event["type"] == "task_result" and event["payload"]["name"] == "compose":
            final = dict(event["payload"]["result"])
    assert len(steps["answer_subquestion"]) == 2 and len(set(steps["answer_subquestion"])) == 1  # same superstep
    (s1, e1), (s2, e2) = spans
    assert s1 < e2 and s2 < e1  # the two hops' model calls overlapped in time
    assert final["trace"]["waves"] == [["q1", "q2"]] and final["trace"]["parallel_hops"] == 2
    assert {h["bridge"] for h in final["trace"]["hops"]} == {"27,300", "12,450"}


def test_llm_budget_stops_before_the_next_wave(corpus_store: Path) -> None:
    plan = {
        "sub_questions": [
            {"id": "q1", "question": "In which district does Verdant Labs have its head office?", "depends_on": []},
            {"id": "q2", "question": "How many residents does {q1} have?", "depends_on": ["q1"]},
        ]
    }
    model = ScriptedChatModel(script=lambda call: reader(call, plan))
    state = _graph(corpus_store, model, max_llm_calls=2).invoke(
        {"question": "How many people live where Verdant Labs is based?"}
    )
    assert state["trace"]["stop_reason"] == "max_llm_calls" and state["trace"]["skipped"] == ["q2"]
    assert state["trace"]["waves"] == [["q1"]] and model.call_count == 2  # no composition call over budget
    assert "Oldmere" in state["answer"]
    assert state["trace"]["action"] == "stopped" and state["trace"]["compose_strategy"] == "extractive"
    assert [s["step"] for s in state["trace"]["steps"]] == ["decompose", "answer_subquestion", "compose"]


TWO_HOP_PLAN = {
    "sub_questions": [
        {"id": "q1", "question": "In which district does Verdant Labs have its head office?", "depends_on": []},
        {"id": "q2", "question": "How many residents does {q1} have?", "depends_on": ["q1"]},
    ]
}


def test_per_run_configuration_reaches_every_node(corpus_store: Path) -> None:
    model = ScriptedChatModel(script=lambda call: reader(call, TWO_HOP_PLAN))
    graph = _graph(corpus_store, model)
    question = {"question": "How many people live where Verdant Labs is based?"}
    budgeted = graph.invoke(question, config={"configurable": {"max_llm_calls": 2}})
    assert budgeted["trace"]["stop_reason"] == "max_llm_calls" and budgeted["trace"]["llm_calls"] == 2
    assert budgeted["trace"]["waves"] == [["q1"]] and model.call_count == 2
    full = graph.invoke(question)  # the same compiled graph, no override: the whole plan runs
    assert full["trace"]["stop_reason"] is None and full["trace"]["llm_calls"] == 4 and model.call_count == 6
    # One of the graph's own options per run: a single wave (the plan is cut, and says so).
    one_wave = graph.invoke(question, config={"configurable": {"max_waves": 1}})
    assert one_wave["trace"]["waves"] == [["q1"]] and one_wave["trace"]["bounds"]["max_waves"] == 1
    assert any("max_waves=1" in r for r in one_wave["trace"]["decomposition"]["repairs"])
    assert len(one_wave["trace"]["steps"]) == len(full["trace"]["steps"]) - 1


def test_a_plan_that_always_asks_for_another_hop_is_cut_to_the_bounds(corpus_store: Path) -> None:
    chain = [{"id": "q1", "question": "In which district does Verdant Labs have its head office?", "depends_on": []}]
    chain += [
        {"id": f"q{i}", "question": f"Which district is next to {{q{i - 1}}}?", "depends_on": [f"q{i - 1}"]}
        for i in range(2, 9)
    ]
    model = ScriptedChatModel(script=lambda call: reader(call, {"sub_questions": chain}))
    state = _graph(corpus_store, model).invoke({"question": "Walk the districts from Verdant Labs' office."})
    trace = state["trace"]
    assert len(trace["waves"]) == trace["bounds"]["max_waves"] == get_settings().multihop_max_waves
    assert any("max_hops" in r or "max_waves" in r for r in trace["decomposition"]["repairs"])
    assert trace["llm_calls"] == model.call_count == 1 + len(trace["waves"]) + 1  # plan, one call per hop, compose


def test_working_channels_of_a_run(corpus_store: Path) -> None:
    state = final_state(
        _graph(corpus_store),
        {"question": "How many residents live in the district where Verdant Labs has its head office?"},
    )
    assert state["levels"] == [["q1"], ["q2"]] and state["wave"] == 2 and state["finished"] is True
    assert state["stopped"] is None and set(state["results"]) == {"q1", "q2"}
    assert state["results"]["q1"]["bridge"] == "Oldmere" and state["usage"]["llm_calls"] == 0


def test_schedule_node_on_its_own_applies_the_run_budget() -> None:
    state = {"question": "q", "levels": [["q1"], ["q2"]], "wave": 1, "usage": {"llm_calls": 5}}
    assert multihop.schedule(state, {"configurable": {"max_llm_calls": 5}}) == {
        "finished": True,
        "stopped": "max_llm_calls",
    }
    assert multihop.schedule(state, {"configurable": {"max_llm_calls": 6}}) == {"wave": 2}
    assert multihop.schedule({**state, "wave": 2}, {}) == {"finished": True}  # the plan is done


def test_decompose_single_question_is_one_hop() -> None:
    plan = decompose("When was the Saltby lighthouse built?")
    assert plan.strategy == "rules:single" and len(plan.hops) == 1 and plan.levels == [["q1"]]


def test_empty_or_symbol_only_questions_abstain_instead_of_failing() -> None:
    from graphcraft.chains.decompose import decompose

    for question in ("", "   ", "?" * 50):
        plan = decompose(question)
        assert plan.strategy == "single" or plan.hops, question
        assert len(plan.hops) == 1
