"""The Python API behind `graphcraft.ingest/ask/...` and the CLI (same results for both)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from graphcraft.config import Settings, get_settings
from graphcraft.graphs import load_graph_module
from graphcraft.runtime.result import result_of


def _settings(store: str | Path | None, **overrides: Any) -> Settings:
    return get_settings(
        store=Path(store) if store else None, **{k: v for k, v in overrides.items() if k in Settings.model_fields}
    )


def ingest(
    paths: list[str | Path] | str | Path,
    store: str | Path | None = None,
    *,
    prune: bool = False,
    multimodal: bool = False,
    on_progress: Callable[[int, int, str], None] | None = None,
    **overrides: Any,
) -> dict:
    """Ingest files/folders; returns {"files", "added", "skipped", "removed", "failed": [{"path", "error"}]}.

    prune=True also removes stored files that no longer exist under the given folders.
    multimodal=True reads PDFs and images by layout, tables, OCR and images into per-modality
    stores (for the multimodal_rag graph), mirrored into the main store; the report adds "warnings".
    """
    from graphcraft.ingestion.pipeline import ingest_paths, remove_paths
    from graphcraft.stores.vector import open_store, write_lock

    if isinstance(paths, (str, Path)):
        paths = [paths]
    settings = _settings(store, **overrides)
    with write_lock(settings.store):  # a second ingest into the same store waits for this one
        if multimodal:
            from graphcraft.ingestion.multimodal_pipeline import ingest_multimodal

            mm_report = ingest_multimodal(paths, settings.store, settings, on_progress=on_progress)
            if prune:
                mm_report.removed += remove_paths(paths, None, settings, missing_only=True).removed
            return mm_report.as_dict()
        chunk_store = open_store(settings.store, settings)
        report = ingest_paths(paths, chunk_store, settings, on_progress=on_progress)
        if prune:
            report.removed += remove_paths(paths, chunk_store, settings, missing_only=True).removed
        result = report.as_dict()
        if report.added or report.removed or "calibration" not in chunk_store.manifest:
            result["calibration"] = _recalibrate(chunk_store)
        return result


def remove(paths: list[str | Path] | str | Path, store: str | Path | None = None) -> dict:
    """Remove files (or every stored file under folders) from a store; returns {"files", "removed"}."""
    from graphcraft.ingestion.pipeline import remove_paths
    from graphcraft.stores.vector import write_lock

    if isinstance(paths, (str, Path)):
        paths = [paths]
    settings = _settings(store)
    with write_lock(settings.store):
        report = remove_paths(paths, None, settings)
        result: dict[str, Any] = {"files": report.files, "removed": report.removed}
        if report.removed:
            from graphcraft.stores.vector import open_store

            result["calibration"] = _recalibrate(open_store(settings.store, settings, create=False))
    return result


def _recalibrate(chunk_store: Any) -> dict:
    """Re-measure the store's evaluator thresholds after its content changed (see ingest/calibration.py)."""
    from graphcraft.ingestion.calibration import recalibrate

    if len(chunk_store) == 0:
        return {}
    cal = recalibrate(chunk_store)
    return {"upper": cal.upper, "lower": cal.lower, "queries": cal.queries, "method": cal.method}


def calibration(store: str | Path | None = None, recompute: bool = False) -> dict:
    """The store's evaluator calibration (thresholds, score distributions), recomputed on request."""
    from graphcraft.errors import EmptyStoreError
    from graphcraft.ingestion.calibration import evaluator_thresholds, recalibrate
    from graphcraft.stores.vector import open_store, write_lock

    settings = _settings(store)
    if not (Path(settings.store) / "CURRENT").exists():
        raise EmptyStoreError(settings.store)
    if recompute:
        with write_lock(settings.store):
            recalibrate(open_store(settings.store, settings, create=False))
    chunk_store = open_store(settings.store, settings, create=False)
    upper, lower, origin = evaluator_thresholds(settings, chunk_store)
    return {
        "store": str(settings.store),
        "upper": upper,
        "lower": lower,
        "origin": origin,
        "calibration": chunk_store.manifest.get("calibration"),
    }


def build_graph(graph: str, model: BaseChatModel | None = None, store: str | Path | None = None, **options: Any) -> Any:
    """A compiled graph by name, configured for `store` (and any Settings field in options)."""
    module = load_graph_module(graph)
    settings = _settings(store, **options)
    extra = {k: v for k, v in options.items() if k not in Settings.model_fields}
    return module.build(model=model, settings=settings, **extra)


def ask(
    question: str,
    graph: str = "crag",
    store: str | Path | None = None,
    model: BaseChatModel | None = None,
    config: dict | None = None,
    **options: Any,
) -> dict:
    """Run a graph on a question; returns {"question", "answer", "sources", "trace"}."""
    compiled = build_graph(graph, model=model, store=store, **options)
    state = compiled.invoke({"question": question}, config=config)  # the trace carries the run's usage
    result = result_of(question, state)
    result["trace"].setdefault("graph", graph)
    return result


def feedback(
    run_id_or_question: str, score: float, store: str | Path | None = None, strategy: str | None = None
) -> dict:
    """Score an earlier answer (0..1); adaptive_rag learns per-strategy quality from it."""
    from graphcraft.memory.feedback import record

    return record(run_id_or_question, score, store=_settings(store).store, strategy=strategy)


def graph_stats(store: str | Path | None = None) -> dict:
    """Counts of the entity graph: {"entities", "relations", "chunks", "communities"}."""
    from graphcraft.graph_index.api import graph_stats as _stats  # provided by the graph RAG package

    return _stats(store=_settings(store).store)
