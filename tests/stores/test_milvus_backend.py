"""The Milvus vector backend (real Milvus Lite, real MiniLM) against FAISS on the same files.

Parity (ingest, incremental re-ingest, removal: same top-k ids and scores), CRAG and hybrid
retrieval on a Milvus store, the mismatched-backend and unreachable-server errors, and crashes
between the generation commit and the Milvus update, one each way, with a real SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from graphcraft import api
from graphcraft.config import Settings, get_settings, reset_settings_cache
from graphcraft.errors import StoreError
from graphcraft.graphs import crag
from graphcraft.retrievers import make_retriever
from graphcraft.stores.generations import read_generation
from graphcraft.stores.milvus_index import release, resolve_uri, row_key
from graphcraft.stores.milvus_store import MilvusChunkStore
from graphcraft.stores.vector import ChunkStore, open_store
from graphcraft.testing import final_state, free_port

CORPUS = {
    "orla_bridge.md": "# The Orla Bridge\n\nThe Orla Bridge was designed by the engineer Ada Lind and opened in 1871. "
    "It crosses the Orla river on three stone arches.\n\n## Maintenance\n\nHeavy lorries have been banned from the "
    "bridge since 2004 because the middle arch showed cracks after a flood.\n",
    "bakery.txt": "Marten's Bakery on Canal Street sells rye bread, cinnamon rolls and fruit tarts. The bakery opens "
    "at six in the morning. Its sourdough starter is said to be forty years old. On Sundays it is closed.\n",
    "trams.md": "# Trams of Maren\n\nMaren's tram network has four lines. Line 2 runs from the central station to "
    "the harbour every eight minutes. The oldest tram still in service was built in 1962.\n",
}
QUESTIONS = [
    "Who designed the Orla Bridge?",
    "When does the bakery open?",
    "How often does the tram to the harbour run?",
    "Why are lorries banned?",
]
SCRIPT = """
import os, signal, sys
from pathlib import Path
from graphcraft.config import Settings
from graphcraft.stores.milvus_store import MilvusChunkStore
from graphcraft.stores.vector import open_store
store_dir, action = Path(sys.argv[1]), sys.argv[2]
kill = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if action == "before_commit":  # rows written to Milvus, then killed before the generation is committed
    MilvusChunkStore.commit = kill
else:  # generation committed, then killed before Milvus is cleaned up and its sync record updated
    MilvusChunkStore._after_swap = kill
from graphcraft.api import ingest, remove
if action == "before_commit":
    ingest([sys.argv[3]], store=store_dir, vector_backend="milvus")
else:
    remove([sys.argv[3]], store=store_dir)
