"""Access: documents are classified at ingest, and no retrieval path returns a chunk above the caller's clearance.

One real store (MiniLM, FAISS, BM25, spaCy, FalkorDB) holds a public, an internal, a confidential
and a restricted document on the same subject. Every chunk of a level carries that level's token,
so "nothing above the clearance" is checked on the chunks' labels AND on the text that any
retriever returned, any graph answered, and the scripted chat model received.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from graphcraft.config import get_settings
from graphcraft.errors import SettingsError
from graphcraft.guards.access import (
    LEVELS,
    ClassificationRulesError,
    classify_document,
    cleared,
    level_of,
    load_rules,
    rank,
)
from graphcraft.testing import ScriptedChatModel

TOKENS = {"public": "Norrvik", "internal": "TEAMROOM", "confidential": "QUILLFEATHER", "restricted": "BLUEHERON"}
FACTS = {
    "public": ["Halvard Robotics builds the Orion lighthouse in Norrvik.",
               "The Orion lighthouse in Norrvik opens to visitors in May.",
               "Norrvik hosts the Orion visitor centre beside the harbour.",
               "Orion tours in Norrvik start every Saturday at ten."],
    "internal": ["Mira Castell manages the Orion team in the TEAMROOM on floor four.",
                 "The Orion team meets in the TEAMROOM every Tuesday.",
                 "TEAMROOM bookings for Orion go through Mira Castell."],
    "confidential": ["The Orion budget under code QUILLFEATHER is 4.2 million euros.",
                     "QUILLFEATHER covers the Orion lens order from Ostrava Glassworks.",
                     "Orion cost overruns in QUILLFEATHER reached nine percent."],
    "restricted": ["Viktor Dran chairs Halvard Robotics and holds the Orion BLUEHERON launch code.",
                   "The BLUEHERON code unlocks the Orion beacon at launch.",
                   "Only Viktor Dran may read BLUEHERON, the Orion launch code."],
}  # fmt: skip
# How each document is marked: a header marking, no marking (default), a folder, a footer marking.
FILES = {
    "public": ("press.md", "PUBLIC\n\n# Orion press release\n\n{body}\n"),
    "internal": ("team.md", "# Orion team notes\n\n{body}\n"),
    "confidential": ("confidential/budget.md", "# Orion budget\n\n{body}\n"),
    "restricted": ("launch.md", "# Orion launch\n\n{body}\n\nRESTRICTED\n"),
}
K = 3


def _write_docs(folder: Path) -> None:
    for level, (name, template) in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(body="\n\n".join(FACTS[level])), encoding="utf-8")


def forbidden(clearance: str) -> list[str]:
    return [TOKENS[level] for level in LEVELS if rank(level) > rank(clearance)]


def leaks(text: str, clearance: str) -> list[str]:
    return [token for token in forbidden(clearance) if token.lower() in text.lower()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embeddings):  # type: ignore[no-untyped-def]
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.vector import open_store

    root = tmp_path_factory.mktemp("access")
    _write_docs(root / "docs")
    settings = get_settings(store=root / "store", chunk_size=120, chunk_overlap=0, top_k=K)
    ingest_paths([root / "docs"], None, settings)
    return {"root": root, "settings": settings, "store": open_store(settings.store, settings, create=False)}


# ---------------------------------------------------------------------- classification


def test_each_document_is_classified_at_ingest_and_every_chunk_carries_it(corpus) -> None:  # type: ignore[no-untyped-def]
    by_source: dict[str, set[str]] = {}
    for doc in corpus["store"].documents():
        by_source.setdefault(Path(doc.metadata["source"]).name, set()).add(doc.metadata["classification"])
    assert by_source == {Path(name).name: {level} for level, (name, _) in FILES.items()}


def test_a_rules_file_overrides_the_built_in_rules_and_the_first_match_wins(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {classification: restricted, pattern: 'launch code', scope: text}\n"
        "  - {classification: public, path_glob: '*/press*'}\n"
        "  - {classification: confidential, pattern: '(?i)^draft'}\n"
    )
    loaded = load_rules(rules)
    assert classify_document("/d/press.md", "PUBLIC\nthe launch code is X", loaded) == "restricted"
    assert classify_document("/d/press.md", "CONFIDENTIAL\nnews", loaded) == "public"  # the file's own rules only
    assert classify_document("/d/a.md", "Draft: plans", loaded) == "confidential"
    assert classify_document("/d/a.md", "RESTRICTED\nplans", loaded) == "internal"  # nothing matched: default
    as_json = tmp_path / "rules.json"
    as_json.write_text(json.dumps([{"classification": "public"}]))
    assert classify_document("/d/a.md", "RESTRICTED", load_rules(as_json)) == "public"


def test_built_in_markings_are_read_from_the_first_and_last_lines_only() -> None:
    body = "\n".join(f"line {i} about the project" for i in range(40))
    assert classify_document("/d/x.md", "CONFIDENTIAL\n" + body) == "confidential"
    assert classify_document("/d/x.md", body + "\nClassification: RESTRICTED") == "restricted"
    assert classify_document("/d/x.md", "INTERNAL USE ONLY\n" + body) == "internal"
    middle = "\n".join(f"line {i}" for i in range(20)) + "\nRESTRICTED\n" + "\n".join(f"l {i}" for i in range(20))
    assert classify_document("/d/x.md", middle) == "internal"  # a word deep in the text is no marking
    assert classify_document("/d/x.md", "The restricted area is closed.") == "internal"  # prose is no marking
    assert classify_document("/srv/docs/confidential/x.md", "hello") == "confidential"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("rules: [{classification: secret}]", "is not one of"),
        ("[{classification: public, pattern: '(unclosed'}]", "not a regular expression"),
        ("[{classification: public, colour: red}]", "unknown keys"),
        ("rules: {a: [", "not valid YAML/JSON"),
        ("[]", "non-empty list"),
    ],
)
def test_a_bad_rules_file_is_a_one_line_error_at_ingest(tmp_path: Path, embeddings, content: str, why: str) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.ingestion.pipeline import ingest_paths

    rules = tmp_path / "rules.yaml"
    rules.write_text(content)
    (tmp_path / "a.md").write_text("hello")
    settings = get_settings(store=tmp_path / "store", classification_rules=rules)
    with pytest.raises(ClassificationRulesError, match=why) as caught:
        ingest_paths([tmp_path / "a.md"], None, settings)
    assert "\n" not in str(caught.value) and str(rules) in str(caught.value)


def test_changed_rules_reclassify_unchanged_files_on_the_next_ingest(tmp_path: Path, embeddings) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.vector import open_store

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("Plans for the harbour.")
    settings = get_settings(store=tmp_path / "store")
    ingest_paths([tmp_path / "docs"], None, settings)
    again = ingest_paths([tmp_path / "docs"], None, settings)
    assert again.skipped == 1  # same content, same rules: nothing to do
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"classification": "restricted", "pattern": "harbour", "scope": "text"}]))
    relabelled = ingest_paths([tmp_path / "docs"], None, get_settings(store=settings.store, classification_rules=rules))
    assert relabelled.skipped == 0 and relabelled.added == 1
    docs = open_store(settings.store, settings, create=False).documents()
    assert [d.metadata["classification"] for d in docs] == ["restricted"]


def test_chunks_without_a_label_count_as_the_default_level(tmp_path: Path, embeddings) -> None:  # type: ignore[no-untyped-def]
    """A store ingested before classification existed: its chunks are internal until re-ingested."""
    from langchain_core.documents import Document

    from graphcraft.ingestion.strips import embed_chunks
    from graphcraft.stores.vector import ChunkStore

    store = ChunkStore(tmp_path, embeddings, embeddings.name, embeddings.dimension)
    docs = [
        Document(page_content=text, metadata={"chunk_id": f"c{i}", "source": "old.md", "strips": [[0, len(text)]]})
        for i, text in enumerate(["An old unlabelled note.", "Another old note."])
    ]
    vectors, strips = embed_chunks(embeddings, [d.page_content for d in docs], [d.metadata["strips"] for d in docs])
    store.replace_file("old.md", "h", docs, vectors, strips)
    assert level_of(docs[0].metadata) == "internal"
    assert len(cleared(store, "public")) == 0 and len(cleared(store, "internal")) == 2
    assert level_of({"classification": "top-secret"}) == "restricted"  # an unknown label fails closed


# ---------------------------------------------------------------------- every retriever, every clearance

KINDS = ["vector", "keyword", "hybrid", "strip", "hierarchical", "collapsed"]
QUERY = "Orion Norrvik TEAMROOM QUILLFEATHER BLUEHERON launch code budget team lighthouse"


def _retriever(kind: str, store: Any) -> Any:
    from graphcraft.retrievers import make_retriever
    from graphcraft.retrievers.hierarchical import HierarchicalRetriever

    if kind == "collapsed":
        return HierarchicalRetriever(store=store, k=K, mode="collapsed")
    return make_retriever(kind, store, K)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("clearance", LEVELS)
def test_no_retriever_returns_a_chunk_above_the_clearance(corpus, kind: str, clearance: str) -> None:  # type: ignore[no-untyped-def]
    view = cleared(corpus["store"], clearance)
    found = _retriever(kind, view).search(QUERY, K)
    assert len(found) == K  # top-k still fills up from the chunks the caller may see
    for doc in found:
        assert not leaks(doc.page_content, clearance), (kind, doc.metadata.get("level"), doc.page_content)
        if doc.metadata.get("level", "chunk") == "chunk":
            assert rank(level_of(doc.metadata)) <= rank(clearance)


def test_the_filter_is_not_vacuous_at_full_clearance(corpus) -> None:  # type: ignore[no-untyped-def]
    for kind in KINDS:
        found = _retriever(kind, cleared(corpus["store"], "restricted")).search("BLUEHERON launch code Viktor Dran", K)
        assert any(TOKENS["restricted"] in d.page_content for d in found), kind


def test_summaries_of_restricted_chunks_stay_hidden(corpus) -> None:  # type: ignore[no-untyped-def]
    """A summary node takes the highest level of what it summarises: public callers see no summary of the launch."""
    from graphcraft.retrievers.hierarchical import HierarchicalRetriever

    everything = HierarchicalRetriever(store=corpus["store"], k=K).index()
    public = HierarchicalRetriever(store=cleared(corpus["store"], "public"), k=K).index()
    hidden = [n for nodes in everything.nodes.values() for n in nodes if TOKENS["restricted"] in n.page_content]
    assert hidden  # the full tree does summarise the launch document
    shown = [n for nodes in public.nodes.values() for n in nodes]
    assert shown and not [n for n in shown if leaks(n.page_content, "public")]


def test_neighbours_fetched_by_id_are_cleared_too(corpus) -> None:  # type: ignore[no-untyped-def]
    """Chains read the store directly (get, chunk_vector, strips): the cleared store has only allowed chunks."""
    store = corpus["store"]
    ids = [d.metadata["chunk_id"] for d in store.documents()]
    view = cleared(store, "internal")
    got = view.get(ids)
    assert {level_of(d.metadata) for d in got} == {"public", "internal"}
    assert all(view.chunk_vector(i) is None for i in ids if i not in {d.metadata["chunk_id"] for d in got})
    assert not view.strip_vectors.keys() - {d.metadata["chunk_id"] for d in got}


def test_a_cleared_store_is_read_only(corpus) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.errors import StoreError

    view = cleared(corpus["store"], "public")
    with pytest.raises(StoreError, match="read-only"):
        view.remove_file(next(iter(view.files)))


def test_crags_external_store_is_cleared(corpus) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.retrievers.external import make_external_search

    settings = get_settings(store=corpus["root"] / "elsewhere", external_store=corpus["settings"].store)
    for clearance in LEVELS:
        search = make_external_search(settings.model_copy(update={"clearance": clearance}))
        assert search is not None
        found = search.search(QUERY, K)
        assert len(found) == K and not [d for d in found if leaks(d.page_content, clearance)]


@pytest.fixture(scope="module")
def multimodal(tmp_path_factory, embeddings):  # type: ignore[no-untyped-def]
    from graphcraft.ingestion.multimodal_pipeline import ingest_multimodal

    root = tmp_path_factory.mktemp("access_mm")
    _write_docs(root / "docs")
    settings = get_settings(store=root / "store", chunk_size=120, chunk_overlap=0, top_k=K)
    ingest_multimodal([root / "docs"], settings=settings)
    return settings


@pytest.mark.parametrize("clearance", LEVELS)
def test_the_multimodal_retriever_searches_cleared_modality_stores(multimodal, clearance: str) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.retrievers.multimodal import MultimodalRetriever, open_modality_stores

    stores = open_modality_stores(multimodal.store, multimodal.model_copy(update={"clearance": clearance}))
    assert {level_of(d.metadata) for d in stores["text"].documents()} == {
        level for level in LEVELS if rank(level) <= rank(clearance)
    }
    found = MultimodalRetriever(stores=stores, k=K).search(QUERY)
    assert len(found) == K and not [d for d in found if leaks(d.page_content, clearance)]


# ---------------------------------------------------------------------- per-run clearance


def test_a_run_may_lower_its_clearance_but_never_raise_it(corpus) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.runtime.context import Context

    ctx = Context(corpus["settings"].model_copy(update={"clearance": "confidential"}), store=corpus["store"])
    lowered = ctx.for_config({"configurable": {"clearance": "public"}})
    assert lowered.settings.clearance == "public"
    assert {level_of(d.metadata) for d in lowered.store.documents()} == {"public"}
    assert {level_of(d.metadata) for d in ctx.store.documents()} == {"public", "internal", "confidential"}
    with pytest.raises(SettingsError, match="only lower") as caught:
        ctx.for_config({"configurable": {"clearance": "restricted"}})
    assert "\n" not in str(caught.value)
    with pytest.raises(SettingsError, match="use one of"):
        ctx.for_config({"configurable": {"clearance": "secret"}})


# ---------------------------------------------------------------------- graphs


def _reply(call: Any) -> str:
    """A grounded answer when the public opening fact is in the prompt (citing its number), else an abstention."""
    cited = re.search(r"\[(\d+)\][^\[]*opens to visitors in May", call.text)
    if cited:
        return f"The Orion lighthouse in Norrvik opens to visitors in May [{cited.group(1)}]."
    return "Not found in the sources."


def _model() -> ScriptedChatModel:
    return ScriptedChatModel(script=_reply)


def _seen(model: ScriptedChatModel) -> str:
    return "\n".join(call.text for call in model.calls)


def _check_run(
    result: dict[str, Any], model: ScriptedChatModel, levels: dict[str, str], clearance: str, answered: bool = True
) -> None:
    """Nothing above `clearance` in the answer, its sources (by label and text) or the model's inputs."""
    assert result["sources"] or not answered, result["answer"]
    for source in result["sources"]:
        assert rank(levels[source["chunk_id"]]) <= rank(clearance), source
        assert not leaks(str(source.get("text", "")), clearance)
    assert not leaks(result["answer"], clearance), result["answer"]
    assert not leaks(_seen(model), clearance)


