"""graphcraft.eval: loader, the samples/README.md grading rule, recall, abstention, reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document

from graphcraft.eval import (
    DatasetError,
    abstention_metrics,
    grade_result,
    hit_at_k,
    is_abstention,
    is_correct,
    load_questions,
    make_table,
    recall_at_k,
    save_comparison_plot,
    save_curve_plot,
    split_by_id,
    summarize,
)


@pytest.fixture(scope="module")
def questions():
    return load_questions()


def test_sample_questions_load_as_typed_records(questions):
    assert len(questions) == 74
    by_id = {q.id: q for q in questions}
    m02 = by_id["m02"]
    assert m02.type == "multi_hop" and m02.answer_keywords == [["1978"]]
    assert {h.source for h in m02.hops} == {"halvard_robotics_profile.md", "local_history.txt"}
    assert all(isinstance(g, list) for q in questions for g in q.answer_keywords)
    assert by_id["u01"].expects_abstention and not by_id["u01"].in_corpus
    assert by_id["s01"].in_corpus and not by_id["s01"].expects_abstention
    assert {q.type for q in load_questions(types=["external"])} == {"external"}


def test_every_gold_answer_passes_its_own_keywords(questions):
    for q in questions:
        if q.answer_keywords:
            assert is_correct(q.answer, q.answer_keywords), q.id


def test_grading_rule_every_group_any_alternative():
    groups = [["1902"], ["polytechnic", "skarre school"]]
    assert is_correct("Lindqvar **Polytechnic**, founded in 1902.", groups)
    assert is_correct("The Skarre   School of Navigation opened in 1902", groups)
    assert not is_correct("It was founded in 1902.", groups)
    assert not is_correct("Lindqvar Polytechnic", groups)
    assert is_correct("Nine\u00a0hours of endurance", [["9 hours", "nine hours"]])
    assert is_correct("Edda Strand designed it", ["strand"])  # bare string = one-element group
    assert not is_correct("Edda designed it", ["strand"])
    assert is_correct("anything", [])  # no groups: nothing to require


def test_split_keeps_types_and_is_disjoint(questions):
    calibration, held_out = split_by_id(questions)
    assert {q.id for q in calibration}.isdisjoint({q.id for q in held_out})
    assert len(calibration) + len(held_out) == len(questions)
    assert all(q.number % 2 == 0 for q in calibration)
    assert {q.type for q in calibration} == {q.type for q in held_out}


def test_recall_compares_file_names_and_respects_k():
    sources = [
        {"source": "/data/corpus/a.md"},
        Document("x", metadata={"source": "corpus/b.txt"}),
        "c.html",
        {"source": "a.md"},
    ]
    assert recall_at_k(sources, ["a.md", "b.txt"]) == 1.0
    assert recall_at_k(sources, ["a.md", "b.txt"], k=1) == 0.5
    assert recall_at_k(sources, ["c.html", "zzz.md"], k=2) == 0.0
    assert recall_at_k(sources, []) is None
    assert hit_at_k(sources, ["zzz.md", "c.html"]) is True


def test_abstention_detection_and_metrics():
    assert is_abstention("Not found in the sources.")
    assert is_abstention("I cannot answer that from the documents.")
    assert is_abstention("")
    assert not is_abstention("The weir was built in 1931 [1].")
    assert is_abstention("The weir was built in 1931.", abstained=True)  # the system's own flag wins
    m = abstention_metrics([True, True, False, False], [True, False, True, False])
    assert (m.accuracy, m.precision, m.recall, m.false_abstention_rate) == (0.5, 0.5, 0.5, 0.5)
    assert abstention_metrics([False], [False]).recall is None
    with pytest.raises(ValueError):
        abstention_metrics([True], [])


def test_grade_result_and_summary(questions):
    by_id = {q.id: q for q in questions}
    right = grade_result(
        by_id["m02"],
        {
            "answer": "It closed in 1978.",
            "sources": [{"source": "x/local_history.txt"}],
            "trace": {"abstained": False, "llm_calls": 2},
        },
    )
    wrong = grade_result(
        by_id["s01"], {"answer": "Not found in the sources.", "sources": [], "trace": {"abstained": True}}
    )
    caught = grade_result(
        by_id["u01"], {"answer": "Not found in the sources.", "sources": [], "trace": {"abstained": True}}
    )
    assert right["correct"] and right["recall@5"] == 0.5
    assert not wrong["correct"] and wrong["abstained"]
    assert caught["correct"] and caught["recall@5"] is None
    summary = summarize([right, wrong, caught])
    assert summary["answer_hit_rate"] == 0.5 and summary["abstention_recall"] == 1.0
    assert summary["recall@5"] == 0.25 and summary["llm_calls_per_question"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "x1", "question": "q?"}', "missing key"),
        ('{"id": "x1", "question": "q?", "type": "trivia"}', "unknown question type"),
        ("{not json", "invalid JSON"),
        (
            '{"id": "x1", "question": "q?", "type": "single"}\n{"id": "x1", "question": "r?", "type": "single"}',
            "duplicate id",
        ),
    ],
)
def test_malformed_question_files_name_the_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "q.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_questions(path)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DatasetError, match="cannot read"):
        load_questions(tmp_path / "nope.jsonl")


def test_reports_render_table_and_write_pngs(tmp_path: Path):
    table = make_table([{"system": "crag", "hit": 0.5, "n": 3, "abstained": None}], title="t")
    assert [c.header for c in table.columns] == ["system", "hit", "n", "abstained"]
    assert list(table.columns[1].cells) == ["0.500"] and list(table.columns[3].cells) == ["—"]
    bars = save_comparison_plot(
        {"a": {"hit": 0.5, "recall": 0.7}, "b": {"hit": 0.6, "recall": None}}, tmp_path / "c.png"
    )
    curve = save_curve_plot(
        {"score": ([0, 0.5, 1], [1, 0.5, 0])}, tmp_path / "sub" / "t.png", points={"chosen": (0.5, 0.5)}
    )
    for png in (bars, curve):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
