import re
import time

from graphcraft.graphs.self_consistency import build as self_consistency
from graphcraft.graphs.tree_of_thought import build as tree_of_thought
from graphcraft.testing import ScriptedChatModel
from tests.agents.conftest import ANY, schema_is, script


def test_self_consistency_majority_over_normalised_answers():
    replies = ["3 + 4 = 7\nAnswer: 7", "Answer: 7.0", "I think\nAnswer: 8", "Final answer: 7.", "Answer: 8"]
    model = ScriptedChatModel(script=replies)
    out = self_consistency(model, n=5).invoke({"question": "3 + 4?"})
    t = out["trace"]
    assert out["answer"] in ("7", "7.0", "7.")
    assert t["votes"] == {"7": 3, "8": 2} and out["agreement"] == 0.6 and not t["unanimous"]
    assert t["llm_calls"] == 5


def test_self_consistency_samples_in_parallel():
    model = ScriptedChatModel(script=lambda c: "Answer: Paris", latency_s=0.3)
    started = time.perf_counter()
    out = self_consistency(model, n=4).invoke({"question": "capital of France?"})
    assert out["answer"] == "Paris" and out["trace"]["unanimous"]
    assert time.perf_counter() - started < 4 * 0.3  # not sequential


def test_self_consistency_tie_goes_to_first_seen_and_budget_caps_samples():
    model = ScriptedChatModel(script=["Answer: blue", "Answer: red"])
    out = self_consistency(model, n=10, max_llm_calls=2).invoke({"question": "colour?"})
    assert out["trace"]["n"] == 2 and out["trace"]["llm_calls"] == 2
    assert out["agreement"] == 0.5 and out["answer"] in ("blue", "red")
    first = min(out["trace"]["answers"], key=lambda a: out["trace"]["answers"].index(a))
    assert out["answer"] == first


def _last_step(block: str) -> str:
    steps = re.findall(r"^\d+\. (.*)$", block, flags=re.MULTILINE)
    return steps[-1] if steps else "root"


def thought_rules(score_for, solution=None):
    """Thoughts extend the parent path's last step with a/b/c; scores depend on the path text."""

    def thoughts(call):
        parent = _last_step(call.last.split("Reasoning so far:\n")[1].split("\n\nPropose")[0])
        return {"thoughts": [f"{parent}>{c}" for c in "abc"]}

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
    assert t["stop_reason"] == "max_depth" and t["iterations"] == 3
    assert [lvl["candidates"] for lvl in t["levels"]] == [3, 6, 6]  # beam 2 x breadth 3
    assert [lvl["kept"] for lvl in t["levels"]] == [2, 2, 2]
    assert t["pruned"] == 1 + 4 + 4
    assert t["best_path"][-1].endswith(">a") and t["best_score"] == 8
    assert t["llm_calls"] == 1 + 1 + 2 + 1 + 2 + 1 + 1  # expand/evaluate per level + answer


def test_tree_of_thought_stops_at_a_solution():
    model = thought_rules(lambda path: 9 if path.endswith("root>b>a") else 5, solution="root>b>a")
    out = tree_of_thought(model, breadth=3, beam=3, max_depth=5).invoke({"question": "puzzle"})
    t = out["trace"]
    assert t["stop_reason"] == "solution_found" and t["iterations"] == 2
    assert t["best_path"] == ["root>b", "root>b>a"]


def test_tree_of_thought_everything_pruned():
    model = thought_rules(lambda path: 1)
    out = tree_of_thought(model, prune_below=3).invoke({"question": "hopeless"})
    assert out["trace"]["stop_reason"] == "all_pruned" and out["trace"]["iterations"] == 1
