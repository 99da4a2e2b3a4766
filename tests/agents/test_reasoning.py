import re
import time

from graphcraft.graphs import self_consistency as self_consistency_module
from graphcraft.graphs import tree_of_thought as tree_of_thought_module
from graphcraft.graphs.self_consistency import build as self_consistency
from graphcraft.graphs.tree_of_thought import build as tree_of_thought
from graphcraft.testing import ScriptedChatModel, final_state
from tests.agents.conftest import ANY, schema_is, script


def test_self_consistency_majority_over_normalised_answers():
    replies = ["3 + 4 = 7\nAnswer: 7", "Answer: 7.0", "I think\nAnswer: 8", "Final answer: 7.", "Answer: 8"]
    model = ScriptedChatModel(script=replies)
    out = self_consistency(model, n=5).invoke({"question": "3 + 4?"})
    t = out["trace"]
    assert out["answer"] in ("7", "7.0", "7.")
    assert t["votes"] == {"7": 3, "8": 2} and t["agreement"] == 0.6 and not t["unanimous"]
    assert t["llm_calls"] == 5 and t["action"] == "majority" and t["stop_reason"] is None
    assert set(out) == {"question", "answer", "sources", "trace"}
    assert [s["step"] for s in t["steps"]] == ["sample"] * 5 + ["vote"]


def test_self_consistency_samples_in_parallel():
    model = ScriptedChatModel(script=lambda c: "Answer: Paris", latency_s=0.3)
    started = time.perf_counter()
    out = self_consistency(model, n=4).invoke({"question": "capital of France?"})
    assert out["answer"] == "Paris" and out["trace"]["unanimous"] and out["trace"]["action"] == "unanimous"
    assert time.perf_counter() - started < 4 * 0.3  # not sequential


def test_self_consistency_tie_goes_to_first_seen_and_budget_caps_samples():
    model = ScriptedChatModel(script=["Answer: blue", "Answer: red"])
    out = self_consistency(model, n=10, max_llm_calls=2).invoke({"question": "colour?"})
    assert out["trace"]["n"] == 2 and out["trace"]["llm_calls"] == 2
    assert out["trace"]["stop_reason"] == "max_llm_calls"
    assert out["trace"]["agreement"] == 0.5 and out["answer"] in ("blue", "red")
    first = min(out["trace"]["answers"], key=lambda a: out["trace"]["answers"].index(a))
    assert out["answer"] == first


def _last_step(block: str) -> str:
    steps = re.findall(r"^\d+\. (.*)$", block, flags=re.MULTILINE)
    return steps[-1] if steps else "root"


def thought_rules(score_for, solution=None):
    """Thoughts extend the parent path's last step with a/b/c (up to the breadth); scores depend on the path text."""

    def thoughts(call):
        parent = _last_step(call.last.split("Reasoning so far:\n")[1].split("\n\nPropose")[0])
        breadth = int(re.search(r"Propose (\d+) ", call.last).group(1))  # as many as asked for
        return {"thoughts": [f"{parent}>{c}" for c in "abc"[:breadth]]}

    def evaluate(call):
        body = call.last.split("\n\nRate every candidate")[0]
        paths = [_last_step(block) for block in body.split("Candidate ")[1:]]
        return {
            "scores": [
                {"index": i + 1, "score": score_for(p), "is_solution": solution is not None and p.endswith(solution)}
                for i, p in enumerate(paths)
            ]
        }

    return script(
        [
            (schema_is("Thoughts"), thoughts),
            (schema_is("Evaluation"), evaluate),
            (ANY, lambda c: "Reasoning...\nAnswer: " + _last_step(c.last)),
        ]
    )


def test_tree_of_thought_beam_search_prunes_and_reaches_depth_bound():
    model = thought_rules(lambda path: {"a": 8, "b": 5, "c": 1}[path[-1]])
    out = tree_of_thought(model, breadth=3, beam=2, max_depth=3, prune_below=3).invoke({"question": "puzzle"})
    t = out["trace"]
    assert t["stop_reason"] == "max_depth" and t["action"] == "stopped" and t["iterations"] == 3
    assert [lvl["candidates"] for lvl in t["levels"]] == [3, 6, 6]  # beam 2 x breadth 3
    assert [lvl["kept"] for lvl in t["levels"]] == [2, 2, 2]
    assert t["pruned"] == 1 + 4 + 4
    assert t["best_path"][-1].endswith(">a") and t["best_score"] == 8
    assert t["llm_calls"] == 1 + 1 + 2 + 1 + 2 + 1 + 1  # expand/evaluate per level + answer


def test_tree_of_thought_stops_at_a_solution():
    model = thought_rules(lambda path: 9 if path.endswith("root>b>a") else 5, solution="root>b>a")
    out = tree_of_thought(model, breadth=3, beam=3, max_depth=5).invoke({"question": "puzzle"})
    t = out["trace"]
    assert t["action"] == "solution_found" and t["stop_reason"] is None and t["iterations"] == 2
    assert t["best_path"] == ["root>b", "root>b>a"]


def test_tree_of_thought_everything_pruned():
    model = thought_rules(lambda path: 1)
    out = tree_of_thought(model, prune_below=3).invoke({"question": "hopeless"})
    assert out["trace"]["action"] == "all_pruned" and out["trace"]["stop_reason"] is None
    assert out["trace"]["iterations"] == 1


def test_self_consistency_without_any_answer_says_so():
    model = ScriptedChatModel(script=lambda c: "")
    out = self_consistency(model, n=3).invoke({"question": "?"})
    t = out["trace"]
    assert out["answer"] == "" and t["action"] == "no_answer" and t["agreement"] == 0.0 and t["votes"] == {}


