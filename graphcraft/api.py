"""The Python API: ingest, ask (run any graph), stream (the same run, event by event), calibration,
hierarchy, feedback, graph counts.

The `graphcraft` command line is a thin layer over these functions, so a script and a shell
get the same results and the same errors. Settings are merged in one place
(`graphcraft.config.settings_from`, validated like GRAPHCRAFT_* variables); a value Settings
refuses becomes a one-line SettingsError.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from graphcraft.config import Settings, settings_from
from graphcraft.errors import GraphcraftError
from graphcraft.graphs import load_graph_module
from graphcraft.runtime.result import result_of

APPROVAL_OPTIONS = frozenset({"approve_plan", "approve_tools", "approve_final"})
"""Graph options that make a run pause for a person (human in the loop)."""


def settings_for(store: str | Path | None = None, settings: Settings | None = None, **options: Any) -> Settings:
    """`settings` (default: the environment's) with `store` and any Settings field among `options` applied.

    Options that are not Settings fields, and None values, are left out, so callers can pass their
    whole option set. A refused value is a SettingsError rather than pydantic's multi-line report.
    """
    fields = {k: v for k, v in options.items() if v is not None}
    if store is not None:
        fields["store"] = Path(store)
    return settings_from(settings, fields)


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

    paths = _as_list(paths)
    settings = settings_for(store, **overrides)
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
    from graphcraft.stores.vector import open_store, write_lock

    settings = settings_for(store)
    with write_lock(settings.store):
        report = remove_paths(_as_list(paths), None, settings)
        result: dict[str, Any] = {"files": report.files, "removed": report.removed}
        if report.removed:
            result["calibration"] = _recalibrate(open_store(settings.store, settings, create=False))
    return result


def _as_list(paths: list[str | Path] | str | Path) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _recalibrate(chunk_store: Any) -> dict:
    """Re-measure the store's evaluator thresholds after its content changed (see ingestion/calibration.py)."""
    from graphcraft.ingestion.calibration import recalibrate

    if len(chunk_store) == 0:
        return {}
    cal = recalibrate(chunk_store)
    return {"upper": cal.upper, "lower": cal.lower, "queries": cal.queries, "method": cal.method}


def calibration(store: str | Path | None = None, recompute: bool = False) -> dict:
    """The store's evaluator calibration (thresholds, score distributions), recomputed on request."""
    from graphcraft.errors import EmptyStoreError
    from graphcraft.ingestion.calibration import evaluator_thresholds, recalibrate
    from graphcraft.stores.generations import was_ingested
    from graphcraft.stores.vector import open_store, write_lock

    settings = settings_for(store)
    if not was_ingested(settings.store):
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


def hierarchy(
    store: str | Path | None = None,
    *,
    model: BaseChatModel | None = None,
    extractive: bool = False,
    clusters: bool = True,
) -> dict:
    """Build or update the summary hierarchy (documents > sections > chunks) that hierarchical_rag reads.

    Summaries are written by the chat model (``model``, else the configured one) unless
    ``extractive`` asks for extractive ones; ``clusters`` adds RAPTOR-style summaries across
    documents. Returns the build report (counts, "usage").
    """
    from dataclasses import asdict

    from graphcraft.ingestion.hierarchy import build_hierarchy
    from graphcraft.models import resolve_chat_model
    from graphcraft.runtime.context import Context

    settings = settings_for(store)
    chunk_store = Context(settings).store  # EmptyStoreError for a store nothing was ingested into
    chat = None if extractive else resolve_chat_model(model, settings)
    return asdict(build_hierarchy(chunk_store, settings, chat, clusters=clusters))


def graphs() -> dict[str, str]:
    """{name: one-line description} of every graph `ask` can run."""
    from graphcraft.graphs import available_graphs

    return available_graphs()


def build_graph(
    graph: str,
    model: BaseChatModel | None = None,
    store: str | Path | None = None,
    *,
    settings: Settings | None = None,
    **options: Any,
) -> Any:
    """A compiled graph by name, configured for `store`.

    options: Settings fields (top_k, max_llm_calls, chat_model ...; applied to the graph's settings
    like GRAPHCRAFT_* variables) and the graph's build options (evaluator, workspace, agents ...).
    Options the graph's build() does not name are left out, so one set of options serves every graph.
    """
    module = load_graph_module(graph)
    return _compile(module, model, settings_for(store, settings, **options), options)


def ask(
    question: str,
    graph: str = "crag",
    store: str | Path | None = None,
    model: BaseChatModel | None = None,
    config: RunnableConfig | None = None,
    *,
    settings: Settings | None = None,
    thread_id: str | None = None,
    user_id: str | None = None,
    **options: Any,
) -> dict:
    """Run any graph (RAG, reasoning or agent) on a question or task.

    Returns {"question", "answer", "sources", "trace"} (the trace names the graph and its usage).
    options: Settings fields and the graph's build options, as for `build_graph`.
    config: a LangGraph config for this run only; its ``configurable`` may override settings and the
    graph's own options per run (e.g. {"configurable": {"max_llm_calls": 4}}).
    thread_id: make the run a conversation turn. Its state is kept by a checkpointer (the
    ``checkpointer`` option, else SQLite in the store directory, closed after the run) and the next
    run on the same thread continues it; with GRAPHCRAFT_POSTGRES_URI set the checkpointer is PostgreSQL,
    and a run whose process died is continued by `resume(graph, thread_id)`. user_id: whose long-term
    memory a graph with one uses.

    Human in the loop: with approve_plan (planning, plan_execute), approve_tools (tool_agent: tool
    names, or "sensitive" for write_file and python) or approve_final (supervisor), a run pauses where a
    person decides. It then returns the ask shape with an empty answer, trace.action "interrupted", and
    {"interrupt": <plain-JSON payload, "kind" plan | tool_call | final>, "thread_id": ...} (a thread
    id is made when none was given); `resume(graph, thread_id, decision)` continues it.

    Audit: when the run's store directory exists (RAG graphs' store; an agent graph's configured
    store) and the ``audit`` setting is on (default), the run is appended to ``<store>/audit.jsonl``
    (graphcraft/guards/audit.py; the question only as its sha256). An entry that cannot be written
    fails the call with a one-line AuditError: an audit trail that silently skips runs is worthless.
    """
    run = _plan_run(graph, store, config, settings, thread_id, user_id, options)
    with _compiled_for(run, model) as compiled:
        state = compiled.invoke({"question": question}, config=run.config)
    return _finish_run(run, question, state)


def resume(
    graph: str,
    thread_id: str,
    decision: Any = None,
    store: str | Path | None = None,
    model: BaseChatModel | None = None,
    config: RunnableConfig | None = None,
    *,
    settings: Settings | None = None,
    user_id: str | None = None,
    **options: Any,
) -> dict:
    """Continue the run on `thread_id` from its last checkpoint; returns what `ask` returns.

    decision=None continues a run whose process stopped midway (a crash, a kill, a deploy): the
    steps already checkpointed are not run again. A run paused for approval is continued with the
    person's decision, sent as ``Command(resume=decision)``: "approve", "reject: <reason>" or
    {"action": "edit", "value": <edited plan / tool arguments / answer>} (graphcraft/chains/approval.py).
    Give the same store, model, settings and options as the run was started with (the checkpointer
    is chosen the same way: GRAPHCRAFT_POSTGRES_URI, else SQLite in the store directory). A thread
    with nothing to continue, or a decision where none is awaited (or none where one is), is a
    one-line ResumeError.
    """
    from langgraph.types import Command

    from graphcraft.chains.approval import parse_decision

    if decision is not None:
        parse_decision(decision)  # a malformed decision fails here, before the graph is touched
    run = _plan_run(graph, store, config, settings, thread_id, user_id, options)
    with _compiled_for(run, model) as compiled:
        snapshot = compiled.get_state(run.config)
        _check_resumable(graph, thread_id, snapshot, decision)
        state = compiled.invoke(None if decision is None else Command(resume=decision), config=run.config)
    return _finish_run(run, str(snapshot.values.get("question", "")), state)


class ResumeError(GraphcraftError):
    """A thread that cannot be resumed the way it was asked to."""


def _check_resumable(graph: str, thread_id: str, snapshot: Any, decision: Any) -> None:
    """One-line errors for a resume that cannot work: nothing to continue, or the wrong kind of resume."""
    if not snapshot.next:
        raise ResumeError(f"thread {thread_id!r} has no paused or unfinished {graph} run to resume")
    waiting = bool(snapshot.interrupts)
    if waiting and decision is None:
        kind = snapshot.interrupts[0].value.get("kind") if isinstance(snapshot.interrupts[0].value, dict) else None
        raise ResumeError(f"thread {thread_id!r} is waiting for a decision ({kind}): pass approve, edit or reject")
    if not waiting and decision is not None:
        raise ResumeError(f"thread {thread_id!r} is not waiting for a decision: resume it without one")


def stream(
    question: str,
    graph: str = "crag",
    store: str | Path | None = None,
    model: BaseChatModel | None = None,
    config: RunnableConfig | None = None,
    *,
    settings: Settings | None = None,
    thread_id: str | None = None,
    user_id: str | None = None,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """`ask`, yielding the run's progress as it happens: for a live display or a server's event stream.

    Events, in the order the graph produces them:
    ``{"type": "node", "node": name, "update": [keys the node wrote]}`` when a node finishes,
    ``{"type": "token", "node": name, "text": chunk}`` for each piece of a model reply (one piece
    per reply when the model does not stream), and last ``{"type": "result", "result": ...}``,
    the dict `ask` returns for the same run, audited the same way. Arguments are those of `ask`;
    a bad graph name or option fails here, at the call, not at the first event.
    """
    run = _plan_run(graph, store, config, settings, thread_id, user_id, options)
    return _stream_run(run, question, model)


@dataclass(frozen=True)
class _Run:
    """What `ask` and `stream` decide before a graph runs: the graph's module, settings and run config."""

    graph: str
    module: ModuleType
    settings: Settings
    config: RunnableConfig | None
    thread_id: str | None
    user_id: str | None
    options: Mapping[str, Any]


def _plan_run(
    graph: str,
    store: str | Path | None,
    config: RunnableConfig | None,
    settings: Settings | None,
    thread_id: str | None,
    user_id: str | None,
    options: Mapping[str, Any],
) -> _Run:
    """Validate a run's arguments (one-line errors) and merge its settings, before anything is opened."""
    module = load_graph_module(graph)
    if thread_id and "checkpointer" not in _build_parameters(module):
        raise GraphcraftError(f"graph {graph!r} does not keep conversation threads")
    requested = {**options, **((config or {}).get("configurable") or {})}
    if not thread_id and any(requested.get(k) for k in APPROVAL_OPTIONS & _build_parameters(module)):
        thread_id = uuid.uuid4().hex  # a run that may pause for a person must be resumable
    run_settings = settings_for(store, settings, **options)
    if run_settings.spend_limit_usd and Path(run_settings.store).is_dir():  # the audit trail is the spend ledger
        from graphcraft.eval.spend import check_spend_limit

        check_spend_limit(run_settings.store, user_id, run_settings.spend_limit_usd)
    run_config = _with_configurable(config, thread_id=thread_id, user_id=user_id)
    return _Run(graph, module, run_settings, run_config, thread_id, user_id, dict(options))


@contextmanager
def _compiled_for(run: _Run, model: BaseChatModel | None) -> Iterator[Any]:
    """The run's compiled graph; a thread's checkpointer (`open_checkpointer`: PostgreSQL with
    GRAPHCRAFT_POSTGRES_URI, else SQLite in the store) is closed after the run, even on error."""
    options = run.options
    with ExitStack() as resources:
        if run.thread_id and options.get("checkpointer") is None:
            from graphcraft.memory.checkpoints import open_checkpointer

            options = {**options, "checkpointer": resources.enter_context(open_checkpointer(settings=run.settings))}
        yield _compile(run.module, model, run.settings, options)


def _finish_run(run: _Run, question: str, state: Mapping[str, Any]) -> dict:
    """The `ask` shape from a run's final state, appended to the store's audit trail (see `ask`);
    for a run paused at an interrupt, the ask shape with the interrupt and thread (not audited yet)."""
    if state.get("__interrupt__"):
        return _paused_result(run, question, state["__interrupt__"])
    result = result_of(question, state)
    result["trace"].setdefault("graph", run.graph)
    if getattr(run.settings, "audit", True) and Path(run.settings.store).is_dir():
        from graphcraft.guards.audit import append_run

        append_run(run.settings.store, question, result, user_id=run.user_id)  # AuditError: the call fails
    return result


def _paused_result(run: _Run, question: str, interrupts: Any) -> dict:
    """A run waiting for a person: the ask shape, plus the interrupt's payload and the thread to resume."""
    first = interrupts[0]
    return {
        "question": question,
        "answer": "",
        "sources": [],
        "trace": {"graph": run.graph, "action": "interrupted", "stop_reason": None},
        "interrupt": first.value,
        "thread_id": run.thread_id,
    }


def _stream_run(run: _Run, question: str, model: BaseChatModel | None) -> Iterator[dict[str, Any]]:
    """Run the graph with LangGraph's "updates" and "messages" streams as events, then the result.

    The "values" stream is read too, as `invoke` does: its last value is the final state (the
    graph's output schema), so the result is built from exactly what `ask` would have received.
    """
    state: Mapping[str, Any] = {}
    paused: Any = None
    with _compiled_for(run, model) as compiled:
        modes = ["updates", "messages", "values"]
        for mode, chunk in compiled.stream({"question": question}, config=run.config, stream_mode=modes):
            if mode == "values":
                state = chunk
            elif mode == "updates":
                paused = chunk.get("__interrupt__") or paused  # a pause for a person: the result carries it
                yield from _node_events(chunk)
            elif (event := _token_event(chunk)) is not None:
                yield event
    yield {"type": "result", "result": _finish_run(run, question, {**state, "__interrupt__": paused})}


def _node_events(chunk: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One event per node in an "updates" chunk: its name and the channels it wrote (not their values,
    which may be whole documents)."""
    for node, update in chunk.items():
        if node.startswith("__"):  # LangGraph's own entries (__interrupt__), not a node
            continue
        written = sorted(update) if isinstance(update, Mapping) else []
        yield {"type": "node", "node": node, "update": written}


def _token_event(chunk: tuple[Any, Mapping[str, Any]]) -> dict[str, Any] | None:
    """A "messages" chunk as a token event, or None when it is not model text.

    LangGraph also reports messages a node put in its state (a question, a tool's output); only
    the model's own words (AI messages and their chunks) with text are tokens. Tool-call chunks
    carry no text and are left out.
    """
    from langchain_core.messages import AIMessage

    from graphcraft.runtime.tokens import message_text

    message, metadata = chunk
    if not isinstance(message, AIMessage):
        return None
    text = message_text(message)
    if not text:
        return None
    return {"type": "token", "node": str(metadata.get("langgraph_node", "")), "text": text}


def _build_parameters(module: ModuleType) -> set[str]:
    """The keyword options a graph's build() names (not its **options catch-all)."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in inspect.signature(module.build).parameters.values() if p.kind in named}


def _compile(module: ModuleType, model: BaseChatModel | None, settings: Settings, options: Mapping[str, Any]) -> Any:
    """module.build() with the settings, and the options it names that are not Settings fields.

    Settings fields reach the graph through `settings` only: `store` is a path there but a
    ChunkStore object among some graphs' build options.
    """
    accepted = _build_parameters(module) - {"model", "settings"} - set(Settings.model_fields)
    extra = {k: v for k, v in options.items() if k in accepted and v is not None}
    return module.build(model=model, settings=settings, **extra)


def _with_configurable(config: RunnableConfig | None, **configurable: Any) -> RunnableConfig | None:
    """`config` with the given per-run values (None left out) added to its ``configurable``."""
    given = {k: v for k, v in configurable.items() if v is not None}
    if not given:
        return config
    base: RunnableConfig = config or {}
    return {**base, "configurable": {**(base.get("configurable") or {}), **given}}


def feedback(
    run_id_or_question: str, score: float, store: str | Path | None = None, strategy: str | None = None
) -> dict:
    """Score an earlier answer (0..1); adaptive_rag learns per-strategy quality from it."""
    from graphcraft.memory.feedback import record

    return record(run_id_or_question, score, store=settings_for(store).store, strategy=strategy)


def insights(store: str | Path | None = None) -> list[dict]:
    """adaptive_rag's performance insights: per (query class, strategy) runs, feedback, quality and cost."""
    from graphcraft.graphs.adaptive_rag import insights as adaptive_insights

    return adaptive_insights(settings_for(store).store)


def graph_stats(store: str | Path | None = None) -> dict:
    """Counts of the entity graph: {"entities", "relations", "chunks", "communities"}."""
    from graphcraft.graph_index.api import graph_stats as entity_graph_stats

    return entity_graph_stats(store=settings_for(store).store)
