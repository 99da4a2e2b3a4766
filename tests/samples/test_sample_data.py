"""Validate the hand-written sample data in samples/.

The corpus, the offline "web" in samples/external/ and samples/questions.jsonl are used by the
README demo, the tests, the notebooks and the benchmarks. A broken edit (a renamed file, a
changed number in a document, a typo in a keyword) silently turns a gold answer into a wrong
one; these checks catch that. The keyword semantics tested here are the ones documented in
samples/README.md.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest

from graphcraft.eval.grading import is_correct, normalize

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CORPUS = SAMPLES / "corpus"
EXTERNAL = SAMPLES / "external"
QUESTIONS = SAMPLES / "questions.jsonl"

TYPES = {"single", "paraphrase", "multi_hop", "overview", "unanswerable", "external", "no_retrieval"}
REQUIRED_KEYS = {"id", "question", "type", "answer", "answer_keywords", "gold_sources", "hops"}
# Inclusive ranges per type: the mix the benchmarks and evaluation reports rely on.
TYPE_RANGES = {
    "single": (12, 18),
    "paraphrase": (12, 18),
    "multi_hop": (10, 15),
    "overview": (5, 8),
    "unanswerable": (8, 13),
    "external": (4, 7),
    "no_retrieval": (3, 6),
}
CORPUS_TYPES = {"single", "paraphrase", "multi_hop", "overview"}


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page (script and style dropped, entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in {"script", "style"}:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


@cache
def document_text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".html":
        extractor = _TextExtractor()
        extractor.feed(raw)
        raw = " ".join(extractor.parts)
    return normalize(raw)


def keyword_groups(question: dict) -> list[list[str]]:
    """Groups of alternatives; a bare string is shorthand for a one-element group."""
    return [[g] if isinstance(g, str) else list(g) for g in question["answer_keywords"]]


def group_matches(text: str, group: list[str]) -> bool:
    return is_correct(text, [group])


def answer_matches(text: str, groups: list[list[str]]) -> bool:
    """The grading rule (graphcraft.eval.grading.is_correct): every group needs one alternative in the text."""
    return is_correct(text, groups)


def _files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}


CORPUS_FILES = _files(CORPUS)
EXTERNAL_FILES = _files(EXTERNAL)


def _load_questions() -> list[dict]:
    rows = []
    for number, line in enumerate(QUESTIONS.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"questions.jsonl line {number} is not valid JSON: {exc}")
    return rows


QUESTIONS_LIST = _load_questions()


def _by_type(*types: str) -> list[dict]:
    return [q for q in QUESTIONS_LIST if q.get("type") in types]


def _ids(questions: list[dict]) -> list[str]:
    return [q["id"] for q in questions]


# --------------------------------------------------------------------------- documents


def test_corpus_has_varied_formats_and_sizes():
    assert 12 <= len(CORPUS_FILES) <= 16, sorted(CORPUS_FILES)
    suffixes = Counter(p.suffix for p in CORPUS_FILES.values())
    assert set(suffixes) <= {".md", ".txt", ".html"}, suffixes
    assert suffixes[".html"] == 2, suffixes
    assert suffixes[".md"] + suffixes[".txt"] >= 10, suffixes
    for name, path in CORPUS_FILES.items():
        words = len(document_text(path).split())
        assert 400 <= words <= 1500, f"{name}: {words} words"


def test_markdown_documents_have_sections_and_some_tables():
    markdown = [p for p in CORPUS_FILES.values() if p.suffix == ".md"]
    for path in markdown:
        text = path.read_text(encoding="utf-8")
        assert re.search(r"^# ", text, re.M), f"{path.name} has no title heading"
        assert len(re.findall(r"^#{2,3} ", text, re.M)) >= 3, f"{path.name} has too few sections"
    with_tables = [p for p in markdown if re.search(r"^\|[ :-]*-{3}", p.read_text(encoding="utf-8"), re.M)]
    assert len(with_tables) >= 5


def test_duplicate_entity_mentions_exist_for_entity_resolution():
    corpus = " ".join(document_text(p) for p in CORPUS_FILES.values())
    raw = " ".join(p.read_text(encoding="utf-8") for p in CORPUS_FILES.values())
    for surface in [
        "halvard robotics inc.",
        "halvard robotics",
        "essel institute for freshwater science",
        "eifs",
        "lindqvar metropolitan transit",
        "norrbeck & sons canning company",
        "norrbeck works",
        "tobias renwick",
        "t. renwick",
        "amara quist",
        "yusra vendeland",
        "y. vendeland",
        "hallström",
        "hallstrom",
    ]:
        assert surface in corpus, surface
    # Upper-case product branding and the LMT acronym are case variants a resolver must merge.
    assert "HALVARD" in raw and re.search(r"\bLMT\b", raw)


def test_external_documents_are_separate_from_the_corpus():
    assert 3 <= len(EXTERNAL_FILES) <= 4, sorted(EXTERNAL_FILES)
    assert not set(EXTERNAL_FILES) & set(CORPUS_FILES)
    corpus_texts = {document_text(p) for p in CORPUS_FILES.values()}
    for name, path in EXTERNAL_FILES.items():
        text = document_text(path)
        assert 100 <= len(text.split()) <= 600, name
        assert text not in corpus_texts, name


# --------------------------------------------------------------------------- questions schema


def test_questions_schema():
    assert 60 <= len(QUESTIONS_LIST) <= 80
    for q in QUESTIONS_LIST:
        assert REQUIRED_KEYS <= set(q), (q.get("id"), REQUIRED_KEYS - set(q))
        assert q["type"] in TYPES, q["id"]
        assert isinstance(q["question"], str) and len(q["question"].split()) >= 3, q["id"]
        assert isinstance(q["answer"], str) and q["answer"].strip(), q["id"]
        assert isinstance(q["gold_sources"], list) and all(isinstance(s, str) for s in q["gold_sources"]), q["id"]
        assert len(set(q["gold_sources"])) == len(q["gold_sources"]), q["id"]
        assert isinstance(q["hops"], list), q["id"]
        for group in q["answer_keywords"]:
            alts = [group] if isinstance(group, str) else group
            assert isinstance(alts, list) and alts, q["id"]
            for alt in alts:
                assert isinstance(alt, str) and alt.strip(), q["id"]
                assert alt == alt.lower(), f"{q['id']}: keyword {alt!r} must be lowercase"


def test_ids_are_unique():
    counts = Counter(_ids(QUESTIONS_LIST))
    assert not [i for i, n in counts.items() if n > 1]


def test_type_mix():
    counts = Counter(q["type"] for q in QUESTIONS_LIST)
    for type_, (low, high) in TYPE_RANGES.items():
        assert low <= counts[type_] <= high, (type_, counts[type_])


def test_gold_answers_satisfy_their_own_keywords():
    """The reference answer must pass the grader; otherwise the keywords or the answer are wrong."""
    for q in QUESTIONS_LIST:
        assert answer_matches(q["answer"], keyword_groups(q)), q["id"]


def test_questions_do_not_give_away_their_answer():
    for q in _by_type(*(TYPES - {"unanswerable", "no_retrieval"})):
        groups = keyword_groups(q)
        assert not answer_matches(q["question"], groups), f"{q['id']} contains its own answer"


# --------------------------------------------------------------------------- gold sources


@pytest.mark.parametrize("q", _by_type(*CORPUS_TYPES), ids=_ids(_by_type(*CORPUS_TYPES)))
def test_corpus_gold_sources_exist(q):
    assert q["gold_sources"], q["id"]
    missing = [s for s in q["gold_sources"] if s not in CORPUS_FILES]
    assert not missing, f"{q['id']}: not in samples/corpus/: {missing}"


@pytest.mark.parametrize("q", _by_type("single", "paraphrase"), ids=_ids(_by_type("single", "paraphrase")))
def test_single_fact_keywords_occur_in_every_gold_source(q):
    for source in q["gold_sources"]:
        text = document_text(CORPUS_FILES[source])
        for group in keyword_groups(q):
            assert group_matches(text, group), f"{q['id']}: none of {group} in {source}"
    assert not q["hops"], q["id"]


@pytest.mark.parametrize("q", _by_type("multi_hop"), ids=_ids(_by_type("multi_hop")))
def test_multi_hop_chains_are_grounded_in_two_documents(q):
    assert len(q["gold_sources"]) >= 2, q["id"]
    hops = q["hops"]
    assert len(hops) >= 2, q["id"]
    assert len({h["source"] for h in hops}) >= 2, f"{q['id']}: all hops come from one document"
    for hop in hops:
        assert hop["fact"].strip(), q["id"]
        assert hop["source"] in q["gold_sources"], (q["id"], hop["source"])
        text = document_text(CORPUS_FILES[hop["source"]])
        assert normalize(hop["evidence"]) in text, (
            f"{q['id']}: evidence not found in {hop['source']}: {hop['evidence']!r}"
        )
    if not q.get("computed", False):
        union = " ".join(document_text(CORPUS_FILES[s]) for s in q["gold_sources"])
        for group in keyword_groups(q):
            assert group_matches(union, group), f"{q['id']}: none of {group} in its gold sources"


@pytest.mark.parametrize("q", _by_type("overview"), ids=_ids(_by_type("overview")))
def test_overview_keywords_occur_in_gold_sources(q):
    union = " ".join(document_text(CORPUS_FILES[s]) for s in q["gold_sources"])
    for group in keyword_groups(q):
        assert group_matches(union, group), f"{q['id']}: none of {group} in its gold sources"


@pytest.mark.parametrize("q", _by_type("external"), ids=_ids(_by_type("external")))
def test_external_questions_need_the_external_documents(q):
    assert q["gold_sources"], q["id"]
    for source in q["gold_sources"]:
        assert source in EXTERNAL_FILES, f"{q['id']}: {source} not in samples/external/"
        text = document_text(EXTERNAL_FILES[source])
        for group in keyword_groups(q):
            assert group_matches(text, group), f"{q['id']}: none of {group} in {source}"
    corpus = " ".join(document_text(p) for p in CORPUS_FILES.values())
    assert not answer_matches(corpus, keyword_groups(q)), f"{q['id']}: the corpus already holds the answer"


@pytest.mark.parametrize("q", _by_type("unanswerable"), ids=_ids(_by_type("unanswerable")))
def test_unanswerable_questions_are_near_misses_without_sources(q):
    assert q["gold_sources"] == [] and q["answer_keywords"] == [] and q["hops"] == [], q["id"]
    corpus = " ".join(document_text(p) for p in CORPUS_FILES.values())
    names = re.findall(r"(?<!^)\b[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z0-9]+)*", q["question"])
    assert any(n.lower() in corpus for n in names), f"{q['id']}: shares no named entity with the corpus"


@pytest.mark.parametrize("q", _by_type("no_retrieval"), ids=_ids(_by_type("no_retrieval")))
def test_no_retrieval_questions_have_no_sources(q):
    assert q["gold_sources"] == [] and q["hops"] == [] and q["answer_keywords"], q["id"]


# --------------------------------------------------------------------------- the grading rule itself


def test_grading_rule_requires_every_group_and_any_alternative():
    groups = [["1902"], ["polytechnic", "skarre school"]]
    assert answer_matches("Lindqvar Polytechnic, founded in 1902.", groups)
    assert answer_matches("The Skarre School of Navigation opened in 1902", groups)
    assert not answer_matches("It was founded in 1902.", groups)
    assert not answer_matches("Lindqvar Polytechnic", groups)
