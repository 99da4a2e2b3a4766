"""Multi-hop RAG by query decomposition (least-to-most / Self-Ask style, with a dependency DAG).

    decompose -> schedule --Send per ready hop--> answer_subquestion --+
                    ^                                                  |
                    +--------------------------------------------------+
                 schedule --no wave left / a bound reached--> compose

decompose: sub-questions with explicit dependencies (LLM structured output, or spaCy rules
offline); the plan is validated (unknown ids, self-dependencies and cycles repaired or
refused) and ordered topologically into waves (networkx generations), at most max_hops hops
in at most max_waves waves.
schedule: dispatches the next wave; every hop of a wave runs in parallel (LangGraph Send,
map-reduce) and the wave's results are merged by a reducer before the next wave starts.
answer_subquestion: substitutes earlier answers for {q1} placeholders (the name each answer
found: a person, a function, an option, a file ... see decompose.bridge_answer), retrieves (the
final hop also with the user's own question, both lists fused by RRF and kept whole, since a
sub-question drops the scene the user set), keeps the relevant knowledge strips and answers
with citations (LLM or extractive); its sources carry their whole chunks.
compose: the final answer with every hop's supporting sentences, citing only what it shows,
numbered 1..n in reading order to match the sources list.
Bounds: the run's LLM calls, tokens and wall clock are checked in `stop_reason` before every
wave and before the composing model call; a run that hits one composes extractively from the
hops it has. A wave takes two supersteps: LangGraph's default recursion limit (25) leaves room
for 11 waves; a run allowed more passes a larger recursion_limit in its config.
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Overwrite, Send
from typing_extensions import TypedDict

from graphcraft.chains.answer import ABSTAIN, generate_answer, renumber_citations
from graphcraft.chains.decompose import PLACEHOLDER, bridge_answer, substitute
from graphcraft.chains.decompose import decompose as plan_question
from graphcraft.chains.refine import refine_documents
from graphcraft.config import Settings, settings_from
from graphcraft.models import invoke_llm, message_text
from graphcraft.retrievers.fusion import rrf_fuse
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import start_clock
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "multihop"
DESCRIPTION = (
    "Multi-hop RAG: decompose into dependent sub-questions, answer each wave in parallel (Send), substitute "
    "answers, compose with citations per hop."
)

COMPOSE_PROMPT = """Answer the question from the findings of its sub-questions below. Cite the
numbered sources of every finding you use, like [1]. Be concise. If the findings do not answer
the question, say what is missing.

Findings:
{findings}

Question: {question}
Answer:"""

BRIDGE_VERBATIM_WORDS = 8  # a model's answer this short is passed on as it is (see decompose.bridge_answer)
_CITE = re.compile(r"\[(\d+)\]")


def merge_results(left: dict | None, right: dict | None) -> dict:
    """Reducer of the hops' results: each parallel hop adds its own entry."""
    return {**(left or {}), **(right or {})}


class State(InputState, OutputState, total=False):
    started_at: float  # the run's wall clock (runtime.bounds)
    hops: list[dict[str, Any]]  # validated plan: id, question (may hold {q1}), depends_on, level
    levels: list[list[str]]  # waves: hop ids per topological level
    plan: dict[str, Any]  # how the plan was made and repaired
    wave: int  # waves dispatched so far; bounded by the plan's levels (<= max_waves)
    finished: bool  # schedule dispatches no further wave
    stopped: str | None  # the bound that ended the waves before the plan's end
    # Written by parallel hops, hence reducers; `decompose` overwrites them, so a thread that is
    # asked a second question (Studio, LangGraph Server) starts a fresh run.
    results: Annotated[dict[str, dict[str, Any]], merge_results]  # hop id -> its answer, bridge, sources, wave
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict[str, Any]], operator.add]


class HopTask(TypedDict):
    """What one parallel `answer_subquestion` branch receives."""

    hop: dict[str, Any]
    question: str  # with earlier answers substituted
    wave: int
    context_query: str  # the user's question, for the final hop ("" for the others)


def plan_bounds(ctx: Context) -> tuple[int, int]:
    """The run's max_hops and max_waves: the build options (or per-run overrides), else Settings' multihop_*."""
    return (
        int(ctx.option("max_hops", ctx.settings.multihop_max_hops)),
        int(ctx.option("max_waves", ctx.settings.multihop_max_waves)),
    )


