"""Integrity of the public evaluation corpora (benchmarks/data/*/: corpus.json + questions.jsonl).

The questions are graded against Debian's HTML manuals as graphcraft's own loader reads them.
These checks fail when a page is missing or renamed, when a newer package changes a documented
value, or when a keyword, an evidence quote, a gold source or an id is mistyped. Text is compared
after the grader's normalisation (lowercase, whitespace collapsed, markup marks dropped), so a
change in how the loader lays out HTML does not break them while a change in wording does.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import PurePath

import pytest

from graphcraft.eval.corpora import Corpus, available_corpora, load_corpus
from graphcraft.eval.datasets import Question, load_questions, split_by_id
from graphcraft.eval.grading import is_correct, normalize
from graphcraft.ingestion.loaders import load_file

NAMES = available_corpora()
# Minimum counts over a whole set; each half of split_by_id must hold at least 40% of each type.
MINIMUMS = {"paraphrase": 30, "multi_hop": 8, "unanswerable": 8}
ID_PREFIX = {"paraphrase": "p", "multi_hop": "m", "unanswerable": "u"}
PAGE_RANGE = (20, 35)
TEXT_CHARS_RANGE = (250_000, 650_000)


def flat(text: str) -> str:
    """The grader's normalisation, with backticks also dropped (a loader may mark code with them)."""
    return normalize(text.replace("`", ""))


@cache
def corpus(name: str) -> Corpus:
    return load_corpus(name)


@cache
def questions(name: str) -> list[Question]:
    return load_questions(corpus(name).questions_path)


def base_names(name: str) -> list[str]:
    return [PurePath(f).name for f in corpus(name).files]


def cases(*types: str) -> list:
    return [pytest.param(n, q, id=f"{n}-{q.id}") for n in NAMES for q in questions(n) if q.type in types]


@cache
def _page_texts(name: str) -> dict[str, str]:
    c = corpus(name)
    return {PurePath(f).name: flat(" ".join(d.page_content for d in load_file(c.root / f))) for f in c.files}


def page_texts(name: str) -> dict[str, str]:
    """Normalised text of every page of a corpus as graphcraft's loader extracts it (loaded once)."""
    c = corpus(name)
    if not c.root.is_dir():
        pytest.skip(f"documentation package not installed: apt-get install {c.package}")
    assert c.installed(), c.missing_reason()
    return _page_texts(name)


def test_the_public_corpora_are_there() -> None:
    assert {"python_docs", "postgres_docs", "git_docs"} <= set(NAMES)


# --------------------------------------------------------------------------- the corpora


@pytest.mark.parametrize("name", NAMES)
def test_corpus_description_names_a_debian_package_and_distinct_pages(name: str) -> None:
    c = corpus(name)
    assert c.name == c.folder.name == name and c.package
    assert PAGE_RANGE[0] <= len(c.files) <= PAGE_RANGE[1], len(c.files)
    duplicates = [n for n, k in Counter(base_names(name)).items() if k > 1]
    assert not duplicates, f"gold sources are compared by base name; duplicated: {duplicates}"
    assert all(f.endswith(".html") for f in c.files)


@pytest.mark.parametrize("name", NAMES)
def test_every_page_loads_with_text_and_the_corpus_has_a_moderate_size(name: str) -> None:
    texts = page_texts(name)
    empty = [page for page, text in texts.items() if len(text) < 500]
    assert not empty, f"pages with (almost) no text: {empty}"
    assert TEXT_CHARS_RANGE[0] <= sum(len(t) for t in texts.values()) <= TEXT_CHARS_RANGE[1]


@pytest.mark.parametrize("name", NAMES)
def test_every_page_is_a_gold_source_of_some_question(name: str) -> None:
    unused = set(base_names(name)) - {s for q in questions(name) for s in q.gold_sources}
    assert not unused, f"pages no question needs (drop them or ask about them): {sorted(unused)}"