"""


def write_corpus(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def use_backend(monkeypatch: pytest.MonkeyPatch, backend: str) -> Settings:
    """Select the vector backend for the API calls that follow (api.remove reads it from the settings)."""
    monkeypatch.setenv("GRAPHCRAFT_VECTOR_BACKEND", backend)
    reset_settings_cache()
    return Settings(vector_backend=backend)  # type: ignore[arg-type]


def top_k(store: ChunkStore, k: int = 4) -> list[list[tuple[str, float]]]:
    out = []
    for question in QUESTIONS:
        vector = store.embeddings.embed_query(question)
        out.append([(str(doc.id), round(float(score), 5)) for doc, score in store.search_by_vector(vector, k)])
    return out


def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str, target: Path) -> dict[str, ChunkStore]:
    """Apply the same ingest/remove to a FAISS and a Milvus store; both stores reopened afterwards."""
    stores = {}
    for backend in ("faiss", "milvus"):
        settings = use_backend(monkeypatch, backend)
        store_dir = tmp_path / backend
        if action == "ingest":
            api.ingest([target], store=store_dir)
        else:
            api.remove([target], store=store_dir)
        stores[backend] = open_store(store_dir, settings, create=False)
    return stores


def test_milvus_matches_faiss_through_ingest_reingest_and_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a copied file gives chunks with equal scores: both backends must order those ties alike
    corpus = write_corpus(tmp_path / "corpus", {**CORPUS, "trams_copy.md": CORPUS["trams.md"]})
    stores = both(tmp_path, monkeypatch, "ingest", corpus)
    assert len(stores["milvus"]) == len(stores["faiss"]) > 3
    assert top_k(stores["milvus"]) == top_k(stores["faiss"])
    assert stores["milvus"].manifest["vector_backend"] == "milvus"
    assert not any((tmp_path / "milvus").glob("gen-*/index.faiss"))  # the vectors live in Milvus only
    first = str(stores["faiss"].documents()[0].id)
    in_milvus, in_faiss = stores["milvus"].chunk_vector(first), stores["faiss"].chunk_vector(first)
    assert in_milvus is not None and in_faiss is not None and np.allclose(in_milvus, in_faiss)

    (corpus / "bakery.txt").write_text("The bakery was sold in 2020 and now opens at eight.\n", encoding="utf-8")
    stores = both(tmp_path, monkeypatch, "ingest", corpus)
    assert top_k(stores["milvus"]) == top_k(stores["faiss"])
    assert [d.id for d in stores["milvus"].documents()] == [d.id for d in stores["faiss"].documents()]

    stores = both(tmp_path, monkeypatch, "remove", corpus / "trams.md")
    assert top_k(stores["milvus"]) == top_k(stores["faiss"])
    assert not any(str(d.metadata["source"]).endswith("/trams.md") for d in stores["milvus"].documents())

    # Milvus holds the rows of the live generation and of the one it replaced, nothing older
    milvus = stores["milvus"]
    assert isinstance(milvus, MilvusChunkStore)
    parent = read_generation(tmp_path / "milvus" / milvus.manifest["parent"])
    parent_keys = {row_key(row["id"], row["text"]) for row in parent.rows}
    live = set(milvus._chunk_of)  # noqa: SLF001
    assert live <= set(milvus.index.all_keys()) <= live | parent_keys


def test_crag_and_hybrid_retrieval_work_on_a_milvus_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    answers = {}
    for backend in ("faiss", "milvus"):
        use_backend(monkeypatch, backend)
        api.ingest([corpus], store=tmp_path / backend)
        settings = get_settings(store=tmp_path / backend, vector_backend=backend)
        state = final_state(crag.build(settings=settings), {"question": "Who designed the Orla Bridge?"})
        answers[backend] = (state["action"], state["answer"], [s["chunk_id"] for s in state["sources"]])
    assert answers["milvus"][0] == "correct" and "Ada Lind" in answers["milvus"][1]
    assert answers["milvus"] == answers["faiss"]

    store = open_store(tmp_path / "milvus", Settings(vector_backend="milvus"), create=False)
    hybrid = make_retriever("hybrid", store, k=3)
    found = hybrid.invoke("sourdough starter forty years")
    assert found and found[0].metadata["source"].endswith("bakery.txt")
    asked = api.ask("When does the bakery open?", store=tmp_path / "milvus", vector_backend="milvus")
    assert "six" in asked["answer"] and asked["sources"][0]["source"].endswith("bakery.txt")


def test_opening_a_store_with_the_other_backend_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"bakery.txt": CORPUS["bakery.txt"]})
    for made, other in (("faiss", "milvus"), ("milvus", "faiss")):
        use_backend(monkeypatch, made)
        api.ingest([corpus], store=tmp_path / made)
        with pytest.raises(StoreError) as caught:
            open_store(tmp_path / made, Settings(vector_backend=other), create=False)  # type: ignore[arg-type]
        message = str(caught.value)
        assert "\n" not in message and f"keeps its vectors in {made}, not {other}" in message
        assert f"GRAPHCRAFT_VECTOR_BACKEND={made}" in message


def test_an_unreachable_milvus_server_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"bakery.txt": CORPUS["bakery.txt"]})
    use_backend(monkeypatch, "milvus")
    monkeypatch.setenv("GRAPHCRAFT_MILVUS_URI", f"http://127.0.0.1:{free_port()}")
    reset_settings_cache()
    with pytest.raises(StoreError) as caught:
        api.ingest([corpus], store=tmp_path / "store")
    message = str(caught.value)
    assert "\n" not in message and "cannot reach Milvus at http://127.0.0.1:" in message
    assert "GRAPHCRAFT_MILVUS_URI" in message
    assert not (tmp_path / "store" / "CURRENT").exists()  # nothing was committed


def run_and_kill(store_dir: Path, action: str, target: Path) -> None:
    """Run an ingest/remove in another process that SIGKILLs itself at the point named by `action`."""
    release(resolve_uri("", store_dir))  # Milvus Lite serves one process: hand the file over
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCRAFT_")}
    env["GRAPHCRAFT_VECTOR_BACKEND"] = "milvus"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(store_dir), action, str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr[-2000:]


def test_a_writer_killed_after_writing_milvus_but_before_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = use_backend(monkeypatch, "milvus")
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    extra = write_corpus(tmp_path / "extra", {"lake.md": "# Lake Vessa\n\nLake Vessa is 62 metres deep.\n"})
    api.ingest([corpus], store=tmp_path / "store")
    before = open_store(tmp_path / "store", settings, create=False)
    assert isinstance(before, MilvusChunkStore)
    rows_before = set(before.index.all_keys())

    run_and_kill(tmp_path / "store", "before_commit", extra)

    after = open_store(tmp_path / "store", settings, create=False)
    assert isinstance(after, MilvusChunkStore)
    orphans = set(after.index.all_keys()) - rows_before
    assert orphans, "the killed writer had written its rows to Milvus"
    hits = after.search_by_vector(after.embeddings.embed_query("How deep is Lake Vessa?"), 10)
    assert hits and not any("lake" in str(doc.metadata["source"]) for doc, _ in hits)
    assert [d.id for d in after.documents()] == [d.id for d in before.documents()]

    (extra / "lake.md").write_text("# Lake Vessa\n\nLake Vessa is 62 metres deep and 14 km long.\n")
    report = api.ingest([extra], store=tmp_path / "store")  # the next writer adds it and sweeps the orphans
    assert report["added"] == 1
    final = open_store(tmp_path / "store", settings, create=False)
    assert isinstance(final, MilvusChunkStore)
    hits = final.search_by_vector(final.embeddings.embed_query("How deep is Lake Vessa?"), 1)
    assert str(hits[0][0].metadata["source"]).endswith("lake.md")
    assert not orphans & set(final.index.all_keys())
    assert set(final.index.all_keys()) == set(final._chunk_of)  # noqa: SLF001


def test_a_writer_killed_after_its_commit_but_before_updating_milvus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = use_backend(monkeypatch, "milvus")
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    api.ingest([corpus], store=tmp_path / "store")
    generation = open_store(tmp_path / "store", settings, create=False).generation

    run_and_kill(tmp_path / "store", "after_swap", corpus / "bakery.txt")

    store = open_store(tmp_path / "store", settings, create=False)
    assert isinstance(store, MilvusChunkStore)
    assert store.generation > generation  # the removal was committed
    assert store.recovered is None  # every row of the committed generation was there
    bakery_rows = set(store.index.all_keys()) - set(store._chunk_of)  # noqa: SLF001
    assert bakery_rows, "the killed writer left the removed file's rows in Milvus"
    hits = store.search_by_vector(store.embeddings.embed_query("When does the bakery open?"), 10)
    assert hits and not any("bakery" in str(doc.metadata["source"]) for doc, _ in hits)

    # Milvus loses the collection (another server, a wiped volume): opening rebuilds it from the chunk texts
    expected = [[d.id for d, _ in store.search_by_vector(store.embeddings.embed_query(q), 3)] for q in QUESTIONS]
    store.index.drop()
    rebuilt = open_store(tmp_path / "store", settings, create=False)
    assert rebuilt.recovered and "re-embedded them" in rebuilt.recovered
    got = [[d.id for d, _ in rebuilt.search_by_vector(rebuilt.embeddings.embed_query(q), 3)] for q in QUESTIONS]
    assert got == expected


def test_a_milvus_lite_file_open_in_another_process_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = use_backend(monkeypatch, "milvus")
    corpus = write_corpus(tmp_path / "corpus", {"bakery.txt": CORPUS["bakery.txt"]})
    api.ingest([corpus], store=tmp_path / "store")
    assert len(open_store(tmp_path / "store", settings, create=False)) > 0  # this process now serves the file
    code = (
        "import sys\nfrom graphcraft.config import Settings\nfrom graphcraft.stores.vector import open_store\n"
        "try:\n    open_store(sys.argv[1], Settings(vector_backend='milvus'), create=False)\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.startswith("MilvusStoreError cannot open the Milvus Lite file"), done.stderr[-2000:]
    assert "another process has it open" in done.stdout and "GRAPHCRAFT_MILVUS_URI" in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1 and "Traceback" not in done.stderr