def _levels(store: Any) -> dict[str, str]:
    return {d.metadata["chunk_id"]: level_of(d.metadata) for d in store.documents()}


QUESTION = "When does the Orion lighthouse open, and what are the Orion launch code and budget?"
LAUNCH = "Which code unlocks the Orion beacon at launch, and who may read it?"  # only the restricted doc says
GRAPH_OPTIONS: dict[str, dict[str, Any]] = {  # local grading: the scripted model answers, rules judge
    "crag": {"evaluator": "local"},
    "self_rag": {"evaluator": "local", "checker": "local"},
    "hierarchical_rag": {},
}


@pytest.mark.parametrize("graph", list(GRAPH_OPTIONS))
@pytest.mark.parametrize("clearance", ["public", "confidential"])
@pytest.mark.parametrize("question", [QUESTION, LAUNCH])
def test_rag_graphs_never_see_or_cite_a_chunk_above_the_runs_clearance(  # type: ignore[no-untyped-def]
    corpus, graph: str, clearance: str, question: str
) -> None:
    import importlib

    module = importlib.import_module(f"graphcraft.graphs.{graph}")
    model = _model()
    compiled = module.build(model=model, settings=corpus["settings"], store=corpus["store"], **GRAPH_OPTIONS[graph])
    result = compiled.invoke({"question": question}, config={"configurable": {"clearance": clearance}})
    _check_run(result, model, _levels(corpus["store"]), clearance, answered=question == QUESTION)


