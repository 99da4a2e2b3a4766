"""Integrity of the postgres_docs evaluation corpus (benchmarks/data/postgres_docs/).

The questions are graded against PostgreSQL 15's HTML documentation as graphcraft's own loader
reads it. These checks fail when a page is missing or renamed, when a newer package changes a
documented default, or when a keyword, an evidence quote, a gold source or an id is mistyped.
Text is compared after normalisation (lowercase, whitespace collapsed, markup marks dropped) so
that changes in how the loader lays out HTML do not break them, while changes in wording do.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import PurePath

import pytest

from graphcraft.eval.corpora import load_corpus
from graphcraft.eval.datasets import Question, load_questions, split_by_id
from graphcraft.eval.grading import is_correct, normalize
from graphcraft.ingest.loaders import load_file

CORPUS = load_corpus("postgres_docs")
QUESTIONS = load_questions(CORPUS.questions_path)
BASE_NAMES = [PurePath(f).name for f in CORPUS.files]

# Minimum counts over the whole set; each half of split_by_id must hold at least half of them.
MINIMUMS = {"paraphrase": 44, "multi_hop": 12, "unanswerable": 12}
ID_PREFIX = {"paraphrase": "p", "multi_hop": "m", "unanswerable": "u"}
PAGE_RANGE = (25, 35)
TEXT_CHARS_RANGE = (300_000, 600_000)


def flat(text: str) -> str:
    """The grader's normalisation, with backticks also dropped (a loader may mark code with them)."""
    return normalize(text.replace("`", ""))


def by_type(*types: str) -> list[Question]:
    return [q for q in QUESTIONS if q.type in types]


def ids(questions: list[Question]) -> list[str]:
    return [q.id for q in questions]


@pytest.fixture(scope="module")
def page_texts() -> dict[str, str]:
    """Normalised text of every corpus page as graphcraft's loader extracts it, by base name."""
    if not CORPUS.root.is_dir():
        pytest.skip(f"documentation package not installed: apt-get install {CORPUS.package}")
    missing = [f for f in CORPUS.files if not (CORPUS.root / f).is_file()]
    assert not missing, CORPUS.missing_reason()
    return {PurePath(f).name: flat(" ".join(d.page_content for d in load_file(CORPUS.root / f))) for f in CORPUS.files}


# --------------------------------------------------------------------------- the corpus


def test_corpus_description_names_a_debian_package_and_distinct_pages():
    assert CORPUS.name == CORPUS.folder.name == "postgres_docs"
    assert CORPUS.package == "postgresql-doc-15"
    assert PAGE_RANGE[0] <= len(CORPUS.files) <= PAGE_RANGE[1], len(CORPUS.files)
    duplicates = [n for n, k in Counter(BASE_NAMES).items() if k > 1]
    assert not duplicates, f"gold sources are compared by base name; duplicated: {duplicates}"
    assert all(f.endswith(".html") for f in CORPUS.files)


def test_every_page_loads_with_text_and_the_corpus_has_a_moderate_size(page_texts):
    empty = [name for name, text in page_texts.items() if len(text) < 500]
    assert not empty, f"pages with (almost) no text: {empty}"
    total = sum(len(t) for t in page_texts.values())
    assert TEXT_CHARS_RANGE[0] <= total <= TEXT_CHARS_RANGE[1], total


def test_every_page_is_a_gold_source_of_some_question():
    unused = set(BASE_NAMES) - {s for q in QUESTIONS for s in q.gold_sources}
    assert not unused, f"pages no question needs (drop them or ask about them): {sorted(unused)}"


# --------------------------------------------------------------------------- the questions


def test_question_mix_holds_in_both_halves_of_the_split():
    assert {q.type for q in QUESTIONS} == set(MINIMUMS)
    for half_name, half in zip(("calibration", "held-out"), split_by_id(QUESTIONS), strict=False):
        counts = Counter(q.type for q in half)
        for type_, minimum in MINIMUMS.items():
            assert counts[type_] >= math.ceil(minimum / 2), (half_name, type_, counts[type_])


def test_ids_are_numbered_per_type_without_gaps():
    for type_, prefix in ID_PREFIX.items():
        questions = by_type(type_)
        assert all(q.id.startswith(prefix) for q in questions), type_
        assert sorted(q.number for q in questions) == list(range(1, len(questions) + 1)), type_


@pytest.mark.parametrize("q", QUESTIONS, ids=ids(QUESTIONS))
def test_keywords_are_lowercase_and_absent_from_the_question(q):
    question = flat(q.question)
    for group in q.answer_keywords:
        assert group, q.id
        for alt in group:
            assert alt.strip() and alt == alt.lower(), f"{q.id}: keyword {alt!r}"
            assert flat(alt) not in question, f"{q.id}: the question contains its keyword {alt!r}"


@pytest.mark.parametrize("q", by_type("paraphrase", "multi_hop"), ids=ids(by_type("paraphrase", "multi_hop")))
def test_answerable_questions_have_listed_sources_and_a_passing_reference_answer(q):
    assert q.answer_keywords, q.id
    assert is_correct(q.answer, q.answer_keywords), f"{q.id}: the reference answer fails its own keywords"
    assert q.gold_sources and len(set(q.gold_sources)) == len(q.gold_sources), q.id
    unknown = [s for s in q.gold_sources if s not in BASE_NAMES]
    assert not unknown, f"{q.id}: gold sources not in corpus.json: {unknown}"


@pytest.mark.parametrize("q", by_type("paraphrase"), ids=ids(by_type("paraphrase")))
def test_paraphrase_keywords_occur_in_the_gold_page(q, page_texts):
    assert not q.hops, q.id
    text = " ".join(page_texts[s] for s in q.gold_sources)
    for group in q.answer_keywords:
        assert is_correct(text, [group]), f"{q.id}: none of {group} in {q.gold_sources}"


@pytest.mark.parametrize("q", by_type("multi_hop"), ids=ids(by_type("multi_hop")))
def test_multi_hop_evidence_is_quoted_from_two_pages(q, page_texts):
    assert len(q.hops) >= 2 and len({h.source for h in q.hops}) >= 2, f"{q.id}: needs hops in two pages"
    assert {h.source for h in q.hops} == set(q.gold_sources), q.id
    for hop in q.hops:
        assert hop.fact.strip(), q.id
        assert flat(hop.evidence) in page_texts[hop.source], f"{q.id}: evidence not in {hop.source}: {hop.evidence!r}"
    if not q.computed:
        text = " ".join(page_texts[s] for s in q.gold_sources)
        for group in q.answer_keywords:
            assert is_correct(text, [group]), f"{q.id}: none of {group} in {q.gold_sources}"


@pytest.mark.parametrize("q", by_type("unanswerable"), ids=ids(by_type("unanswerable")))
def test_unanswerable_questions_have_no_answer_anywhere_in_the_corpus(q, page_texts):
    assert q.answer == "" and q.gold_sources == [] and q.hops == [], q.id
    assert q.note.strip(), f"{q.id}: say what the pages do state nearby"
    for group in q.answer_keywords:
        for alt in group:
            found = [name for name, text in page_texts.items() if flat(alt) in text]
            assert not found, f"{q.id}: {alt!r} occurs in {found}"