def test_self_consistency_per_run_configuration_changes_the_sample_count():
    model = ScriptedChatModel(script=lambda c: "Answer: 4")
    graph = self_consistency(model, n=5)
    one = graph.invoke({"question": "2+2?"}, config={"configurable": {"max_llm_calls": 1}})
    assert one["trace"]["n"] == 1 and one["trace"]["llm_calls"] == 1 and one["trace"]["stop_reason"] == "max_llm_calls"
    two = graph.invoke({"question": "2+2?"}, config={"configurable": {"n": "2"}})
    assert two["trace"]["n"] == 2 and two["trace"]["llm_calls"] == 2 and two["trace"]["stop_reason"] is None
    assert graph.invoke({"question": "2+2?"})["trace"]["llm_calls"] == 5
    assert model.call_count == 1 + 2 + 5


def test_self_consistency_a_second_question_on_a_thread_votes_only_its_own_samples():
    from langgraph.checkpoint.memory import InMemorySaver

    model = ScriptedChatModel(script=lambda c: "Answer: " + ("4" if "2+2" in c.text else "9"))
    graph = self_consistency(model, n=3, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    assert graph.invoke({"question": "2+2?"}, config=config)["answer"] == "4"
    out = graph.invoke({"question": "3*3?"}, config={"configurable": {"thread_id": "t", "n": 2}})
    assert out["answer"] == "9" and out["trace"]["votes"] == {"9": 2} and out["trace"]["llm_calls"] == 2


def test_self_consistency_vote_node_on_its_own():
    def drawn(index, answer):
        return {"index": index, "reasoning": "", "answer": answer, "normalized": answer, "usage": {"llm_calls": 1}}

    state = {"question": "q", "samples": [drawn(0, "b"), drawn(1, "a"), drawn(2, "a")]}
    update = self_consistency_module.vote(state, {"configurable": {"n": 3}})
    t = update["trace"]
    assert update["answer"] == "a" and t["votes"] == {"a": 2, "b": 1} and t["llm_calls"] == 3
    assert t["iterations"] == 3 and t["graph"] == "self_consistency"


def test_tree_of_thought_per_run_configuration_reaches_the_search():
    model = thought_rules(lambda path: {"a": 8, "b": 5, "c": 1}[path[-1]])
    graph = tree_of_thought(model, breadth=3, beam=2, max_depth=3)
    shallow = graph.invoke({"question": "puzzle"}, config={"configurable": {"max_depth": 1}})
    t = shallow["trace"]
    assert t["stop_reason"] == "max_depth" and t["iterations"] == 1 and t["max_depth"] == 1
    assert t["llm_calls"] == 1 + 1 + 1  # expand, evaluate, answer
    narrow = graph.invoke({"question": "puzzle"}, config={"configurable": {"breadth": 2, "beam": 1, "max_depth": 2}})
    assert [lvl["candidates"] for lvl in narrow["trace"]["levels"]] == [2, 2]
    assert [lvl["kept"] for lvl in narrow["trace"]["levels"]] == [1, 1]
    strict = graph.invoke({"question": "puzzle"}, config={"configurable": {"prune_below": 9}})
    assert strict["trace"]["action"] == "all_pruned" and strict["trace"]["iterations"] == 1


def test_tree_of_thought_a_model_that_always_goes_deeper_stops_at_the_call_budget():
    model = thought_rules(lambda path: 7)  # every thought promising, none a solution
    graph = tree_of_thought(model, breadth=2, beam=2, max_depth=100)
    out = graph.invoke({"question": "endless"}, config={"configurable": {"max_llm_calls": 4}})
    t = out["trace"]
    assert t["stop_reason"] == "max_llm_calls" and t["action"] == "stopped" and t["llm_calls"] == 4
    assert out["answer"] == t["best_path"][-1]  # no final call once the budget is spent
    assert [s["step"] for s in t["steps"]] == ["root", "expand", "evaluate", "expand", "evaluate", "answer"]


def test_tree_of_thought_a_second_question_on_a_thread_searches_afresh():
    model = thought_rules(lambda path: {"a": 8, "b": 5, "c": 1}[path[-1]])
    graph = tree_of_thought(model, max_depth=2)
    first = final_state(graph, {"question": "puzzle"})
    assert first["depth"] == 2 and first["trace"]["iterations"] == 2

    from langgraph.checkpoint.memory import InMemorySaver

    threaded = tree_of_thought(model, max_depth=2, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    one = threaded.invoke({"question": "puzzle"}, config=config)
    two = threaded.invoke({"question": "puzzle again"}, config=config)
    assert one["trace"]["levels"] == two["trace"]["levels"] and two["trace"]["iterations"] == 2


def test_tree_of_thought_expand_node_on_its_own():
    model = thought_rules(lambda path: 5)
    config = tree_of_thought(model, breadth=2).config  # the config a run of the compiled graph starts from
    state = {"question": "puzzle", "frontier": [{"path": ["root>a"], "score": 6.0}], "depth": 1, "steps": []}
    update = tree_of_thought_module.expand(state, config)
    assert [c["path"] for c in update["candidates"]] == [["root>a", "root>a>a"], ["root>a", "root>a>b"]]
    assert update["depth"] == 2 and update["usage"]["llm_calls"] == 1 and update["failures"] == []
    assert update["steps"] == [{"step": "expand", "depth": 2, "paths": 1, "candidates": 2}]