def hop_retriever(ctx: Context) -> Any:
    """The retriever of every hop: the build option "retriever" (hybrid, vector, keyword or hierarchical)."""
    kind = ctx.option("retriever", ctx.settings.multihop_retriever)
    if kind == "hierarchical":
        from graphcraft.retrievers.hierarchical import HierarchicalRetriever

        # model=None: a hierarchy missing here is built extractively, never with LLM calls hidden from the budget
        return HierarchicalRetriever(store=ctx.store, k=ctx.settings.top_k, settings=ctx.settings)
    return ctx.retriever(kind)


def hop_documents(ctx: Context, question: str, context_query: str) -> list[Document]:
    """The hop's chunks; the final hop also reads what the user's own question retrieves (RRF, both kept whole)."""
    retriever = hop_retriever(ctx)
    docs = retriever.search(question)
    if not context_query:
        return docs
    return rrf_fuse([docs, retriever.search(context_query)], limit=2 * ctx.settings.top_k, names=["hop", "question"])


# ---------------------------------------------------------------------- nodes (the method's steps)
def decompose(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Split the question into sub-questions with dependencies, ordered into waves, and start a fresh run."""
    ctx = context(config, GRAPH)
    max_hops, max_waves = plan_bounds(ctx)
    plan = plan_question(
        state["question"],
        ctx.model,
        spacy_model=ctx.settings.spacy_model,
        max_hops=max_hops,
        max_waves=max_waves,
        strict=ctx.option("strict", ctx.settings.multihop_strict),
        max_repairs=ctx.settings.max_structured_repairs,
    )
    step = {"step": "decompose", "strategy": plan.strategy, "hops": [h["id"] for h in plan.hops]}
    return {
        **start_clock(),
        "hops": plan.hops,
        "levels": plan.levels,
        "plan": plan.trace(),
        "wave": 0,
        "finished": False,
        "stopped": None,
        "results": Overwrite({}),
        "usage": Overwrite(plan.usage),
        "steps": Overwrite([step]),
    }


def schedule(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Advance to the next wave, or end the waves: the plan is done or a bound is reached."""
    ctx = context(config, GRAPH)
    wave = state.get("wave", 0)
    if wave >= len(state.get("levels", [])):
        return {"finished": True}
    if reason := stop_reason(state, ctx):
        return {"finished": True, "stopped": reason}
    return {"wave": wave + 1}


def answer_subquestion(task: HopTask, config: RunnableConfig) -> dict[str, Any]:
    """Answer one hop from its own retrieval, and extract the name the dependent hops need."""
    ctx = context(config, GRAPH)
    question, hop_id = task["question"], task["hop"]["id"]
    docs = hop_documents(ctx, question, task.get("context_query", ""))
    qv = np.asarray(ctx.embeddings.embed_query(question), dtype=np.float32)
    scores = [float(d.metadata.get("score") or 0.0) for d in docs]
    strips = refine_documents(question, qv, docs, scores, ctx.store, ctx.settings.strip_threshold)
    answer = generate_answer(question, strips, ctx.model, documents=docs)
    # An extractive answer quotes whole sentences: the bridge is always the name extracted from them.
    verbatim = BRIDGE_VERBATIM_WORDS if answer.strategy == "llm" else 0
    bridge = (
        "" if answer.abstained else bridge_answer(question, answer.text, ctx.settings.spacy_model, max_words=verbatim)
    )
    result = {
        "question": question,
        "answer": answer.text,
        "bridge": bridge,
        "sources": answer.sources,
        "abstained": answer.abstained,
        "strategy": answer.strategy,
        "wave": task["wave"],
        "retrieved": [str(d.metadata.get("chunk_id", "")) for d in docs],
        "context_query": task.get("context_query", ""),
    }
    step = {
        "step": "answer_subquestion",
        "hop": hop_id,
        "wave": task["wave"],
        "documents": len(docs),
        "strategy": answer.strategy,
        "abstained": answer.abstained,
    }
    return {"results": {hop_id: result}, "usage": answer.usage, "steps": [step]}


def compose(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Write the final answer from every hop's finding, citing only what it shows, numbered 1..n."""
    ctx = context(config, GRAPH)
    results = state.get("results", {})
    hops = [h for h in state.get("hops", []) if h["id"] in results]
    sources, renumbered = _number_sources(hops, results)
    findings = [f"{i}. {results[h['id']]['question']} -> {renumbered[h['id']]}" for i, h in enumerate(hops, 1)]
    # A bound that ended the waves, or is reached now, leaves the composition to the extractive strategy.
    reason = state.get("stopped") or stop_reason(state, ctx)
    model = None if reason else ctx.model
    text, strategy, usage = write_answer(state["question"], hops, results, findings, renumbered, model)
    text = _with_findings(text, strategy, hops, findings, renumbered)
    text, sources, renumbered = _final_citations(text, sources, renumbered)
    answered = any(not results[h["id"]]["abstained"] for h in hops)
    steps = state.get("steps", []) + [{"step": "compose", "strategy": strategy}]
    max_hops, max_waves = plan_bounds(ctx)
    waves = _waves(state)
    trace = make_trace(
        GRAPH,
        state,
        action="stopped" if state.get("stopped") else ("answered" if answered else "abstained"),
        stop_reason=reason,
        iterations=len(waves),
        steps=steps,
        usage=add_usage(state.get("usage"), usage),
        decomposition=state.get("plan", {}),
        waves=waves,
        parallel_hops=sum(len(w) for w in waves if len(w) > 1),
        compose_strategy=strategy,
        hops=[_hop_trace(h, results[h["id"]], renumbered[h["id"]]) for h in hops],
        skipped=[h["id"] for h in state.get("hops", []) if h["id"] not in results],
        bounds={**ctx.bounds.as_dict(), "max_hops": max_hops, "max_waves": max_waves},
    )
    return {"answer": text, "sources": sources, "usage": usage, "trace": trace, "steps": steps[-1:]}


# ---------------------------------------------------------------------- routing (every loop bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that ends the run early: a budget of the run, or max_waves while waves of the plan remain."""
    if reached := ctx.bounds.reached(state):
        return reached
    wave = state.get("wave", 0)
    remaining = wave < len(state.get("levels", []))
    return "max_waves" if remaining and wave >= plan_bounds(ctx)[1] else None


def route_wave(state: State) -> list[Send] | str:
    """Fan the current wave out (one Send per hop), unless schedule ended the waves."""
    if state.get("finished"):
        return "compose"
    wave = state["wave"]
    by_id = {h["id"]: h for h in state["hops"]}
    return [
        Send(
            "answer_subquestion",
            HopTask(
                hop=by_id[hid],
                question=_resolve(by_id[hid], state),
                wave=wave,
                context_query=_context_query(by_id[hid], state),
            ),
        )
        for hid in state["levels"][wave - 1]
    ]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    retriever: str | None = None,
    max_hops: int | None = None,
    max_waves: int | None = None,
    strict: bool | None = None,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the multi-hop graph.

    retriever: "hybrid" (default) | "vector" | "keyword" | "hierarchical" for each hop.
    max_hops / max_waves: plan bounds, default 5 / 4 (a longer plan is cut, recorded). strict: refuse
    an invalid plan with PlanError instead of repairing it. Unset arguments come from the Settings
    fields multihop_*; Settings fields among the options (max_llm_calls, token_budget ...) apply too.
    Each of retriever, max_hops, max_waves and strict can be overridden per run in config["configurable"].
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    """
    s = settings_from(settings, options)
    ctx = Context(
        s,
        model=model,
        store=store,
        options={
            "retriever": retriever or s.multihop_retriever,
            "max_hops": max_hops or s.multihop_max_hops,
            "max_waves": max_waves or s.multihop_max_waves,
            "strict": s.multihop_strict if strict is None else strict,
        },
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    g.add_node("decompose", decompose)
    g.add_node("schedule", schedule)
    g.add_node("answer_subquestion", answer_subquestion)  # type: ignore[arg-type]  # LangGraph's overloads reject a Send target (its input is the payload)
    g.add_node("compose", compose)
    g.add_edge(START, "decompose")
    g.add_edge("decompose", "schedule")
    g.add_conditional_edges("schedule", route_wave, ["answer_subquestion", "compose"])
    g.add_edge("answer_subquestion", "schedule")
    g.add_edge("compose", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


# ---------------------------------------------------------------------- helpers of the steps
def write_answer(
    question: str,
    hops: list[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    findings: list[str],
    renumbered: dict[str, str],
    model: BaseChatModel | None,
) -> tuple[str, str, Usage]:
    """The composed answer, how it was written (llm, extractive, abstain) and what it cost."""
    if all(results[h["id"]]["abstained"] for h in hops):
        return ABSTAIN, "abstain", empty_usage()
    if model is not None:
        reply, usage = invoke_llm(model, COMPOSE_PROMPT.format(findings="\n".join(findings), question=question))
        return message_text(reply).strip() or ABSTAIN, "llm", usage
    sinks = [h for h in hops if _is_final(h, hops)] or hops[-1:]
    text = "\n".join(
        renumbered[h["id"]] if len(sinks) == 1 else f"{results[h['id']]['question']} {renumbered[h['id']]}"
        for h in sinks
    )
    return text, "extractive", empty_usage()


def _with_findings(
    text: str, strategy: str, hops: list[dict[str, Any]], findings: list[str], renumbered: dict[str, str]
) -> str:
    """Every hop is cited: its finding is listed unless the composed answer already cites its sources."""
    cited = _hop_citations(text)
    if strategy == "llm":
        listed = [f for h, f in zip(hops, findings, strict=False) if not _hop_citations(renumbered[h["id"]]) & cited]
    else:
        listed = findings if len(hops) > 1 else []
    return f"{text}\n\nHow this was found:\n" + "\n".join(listed) if listed else text


def _hop_trace(hop: dict[str, Any], result: dict[str, Any], answer: str) -> dict[str, Any]:
    """What the trace keeps of one hop: its planned and asked question, answer, bridge and evidence."""
    return {
        "id": hop["id"],
        "planned": hop["question"],
        "question": result["question"],
        "depends_on": hop["depends_on"],
        "answer": answer,
        "bridge": result["bridge"],
        "abstained": result["abstained"],
        "wave": result["wave"],
        "strategy": result["strategy"],
        "context_query": result.get("context_query", ""),
        "retrieved": result["retrieved"],
    }


def _resolve(hop: dict[str, Any], state: State) -> str:
    """The hop's question with its dependencies' answers; a dependency that found nothing is asked inline."""
    results = state.get("results", {})
    answers = {}
    for dep in PLACEHOLDER.findall(hop["question"]):
        found = results.get(dep)
        if found and found["bridge"]:
            answers[dep] = found["bridge"]
        else:
            answers[dep] = "(" + (found["question"] if found else dep).rstrip("?") + ")"
    return " ".join(substitute(hop["question"], answers).split())


def _context_query(hop: dict[str, Any], state: State) -> str:
    """For a final hop that depends on others: the user's own question ("" for every other hop)."""
    return state["question"] if hop["depends_on"] and _is_final(hop, state["hops"]) else ""


def _is_final(hop: dict[str, Any], hops: list[dict[str, Any]]) -> bool:
    """No other hop needs this hop's answer: it answers (part of) the user's question."""
    return not any(hop["id"] in other["depends_on"] for other in hops)


def _source_key(src: dict) -> str:
    return src.get("chunk_id") or src.get("source", "")


def _number_sources(hops: list[dict], results: dict[str, dict]) -> tuple[list[dict], dict[str, str]]:
    """One citation number per chunk across all hops; each hop's answer rewritten to those numbers."""
    numbers: dict[str, int] = {}
    sources: list[dict] = []
    renumbered: dict[str, str] = {}
    for hop in hops:
        result = results[hop["id"]]
        local: dict[int, int] = {}
        for src in result["sources"]:
            key = _source_key(src)
            if key not in numbers:
                numbers[key] = len(numbers) + 1
                sources.append({**src, "citation": numbers[key], "hops": [], "spans": []})
            merged = sources[numbers[key] - 1]
            merged["hops"].append(hop["id"])
            merged["spans"] = [
                list(span) for span in sorted({tuple(span) for span in merged["spans"] + list(src.get("spans", []))})
            ]
            if src.get("citation") is not None:
                local[int(src["citation"])] = numbers[key]
        text = _CITE.sub(lambda m: f"[{local.get(int(m.group(1)), m.group(1))}]", result["answer"])  # noqa: B023 - used at once
        if not result["abstained"] and not _CITE.search(text) and result["sources"]:
            text += " " + "".join(f"[{numbers[_source_key(s)]}]" for s in result["sources"])
        renumbered[hop["id"]] = text
    return sources, renumbered


def _final_citations(
    text: str, sources: list[dict], hop_answers: dict[str, str]
) -> tuple[str, list[dict], dict[str, str]]:
    """Only the sources the final text cites, numbered 1..n in reading order; the hops' answers renumbered alike."""
    text, cited = renumber_citations(text, sources)
    kept = {_source_key(src): src["citation"] for src in cited}
    new = {src["citation"]: kept[_source_key(src)] for src in sources if _source_key(src) in kept}

    def renumber(answer: str) -> str:
        return _CITE.sub(lambda m: f"[{new[int(m.group(1))]}]" if int(m.group(1)) in new else "", answer).strip()

    return text, cited, {hid: renumber(answer) for hid, answer in hop_answers.items()}


def _hop_citations(text: str) -> set[int]:
    return {int(n) for n in _CITE.findall(text)}


def _waves(state: State) -> list[list[str]]:
    """The hop ids answered in each wave, in wave order."""
    waves: dict[int, list[str]] = {}
    for hid, result in state.get("results", {}).items():
        waves.setdefault(result["wave"], []).append(hid)
    return [sorted(waves[w]) for w in sorted(waves)]


graph = build()
