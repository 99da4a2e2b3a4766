"""Multi-hop RAG by query decomposition (least-to-most / Self-Ask style, with a dependency DAG).

    decompose -> schedule --Send per ready hop--> answer_subquestion --+
                    ^                                                  |
                    +--------------------------------------------------+
                 schedule --no wave left / a bound reached--> compose

decompose: sub-questions with explicit dependencies (LLM structured output, or spaCy rules
offline); the plan is validated (unknown ids, self-dependencies and cycles repaired or
refused) and ordered topologically into waves (networkx generations).
schedule: dispatches the next wave; every hop of a wave runs in parallel (LangGraph Send,
map-reduce) and the wave's results are merged by a reducer before the next wave starts.
answer_subquestion: substitutes earlier answers for {q1} placeholders (the name each answer
found: a person, a function, an option, a file ... see decompose.bridge_answer), retrieves (the
final hop also with the user's own question, both lists fused by RRF and kept whole, since a
sub-question drops the scene the user set), keeps the relevant knowledge strips and answers
with citations (LLM or extractive); its sources carry their whole chunks.
compose: the final answer with every hop's supporting sentences, citing only what it shows,
numbered 1..n in reading order to match the sources list.
Bounds: max_hops and max_waves in the plan, LLM calls and tokens checked in `route_wave`.
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, cast

import numpy as np
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
from graphcraft.runtime.bounds import Bounds, start_clock
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Multi-hop RAG: decompose into dependent sub-questions, answer each wave in parallel (Send), substitute "
    "answers, compose with citations per hop."
)

_CITE = re.compile(r"\[(\d+)\]")
BRIDGE_VERBATIM_WORDS = 8  # a model's answer this short is passed on as it is (see decompose.bridge_answer)


def merge_results(left: dict | None, right: dict | None) -> dict:
    return {**(left or {}), **(right or {})}


class MultihopState(TypedDict, total=False):
    question: str
    started_at: float  # the run's wall clock (runtime.bounds), checked with the call and token budgets
    hops: list[dict[str, Any]]  # validated plan: id, question (may hold {q1}), depends_on, level
    levels: list[list[str]]  # waves: hop ids per topological level
    plan: dict[str, Any]  # how the plan was made and repaired
    wave: int  # waves dispatched so far; bounded by the plan's levels (<= max_waves)
    results: Annotated[dict[str, dict[str, Any]], merge_results]
    executed: Annotated[list[tuple[int, str]], operator.add]  # (wave, hop id) in completion order
    usage: Annotated[Usage, add_usage]
    stop_reason: str
    answer: str
    sources: list[dict]
    trace: dict


class HopTask(TypedDict):
    """What one parallel `answer_subquestion` branch receives."""

    hop: dict[str, Any]
    question: str  # with earlier answers substituted
    wave: int
    context_query: str  # the user's question, for the final hop ("" for the others)


COMPOSE_PROMPT = """Answer the question from the findings of its sub-questions below. Cite the
numbered sources of every finding you use, like [1]. Be concise. If the findings do not answer
the question, say what is missing.

Findings:
{findings}