def test_at_full_clearance_the_model_does_see_the_restricted_document(corpus) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.graphs import crag

    model = _model()
    crag.build(model=model, settings=corpus["settings"], store=corpus["store"], evaluator="local").invoke(
        {"question": LAUNCH}
    )
    assert TOKENS["restricted"] in _seen(model)


@pytest.fixture(scope="module")
def entity_graph(corpus, falkor_store):  # type: ignore[no-untyped-def]
    from graphcraft.graph_index.api import build

    falkor_store.clear()
    build(corpus["settings"].store, settings=corpus["settings"], graph_store=falkor_store, chunk_store=corpus["store"])
    return falkor_store


@pytest.mark.parametrize("clearance", LEVELS)
def test_graph_retrieval_walks_only_what_the_clearance_supports(corpus, entity_graph, clearance: str) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.retrievers.graph import GraphRetriever

    view = cleared(corpus["store"], clearance)
    retriever = GraphRetriever(graph_store=entity_graph, chunk_store=view, embeddings=view.embeddings, k=K)
    found = retriever.retrieve("Who chairs Halvard Robotics and what does Viktor Dran hold?")
    texts = [d.page_content for d in found.documents + found.graph_documents]
    texts += [str(p) for p in found.paths] + [s["name"] for s in found.seeds]
    assert found.documents and not [t for t in texts if leaks(t, clearance)]
    names = {s["name"] for s in found.seeds}
    assert ("Viktor Dran" in names) is (clearance == "restricted")  # known only from the restricted document


