"""Guards as graph nodes: screen the question, run the graph, screen the answer.

`GRAPHCRAFT_GUARDS=injection,pii` (or ``guards=`` as a build option / setting) puts every graph
behind three nodes: ``screen_question`` → ``run_graph`` (the graph itself, unchanged) →
``screen_answer``. What the graph reads while it runs is screened where it enters the run, by the
same guards: retrieved chunks (the store view every retriever reads through, and external search)
and tool outputs. They find the run's guards through a context variable that ``run_graph`` sets,
because chunks are fetched deep inside chains that have no access to the graph's state; LangGraph
copies the context into the threads that run the graph's nodes, so every step sees the same run.

- injection: a question that is an injection attempt is refused before any model sees it; a
  retrieved chunk or tool output that carries one is quarantined (dropped or withheld) and recorded
  in the trace (``trace["guards"]["quarantined"]``), and fake citation markers in kept chunks are
  neutralised so they cannot pose as graphcraft's numbers.
- pii: personal data in the question and in retrieved chunks is redacted, masked or pseudonymised
  (Settings.pii_mode) before a model sees it; with pseudonymisation the answer gets the values back
  (Settings.pii_restore). A request in which PII was found is sent only to Settings.pii_local_model
  when one is configured. The trace and the step log never hold the raw values.

A graph that runs another graph as a step (adaptive_rag runs crag) is screened once: the inner
graph's guard nodes see the outer run and pass through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from graphcraft.config import Settings
from graphcraft.errors import SettingsError
from graphcraft.runtime.result import InputState, OutputState

GUARDS = ("injection", "pii")
REFUSAL = (
    "The request was not run: the injection guard found an attempt to override the assistant's instructions "
    "({rules}). Rephrase the question without instructions to the assistant."
)
WITHHELD = "[tool output withheld by the injection guard: {rules}]"


def active_guards(settings: Settings) -> frozenset[str]:
    """The guards the settings switch on; an unknown name is a one-line SettingsError."""
    names = {n.strip().lower() for n in settings.guards.split(",") if n.strip()}
    unknown = sorted(names - set(GUARDS))
    if unknown:
        raise SettingsError.with_message(
            f"unknown guard {', '.join(unknown)} in GRAPHCRAFT_GUARDS: choose from {', '.join(GUARDS)}"
        )
    return frozenset(names)


@dataclass
class GuardRun:
    """What one run's guards decided, shared by every step of the run (see the module docstring)."""

    guards: frozenset[str]
    settings: Settings
    pii_map: dict[str, Any] = field(default_factory=dict)
    pii_found: set[str] = field(default_factory=set)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    withheld: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """The trace's ``guards`` entry: plain JSON, no raw personal data."""
        out: dict[str, Any] = {"active": sorted(self.guards), "quarantined": self.quarantined}
        if self.withheld:
            out["withheld_tool_outputs"] = self.withheld
        if "pii" in self.guards:
            out["pii"] = {
                "found": sorted(self.pii_found),
                "mode": self.settings.pii_mode,
                "placeholders": len(self.pii_map),
            }
        return out


_RUN: ContextVar[GuardRun | None] = ContextVar("graphcraft_guard_run", default=None)


@contextmanager
def guarding(run: GuardRun) -> Iterator[GuardRun]:
    """Make `run` the current run's guards while the graph runs."""
    token = _RUN.set(run)
    try:
        yield run
    finally:
        _RUN.reset(token)


# ---------------------------------------------------------------- what enters a run
def screen_retrieved(docs: list[Document]) -> list[Document]:
    """Retrieved chunks as the run may see them: injected ones quarantined, PII replaced (a no-op with no guards)."""
    return [d for d in screen_each(docs) if d is not None]


def screen_each(docs: list[Document]) -> list[Document | None]:
    """`screen_retrieved`, position by position: None where a chunk is quarantined (for (doc, score) lists)."""
    run = _RUN.get()
    if run is None or not docs or "injection" not in run.guards:
        return list(docs)
    from graphcraft.guards.injection import screen_each_document

    screened, quarantined = screen_each_document(list(docs), threshold=run.settings.injection_threshold)
    run.quarantined.extend(q for q in quarantined if q not in run.quarantined)
    return screened