Question: {question}
Answer:"""


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    retriever: str | None = None,
    max_hops: int | None = None,
    max_waves: int | None = None,
    strict: bool | None = None,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the multi-hop graph.

    retriever: "hybrid" (default) | "vector" | "keyword" | "hierarchical" for each hop.
    max_hops / max_waves: plan bounds, default 5 / 4 (a longer plan is cut, recorded). strict: refuse
    an invalid plan with PlanError instead of repairing it. max_llm_calls / token_budget: override
    Settings. Unset arguments come from Settings fields multihop_* when they exist.
    """
    settings = settings_from(settings, options)
    retriever = retriever or cast(str, getattr(settings, "multihop_retriever", "hybrid"))
    max_hops = max_hops or cast(int, getattr(settings, "multihop_max_hops", 5))
    max_waves = max_waves or cast(int, getattr(settings, "multihop_max_waves", 4))
    strict = bool(getattr(settings, "multihop_strict", False)) if strict is None else strict
    base = Resources(settings, model=model, store=store)
    bounds = Bounds.from_settings(settings, max_llm_calls=max_llm_calls, token_budget=token_budget)

    def hop_retriever(res: Resources) -> Any:
        if retriever == "hierarchical":
            from graphcraft.retrievers.hierarchical import HierarchicalRetriever

            # model=None: a hierarchy missing here is built extractively, never with LLM calls hidden from the budget
            return HierarchicalRetriever(store=res.store, k=res.settings.top_k, settings=res.settings)
        return res.retriever(retriever)

    # ------------------------------------------------------------------ nodes
    def decompose(state: MultihopState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        plan = plan_question(
            state["question"],
            res.model,
            spacy_model=res.settings.spacy_model,
            max_hops=max_hops,
            max_waves=max_waves,
            strict=strict,
            max_repairs=res.settings.max_structured_repairs,
        )
        # Overwrite: a new question on a reused thread (Studio, LangGraph Server) starts from nothing.
        return {
            **start_clock(),
            "hops": plan.hops,
            "levels": plan.levels,
            "plan": plan.trace(),
            "wave": 0,
            "stop_reason": "",
            "results": Overwrite({}),
            "executed": Overwrite([]),
            "usage": Overwrite(plan.usage),
        }

    def schedule(state: MultihopState) -> dict:
        """Advance to the next wave, or record why no further wave runs."""
        wave = state.get("wave", 0)
        if wave >= len(state.get("levels", [])):
            return {"stop_reason": "completed"}
        exhausted = bounds.reached(state)
        if exhausted:
            return {"stop_reason": exhausted}
        return {"wave": wave + 1}

    def route_wave(state: MultihopState) -> list[Send] | str:
        """Fan the current wave out (one Send per hop), unless the plan is done or a bound is hit."""
        if state.get("stop_reason"):
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

    def answer_subquestion(task: HopTask, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        question = task["question"]
        retriever = hop_retriever(res)
        docs = retriever.search(question)
        if task.get("context_query"):
            # The sub-question drops the scene the user set: the final hop also reads what the user's own
            # question retrieves (both lists kept whole), so its evidence never falls below a plain search's.
            docs = rrf_fuse(
                [docs, retriever.search(task["context_query"])], limit=2 * res.settings.top_k, names=["hop", "question"]
            )
        qv = np.asarray(res.embeddings.embed_query(question), dtype=np.float32)
        strips = refine_documents(
            question,
            qv,
            docs,
            [float(d.metadata.get("score") or 0.0) for d in docs],
            res.store,
            res.settings.strip_threshold,
        )
        answer = generate_answer(question, strips, res.model, documents=docs)
        # An extractive answer quotes whole sentences: the bridge is always the name extracted from them.
        verbatim = BRIDGE_VERBATIM_WORDS if answer.strategy == "llm" else 0
        bridge = (
            ""
            if answer.abstained
            else bridge_answer(question, answer.text, res.settings.spacy_model, max_words=verbatim)
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
        return {
            "results": {task["hop"]["id"]: result},
            "usage": answer.usage,
            "executed": [(task["wave"], task["hop"]["id"])],
        }

    def compose(state: MultihopState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        hops = [h for h in state.get("hops", []) if h["id"] in state.get("results", {})]
        results = state.get("results", {})
        sources, renumbered = _number_sources(hops, results)
        findings = [f"{i}. {results[h['id']]['question']} -> {renumbered[h['id']]}" for i, h in enumerate(hops, 1)]
        usage = empty_usage()
        answered = [h for h in hops if not results[h["id"]]["abstained"]]
        if not answered:
            text, strategy = ABSTAIN, "abstain"
        elif res.model is not None and not bounds.exhausted(state.get("usage")):
            reply, usage = invoke_llm(
                res.model, COMPOSE_PROMPT.format(findings="\n".join(findings), question=state["question"])
            )
            text, strategy = message_text(reply).strip() or ABSTAIN, "llm"
        else:
            sinks = [h for h in hops if _is_final(h, hops)] or hops[-1:]
            text = "\n".join(
                renumbered[h["id"]] if len(sinks) == 1 else f"{results[h['id']]['question']} {renumbered[h['id']]}"
                for h in sinks
            )
            strategy = "extractive"
        # Every hop is cited: its finding is listed unless the composed answer already cites its sources.
        cited = _hop_citations(text)
        if strategy == "llm":
            listed = [
                f for h, f in zip(hops, findings, strict=False) if not _hop_citations(renumbered[h["id"]]) & cited
            ]
        else:
            listed = findings if len(hops) > 1 else []
        if listed:
            text = f"{text}\n\nHow this was found:\n" + "\n".join(listed)
        text, sources, renumbered = _final_citations(text, sources, renumbered)
        final = {**state, "usage": add_usage(state.get("usage"), usage), "iterations": len(_waves(state))}
        trace = make_trace(
            "multihop",
            final,
            decomposition=state.get("plan", {}),
            stop_reason=state.get("stop_reason", "completed"),
            waves=_waves(state),
            parallel_hops=sum(len(w) for w in _waves(state) if len(w) > 1),
            compose_strategy=strategy,
            hops=[
                {
                    "id": h["id"],
                    "planned": h["question"],
                    "question": results[h["id"]]["question"],
                    "depends_on": h["depends_on"],
                    "answer": renumbered[h["id"]],
                    "bridge": results[h["id"]]["bridge"],
                    "abstained": results[h["id"]]["abstained"],
                    "wave": results[h["id"]]["wave"],
                    "strategy": results[h["id"]]["strategy"],
                    "context_query": results[h["id"]].get("context_query", ""),
                    "retrieved": results[h["id"]]["retrieved"],
                }
                for h in hops
            ],
            skipped=[h["id"] for h in state.get("hops", []) if h["id"] not in results],
            bounds={**bounds.as_dict(), "max_hops": max_hops, "max_waves": max_waves},
        )
        return {"answer": text, "sources": sources, "usage": usage, "trace": trace}

    g = StateGraph(MultihopState)
    g.add_node("decompose", decompose)
    g.add_node("schedule", schedule)
    g.add_node("answer_subquestion", answer_subquestion)  # type: ignore[arg-type]  # LangGraph's overloads reject a Send target (its input is the payload)
    g.add_node("compose", compose)
    g.add_edge(START, "decompose")
    g.add_edge("decompose", "schedule")
    g.add_conditional_edges("schedule", route_wave, ["answer_subquestion", "compose"])
    g.add_edge("answer_subquestion", "schedule")
    g.add_edge("compose", END)
    # Sized so the plan's bounds end the run, never the recursion limit.
    return g.compile(name="multihop", checkpointer=checkpointer).with_config(recursion_limit=2 * max_waves + 10)


def _resolve(hop: dict[str, Any], state: MultihopState) -> str:
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


def _context_query(hop: dict[str, Any], state: MultihopState) -> str:
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


def _waves(state: MultihopState) -> list[list[str]]:
    waves: dict[int, list[str]] = {}
    for wave, hid in state.get("executed", []):
        waves.setdefault(wave, []).append(hid)
    return [sorted(waves[w]) for w in sorted(waves)]


graph = build()
