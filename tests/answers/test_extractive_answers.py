"""Answers a person can trust: whole sentences, best first, no repeats, contiguous citations, marked spans."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import graphcraft
from graphcraft.chains.answer import generate_answer, renumber_citations, select_sentences
from graphcraft.chains.refine import Strip
from graphcraft.stores.vector import open_store

NOTES = {
    "lodge.md": """# Skerry Lodge

Skerry Lodge stands on the northern cliff above the harbour. A night at the lodge costs 950 crowns, breakfast included.
Guests arrive by the ferry from Holm, which runs twice a day in summer.

## History

The lodge was a lighthouse keeper's house until 1961. The repainting of Skerry Point in 2023, paid by the
harbour trust, cost 310,000 crowns and took four months.
""",
    "ferry.txt": (
        "The Holm ferry carries forty passengers and six cars. In winter it runs once a day, weather permitting.\n"
        "Tickets cost 120 crowns for adults. The crossing takes fifty minutes.\n"
    ),
}


@pytest.fixture(scope="module")
def notes_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notes")
    for name, text in NOTES.items():
        (root / name).write_text(text, encoding="utf-8")
    store = root / "store"
    graphcraft.ingest([root], store=store)
    return store


def strip(text: str, score: float, chunk: str = "c1", start: int = -1) -> Strip:
    return Strip(
        text=text,
        score=score,
        source=f"{chunk}.md",
        chunk_id=chunk,
        page=None,
        position=0,
        start=start,
        end=start + len(text) if start >= 0 else -1,
    )


def test_the_sentence_holding_the_fact_is_quoted_whole_and_cited(notes_store: Path) -> None:
    result = graphcraft.ask("How much does one night at Skerry Lodge cost?", store=notes_store)
    assert not result["trace"]["abstained"]
    assert result["answer"].startswith("Skerry Lodge") or "950 crowns" in result["answer"].split("[")[0]
    assert "A night at the lodge costs 950 crowns, breakfast included." in result["answer"]
    numbers = [s["citation"] for s in result["sources"]]
    assert numbers == list(range(1, len(numbers) + 1))  # contiguous, matching the list
    chunks = {d.metadata["chunk_id"]: d.page_content for d in open_store(notes_store, create=False).documents()}
    for source in result["sources"]:
        assert f"[{source['citation']}]" in result["answer"]
        assert source["text"] == chunks[source["chunk_id"]]  # the whole chunk, not only the quoted strips
        for start, end in source["spans"]:
            assert source["text"][start:end].strip() and source["text"][start:end].split()[-1] in result["answer"]


def test_a_number_with_thousands_separators_is_never_cut(notes_store: Path) -> None:
    result = graphcraft.ask("What did repainting Skerry Point cost?", store=notes_store)
    assert "310,000 crowns" in result["answer"]
    assert "[1]" in result["answer"] and "[2]" not in result["answer"].split("[1]")[0]


def test_overlapping_chunks_do_not_repeat_a_sentence_and_runners_up_must_be_close() -> None:
    best = strip("The weir was removed in 2022.", 0.9, "a")
    same_in_overlap = strip("The weir was removed in 2022.", 0.88, "b")
    close = strip("Salmon returned the year after.", 0.85, "a")
    far = strip("The museum opens at ten.", 0.5, "c")
    chosen = select_sentences("What happened to the weir?", [far, close, same_in_overlap, best])
    assert chosen == [best, close]


def test_a_models_citations_are_renumbered_to_match_its_sources() -> None:
    sources = [{"citation": n, "chunk_id": f"c{n}"} for n in range(1, 5)]
    text, cited = renumber_citations("Rye bread [3], tarts [4] and more rye [3] [3]. Unknown [9].", sources)
    assert text == "Rye bread [1], tarts [2] and more rye [1]. Unknown."
    assert [(s["citation"], s["chunk_id"]) for s in cited] == [(1, "c3"), (2, "c4")]


def test_the_llm_answer_keeps_only_the_sources_it_cites() -> None:
    strips = [strip("Trams run every eight minutes.", 0.8, "t", 0), strip("The bakery opens at six.", 0.7, "b", 0)]
    model = GenericFakeChatModel(messages=iter([AIMessage("The bakery opens at six [2].")]))
    answer = generate_answer("When does the bakery open?", strips, model)
    assert answer.text == "The bakery opens at six [1]."
    assert [(s["citation"], s["chunk_id"]) for s in answer.sources] == [(1, "b")]
    assert answer.usage["llm_calls"] == 1


def test_nothing_relevant_means_an_abstention_without_sources() -> None:
    answer = generate_answer("Anything?", [], None)
    assert answer.abstained and answer.sources == []