def screen_scored(hits: list[tuple[Document, float]]) -> list[tuple[Document, float]]:
    """`screen_retrieved` for (chunk, score) results, scores kept with their chunks."""
    if _RUN.get() is None or not hits:
        return hits
    screened = screen_each([doc for doc, _ in hits])
    return [(d, score) for d, (_, score) in zip(screened, hits, strict=True) if d is not None]


@contextmanager
def unscreened() -> Iterator[None]:
    """No guard screening inside: for code that copies or indexes a store's chunks rather than reading them
    for a run (a cleared view, an index being built), which must see them as stored."""
    token = _RUN.set(None)
    try:
        yield
    finally:
        _RUN.reset(token)


def screen_tool_output(tool: str, text: str) -> str:
    """A tool's output as the model may see it: withheld when it carries an injection, PII replaced."""
    run = _RUN.get()
    if run is None:
        return text
    if "injection" in run.guards:
        from graphcraft.guards.injection import scan

        finding = scan(text)
        if finding.suspicious or finding.score >= run.settings.injection_threshold:
            run.withheld.append({"tool": tool, "score": round(finding.score, 3), "rules": list(finding.rules)})
            return WITHHELD.format(rules=", ".join(finding.rules) or "classifier")
    return _anonymized(run, text) if "pii" in run.guards else text


def guard_messages(messages: list[BaseMessage]) -> list[BaseMessage]:
    """What a chat model is sent, with personal data replaced (the pii guard), at the one place every model
    call passes (graphcraft.models.call_model). Retrieval and offline steps keep the real text: they stay
    on this machine, and a placeholder would only make them worse."""
    run = _RUN.get()
    if run is None or "pii" not in run.guards:
        return messages
    return [_anonymized_message(run, m) for m in messages]


def _anonymized_message(run: GuardRun, message: BaseMessage) -> BaseMessage:
    if isinstance(message.content, str):
        text = _anonymized(run, message.content)
        return message if text == message.content else message.model_copy(update={"content": text})
    blocks = [
        {**b, "text": _anonymized(run, str(b["text"]))} if isinstance(b, dict) and "text" in b else b
        for b in message.content
    ]
    return message.model_copy(update={"content": blocks})


def _anonymized(run: GuardRun, text: str) -> str:
    from graphcraft.guards.pii import pii_guard

    anonymized, run.pii_map, found = pii_guard(run.settings.pii_mode, settings=run.settings).anonymize(
        text, run.pii_map
    )
    run.pii_found.update(found)
    return anonymized


# ---------------------------------------------------------------- the guard nodes around a graph
class GuardState(InputState, OutputState, total=False):
    """The wrapper's working state: the question the graph gets and the guard record (plain JSON)."""

    screened_question: str
    guard: dict[str, Any]


def screen_question(state: GuardState, config: RunnableConfig, *, graph: str) -> dict[str, Any]:
    """Refuse an injection attempt; replace personal data in the question before the graph sees it."""
    if _RUN.get() is not None:  # a graph run as a step of a guarded graph: the outer guards screen it
        return {"screened_question": state["question"], "guard": {"nested": True}}
    # On a conversation thread the previous turn's record is still in the state: keep its placeholders, so
    # the same person is the same <PERSON_n> in every turn (the map is the thread's, stored by its checkpointer).
    run = _new_run(config, graph, {"pii_map": (state.get("guard") or {}).get("pii_map", {})})
    question = state["question"]
    if "injection" in run.guards:
        from graphcraft.guards.injection import scan

        finding = scan(question)
        if finding.suspicious or finding.score >= run.settings.injection_threshold:
            refused = {"rules": list(finding.rules), "score": round(finding.score, 3)}
            return {"screened_question": "", "guard": {"refused": refused, **_record(run)}}
    if "pii" in run.guards:
        _anonymized(run, question)  # what it holds decides routing; models get it replaced (guard_messages)
    return {"screened_question": question, "guard": _record(run)}


def route_after_screening(state: GuardState) -> str:
    return "screen_answer" if state.get("guard", {}).get("refused") else "run_graph"


