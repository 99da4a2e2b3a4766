"""Integrity of the python_docs evaluation set (benchmarks/data/python_docs).

The questions are graded against Python's own HTML documentation as installed by the Debian
package python3.11-doc. A page that moves, a keyword with a typo or a loader change that drops
the text holding an answer silently turns a gold answer into a wrong one; these checks catch
that. Texts are matched as graphcraft's loader extracts them, normalised the way the grader
normalises answers, so cosmetic loader changes (whitespace, headings) do not break them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePath

import pytest

from graphcraft.eval.datasets import Question, load_questions, split_by_id
from graphcraft.eval.grading import is_correct, normalize
from graphcraft.ingest.loaders import load_file

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "python_docs"
CORPUS = json.loads((DATA / "corpus.json").read_text(encoding="utf-8"))
QUESTIONS = load_questions(DATA / "questions.jsonl")
FILE_NAMES = [PurePath(f).name for f in CORPUS["files"]]

# Minimum count of each type in EACH half of split_by_id (calibration and held-out).
MIN_PER_HALF = {"paraphrase": 22, "multi_hop": 6, "unanswerable": 6}
ID_PREFIX = {"paraphrase": "p", "multi_hop": "m", "unanswerable": "u"}
# Loaded text of all pages, in characters: about 500-900 chunks of 800 characters.
TOTAL_TEXT_RANGE = (250_000, 650_000)

ANSWERABLE = [q for q in QUESTIONS if q.in_corpus]
UNANSWERABLE = [q for q in QUESTIONS if q.type == "unanswerable"]
MULTI_HOP = [q for q in QUESTIONS if q.type == "multi_hop"]


@pytest.fixture(scope="module")
def root() -> Path:
    root = Path(CORPUS["root"])
    if not root.is_dir():
        pytest.skip(f"{CORPUS['package']} is not installed (apt-get install {CORPUS['package']})")
    return root


@pytest.fixture(scope="module")
def texts(root: Path) -> dict[str, str]:
    """Normalised loader text of every corpus page, by file name (each page loaded once)."""
    loaded = {}
    for rel in CORPUS["files"]:
        path = root / rel
        assert path.is_file(), f"{rel} is listed in corpus.json but missing under {root}"
        loaded[path.name] = normalize("\n".join(d.page_content for d in load_file(path)))
    return loaded


def _groups(q: Question) -> list[list[str]]:
    return [[normalize(a) for a in group] for group in q.answer_keywords]


def test_manifest_lists_25_to_35_html_pages_with_distinct_names():
    assert CORPUS["name"] == "python_docs" and CORPUS["package"] == "python3.11-doc" and CORPUS["license"]
    assert 25 <= len(FILE_NAMES) <= 35
    duplicates = [name for name, n in Counter(FILE_NAMES).items() if n > 1]
    assert not duplicates, f"gold sources are compared by file name; duplicated: {duplicates}"
    assert all(name.endswith(".html") for name in FILE_NAMES)


def test_every_page_loads_and_the_corpus_has_a_moderate_size(texts):
    empty = [name for name, text in texts.items() if len(text) < 1_000]
    assert not empty, f"pages with (almost) no text after loading: {empty}"
    total = sum(len(t) for t in texts.values())
    assert TOTAL_TEXT_RANGE[0] <= total <= TOTAL_TEXT_RANGE[1], total


def test_ids_are_numbered_per_type_without_gaps():
    assert {q.type for q in QUESTIONS} == set(ID_PREFIX)
    for qtype, prefix in ID_PREFIX.items():
        ids = [q.id for q in QUESTIONS if q.type == qtype]
        assert ids == [f"{prefix}{n:02d}" for n in range(1, len(ids) + 1)], qtype


def test_each_half_of_the_split_keeps_the_type_minimums():
    for half_name, half in zip(("calibration", "held-out"), split_by_id(QUESTIONS), strict=False):
        counts = Counter(q.type for q in half)
        for qtype, minimum in MIN_PER_HALF.items():
            assert counts[qtype] >= minimum, f"{half_name} half has {counts[qtype]} {qtype} questions"


def test_gold_sources_are_corpus_files():
    unknown = {(q.id, s) for q in QUESTIONS for s in q.gold_sources if s not in FILE_NAMES}
    assert not unknown, unknown


def test_paraphrases_have_one_source_and_cover_most_pages():
    paraphrases = [q for q in QUESTIONS if q.type == "paraphrase"]
    assert all(len(q.gold_sources) == 1 for q in paraphrases)
    covered = {q.gold_sources[0] for q in paraphrases}
    assert len(covered) >= 0.8 * len(FILE_NAMES), sorted(set(FILE_NAMES) - covered)


@pytest.mark.parametrize("q", QUESTIONS, ids=lambda q: q.id)
def test_question_does_not_contain_its_own_keywords(q: Question):
    question = normalize(q.question)
    leaked = [a for group in _groups(q) for a in group if a in question]
    assert not leaked, leaked


@pytest.mark.parametrize("q", ANSWERABLE, ids=lambda q: q.id)
def test_answerable_keywords_occur_in_the_gold_pages(q: Question, texts):
    assert q.answer_keywords and q.gold_sources
    assert is_correct(q.answer, q.answer_keywords), "the reference answer fails its own keywords"
    gold_text = " ".join(texts[s] for s in q.gold_sources)
    missing = [group for group in _groups(q) if not any(a in gold_text for a in group)]
    assert not missing, f"keyword groups found in none of {q.gold_sources}: {missing}"


@pytest.mark.parametrize("q", MULTI_HOP, ids=lambda q: q.id)
def test_multi_hop_evidence_is_quoted_from_two_pages(q: Question, texts):
    assert len(q.hops) >= 2
    sources = [h.source for h in q.hops]
    assert len(set(sources)) >= 2 and set(sources) == set(q.gold_sources)
    for hop in q.hops:
        assert hop.fact, "each hop states its fact"
        assert normalize(hop.evidence) in texts[hop.source], f"evidence not in {hop.source}: {hop.evidence!r}"


@pytest.mark.parametrize("q", UNANSWERABLE, ids=lambda q: q.id)
def test_unanswerable_questions_have_no_answer_anywhere(q: Question, texts):
    assert q.answer == "" and not q.gold_sources and not q.hops
    betrayed = {a: name for group in _groups(q) for a in group for name, text in texts.items() if a in text}
    assert not betrayed, f"strings that would betray an answer occur in the corpus: {betrayed}"