# --------------------------------------------------------------------------- the questions


@pytest.mark.parametrize("name", NAMES)
def test_question_mix_holds_in_both_halves_of_the_split(name: str) -> None:
    qs = questions(name)
    assert {q.type for q in qs} == set(MINIMUMS)
    totals = Counter(q.type for q in qs)
    for type_, minimum in MINIMUMS.items():
        assert totals[type_] >= minimum, (type_, totals[type_])
    for half_name, half in zip(("tuning", "held-out"), split_by_id(qs), strict=True):
        counts = Counter(q.type for q in half)
        for type_ in MINIMUMS:
            assert counts[type_] >= 0.4 * totals[type_], (half_name, type_, counts[type_])


@pytest.mark.parametrize("name", NAMES)
def test_ids_are_numbered_per_type_without_gaps(name: str) -> None:
    for type_, prefix in ID_PREFIX.items():
        typed = [q for q in questions(name) if q.type == type_]
        assert all(q.id.startswith(prefix) for q in typed), type_
        assert sorted(q.number for q in typed) == list(range(1, len(typed) + 1)), type_


@pytest.mark.parametrize(("name", "q"), cases(*MINIMUMS))
def test_keywords_are_absent_from_the_question(name: str, q: Question) -> None:
    question = flat(q.question)
    for group in q.answer_keywords:
        assert group, q.id
        for alt in group:
            assert alt.strip() and flat(alt) not in question, f"{q.id}: the question contains its keyword {alt!r}"


@pytest.mark.parametrize(("name", "q"), cases("paraphrase", "multi_hop"))
def test_answerable_questions_have_listed_sources_and_a_passing_reference_answer(name: str, q: Question) -> None:
    assert q.answer_keywords, q.id
    assert is_correct(q.answer, q.answer_keywords), f"{q.id}: the reference answer fails its own keywords"
    assert q.gold_sources and len(set(q.gold_sources)) == len(q.gold_sources), q.id
    unknown = [s for s in q.gold_sources if s not in base_names(name)]
    assert not unknown, f"{q.id}: gold sources not in corpus.json: {unknown}"


@pytest.mark.parametrize(("name", "q"), cases("paraphrase"))
def test_paraphrase_keywords_occur_in_the_gold_page(name: str, q: Question) -> None:
    texts = page_texts(name)
    text = " ".join(texts[s] for s in q.gold_sources)
    for group in q.answer_keywords:
        assert is_correct(text, [group]), f"{q.id}: none of {group} in {q.gold_sources}"


@pytest.mark.parametrize(("name", "q"), cases("multi_hop"))
def test_multi_hop_evidence_is_quoted_from_two_pages(name: str, q: Question) -> None:
    texts = page_texts(name)
    assert len(q.hops) >= 2 and len({h.source for h in q.hops}) >= 2, f"{q.id}: needs hops in two pages"
    assert {h.source for h in q.hops} == set(q.gold_sources), q.id
    for hop in q.hops:
        assert hop.fact.strip(), q.id
        assert flat(hop.evidence) in texts[hop.source], f"{q.id}: evidence not in {hop.source}: {hop.evidence!r}"
    if not q.computed:
        text = " ".join(texts[s] for s in q.gold_sources)
        for group in q.answer_keywords:
            assert is_correct(text, [group]), f"{q.id}: none of {group} in {q.gold_sources}"


@pytest.mark.parametrize(("name", "q"), cases("unanswerable"))
def test_unanswerable_questions_have_no_answer_anywhere_in_the_corpus(name: str, q: Question) -> None:
    texts = page_texts(name)
    assert q.answer == "" and q.gold_sources == [] and q.hops == [], q.id
    assert q.note.strip(), f"{q.id}: say what the pages do state nearby"
    for group in q.answer_keywords:
        for alt in group:
            found = [page for page, text in texts.items() if flat(alt) in text]
            assert not found, f"{q.id}: {alt!r} occurs in {found}"