def run_graph(state: GuardState, config: RunnableConfig, *, graph: str, inner: Any) -> dict[str, Any]:
    """The graph itself, with the run's guards current while it runs (see screen_retrieved, screen_tool_output)."""
    guard = state.get("guard", {})
    question = {"question": state.get("screened_question") or state["question"]}
    if guard.get("nested"):
        return _outputs(inner.invoke(question, config=config))
    run = _new_run(config, graph, guard)
    run_config = config  # a subgraph of the guard graph: its checkpoints, pauses and resumes nest in the thread's
    if run.pii_found and run.settings.pii_local_model:  # sensitive: only the configured local model may see it
        configurable = {**(config.get("configurable") or {}), "chat_model": run.settings.pii_local_model}
        run_config = {**run_config, "configurable": configurable}
        guard = {**guard, "routed_to": run.settings.pii_local_model}
    with guarding(run):
        out = inner.invoke(question, config=run_config)
    return {**_outputs(out), "guard": {**guard, **_record(run)}}


def screen_answer(state: GuardState, config: RunnableConfig, *, graph: str) -> dict[str, Any]:
    """Give pseudonymised values back in the answer (when allowed); no raw personal data in the trace."""
    guard = state.get("guard", {})
    if guard.get("nested"):
        return {}
    run = _new_run(config, graph, guard)
    report = {**run.report(), **({"routed_to": guard["routed_to"]} if guard.get("routed_to") else {})}
    if guard.get("refused"):
        from graphcraft.runtime.result import make_trace

        report["refused"] = guard["refused"]
        answer = REFUSAL.format(rules=", ".join(guard["refused"]["rules"]) or "classifier")
        return {"answer": answer, "sources": [], "trace": make_trace(graph, {}, action="refused", guards=report)}
    answer, sources, trace = state.get("answer", ""), state.get("sources", []), dict(state.get("trace", {}))
    if "pii" in run.guards:
        from graphcraft.guards.pii import pii_guard, redact_for_log

        guard_pii = pii_guard(run.settings.pii_mode, settings=run.settings)
        trace = redact_for_log(trace, settings=run.settings)
        if run.settings.pii_restore and run.settings.pii_mode == "pseudonymise" and run.pii_map:
            answer = guard_pii.restore(answer, run.pii_map)
            sources = [{**s, "text": guard_pii.restore(str(s.get("text", "")), run.pii_map)} for s in sources]
    trace["guards"] = report
    return {"answer": answer, "sources": sources, "trace": trace}


def _new_run(config: RunnableConfig, graph: str, record: dict[str, Any] | None = None) -> GuardRun:
    """The run's guards from its context's settings, with what earlier guard nodes recorded."""
    from graphcraft.runtime.context import context

    settings = context(config, graph).settings
    record = record or {}
    run = GuardRun(active_guards(settings), settings, dict(record.get("pii_map", {})), set(record.get("pii_found", [])))
    run.quarantined = list(record.get("quarantined", []))
    run.withheld = list(record.get("withheld", []))
    return run


def _record(run: GuardRun) -> dict[str, Any]:
    return {
        "pii_map": run.pii_map,
        "pii_found": sorted(run.pii_found),
        "quarantined": run.quarantined,
        "withheld": run.withheld,
    }


def _outputs(out: Any) -> dict[str, Any]:
    out = out if isinstance(out, dict) else {}
    return {"answer": out.get("answer", ""), "sources": list(out.get("sources", [])), "trace": out.get("trace", {})}


def guarded(inner: Any, graph: str) -> Any:
    """`inner` (a compiled graph) behind the guard nodes, compiled with the same checkpointer."""
    g = StateGraph(GuardState, input_schema=InputState, output_schema=OutputState)
    g.add_node("screen_question", partial(screen_question, graph=graph))
    g.add_node("run_graph", partial(run_graph, graph=graph, inner=inner))
    g.add_node("screen_answer", partial(screen_answer, graph=graph))
    g.add_edge(START, "screen_question")
    g.add_conditional_edges("screen_question", route_after_screening, ["run_graph", "screen_answer"])
    g.add_edge("run_graph", "screen_answer")
    g.add_edge("screen_answer", END)
    checkpointer = getattr(getattr(inner, "bound", inner), "checkpointer", None)
    return g.compile(name=graph, checkpointer=checkpointer)