@pytest.mark.parametrize("clearance", ["public", "internal"])
@pytest.mark.parametrize("question", ["Who chairs Halvard Robotics?", "Give an overview of the main themes."])
def test_graph_rag_local_and_global_answers_stay_within_the_clearance(  # type: ignore[no-untyped-def]
    corpus, entity_graph, clearance: str, question: str
) -> None:
    from graphcraft.graphs.graph_rag import build

    model = _model()
    compiled = build(model=model, settings=corpus["settings"], store=corpus["store"], graph_store=entity_graph)
    result = compiled.invoke({"question": question}, config={"configurable": {"clearance": clearance}})
    _check_run(result, model, _levels(corpus["store"]), clearance, answered=False)  # may abstain: check what it saw
    assert model.calls  # the model was asked (route, map or generate): its inputs were checked


@pytest.mark.parametrize("clearance", ["restricted", "public", "internal"])  # a lower clearance after a higher one
def test_multimodal_rag_answers_stay_within_the_clearance(multimodal, clearance: str) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.graphs.multimodal_rag import build
    from graphcraft.retrievers.multimodal import open_modality_stores

    levels = _levels(open_modality_stores(multimodal.store, multimodal)["text"])
    model = _model()
    result = build(model=model, settings=multimodal).invoke(
        {"question": QUESTION}, config={"configurable": {"clearance": clearance}}
    )
    _check_run(result, model, levels, clearance)


def test_a_first_hierarchical_run_at_a_low_clearance_builds_the_tree_over_the_whole_store(  # type: ignore[no-untyped-def]
    tmp_path: Path, embeddings
) -> None:
    """The tree is shared by every caller: a public caller's run must neither shrink it nor see its hidden nodes."""
    from graphcraft.graphs import hierarchical_rag
    from graphcraft.ingestion.hierarchy import open_hierarchy, tree_of
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.vector import open_store

    _write_docs(tmp_path / "docs")
    settings = get_settings(store=tmp_path / "store", chunk_size=120, chunk_overlap=0, top_k=K)
    ingest_paths([tmp_path / "docs"], None, settings)
    store = open_store(settings.store, settings, create=False)
    model = _model()
    result = hierarchical_rag.build(model=model, settings=settings, store=store).invoke(
        {"question": QUESTION}, config={"configurable": {"clearance": "public"}}
    )
    _check_run(result, model, _levels(store), "public")
    tree = tree_of(open_hierarchy(store, create=False))
    assert {Path(s).name for s in tree["documents"]} == {Path(name).name for name, _ in FILES.values()}
