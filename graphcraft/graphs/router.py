"""Source routing: answer from the model's own knowledge, a tool, the documents, or both.

    route --parametric--> answer_parametric ----------------------------+
          --tools-------> use_tool -------------------------------------+--> finish
          --retrieval---> retrieve -> grade -> generate ----------------+
          --hybrid------> retrieve -> grade -> generate_hybrid ---------+
                                             (generate instead, once a run bound is reached)

route: an LLM picks the source (structured output, told how close the store's best passage is),
or, without a model, cheap signals decide: arithmetic -> the calculator tool; a question far from
everything in the store -> parametric (which needs a model and says so offline); otherwise
retrieval. The choice and its reason are in the trace.
retrieval is the CRAG path from the shared chains (hybrid retrieval, relevance grading, strip
refinement, cited answer or abstention); hybrid adds the model's own knowledge and the
calculator to the retrieved evidence, in a tool-calling exchange bounded by max_tool_calls.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from graphcraft.chains.answer import Answer, generate_answer, number_sources
from graphcraft.chains.classify import UNRELATED_BELOW, probe_store
from graphcraft.chains.direct import NEEDS_MODEL, calculate, parametric_answer
from graphcraft.chains.evidence import gather_evidence
from graphcraft.chains.question import arithmetic_expression
from graphcraft.chains.refine import Strip
from graphcraft.chains.tool_calls import run_with_tools
from graphcraft.config import Settings, settings_from
from graphcraft.models import structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import fresh_run
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "router"
DESCRIPTION = (
    "Source router: send a question to parametric knowledge, a tool (calculator), retrieval (CRAG path) or a "
    "hybrid, and explain why."
)

ROUTE_PROMPT = (
    "Decide where the answer to the question should come from.\n"
    "- parametric: general knowledge any well-read assistant knows (no documents needed)\n"
    "- tools: pure arithmetic, computed exactly by a calculator (give the expression)\n"
    "- retrieval: facts about the private document collection (names, numbers, events in it)\n"
    "- hybrid: needs the documents AND general knowledge or a calculation on facts from them\n"
    "The collection's closest passage has similarity {max_sim:.2f} to the question "
    "(0..1; below {unrelated:.2f} means unrelated).\n"
    "\n"
    "Question: {question}"
)

HYBRID_SYSTEM = """Answer using the numbered knowledge AND, where it is not enough, your own general knowledge.
Cite document facts with their number like [1]; mark general knowledge with (general knowledge).
Use the calculator tool for any arithmetic. Be concise."""

Route = Literal["parametric", "tools", "retrieval", "hybrid"]


class State(InputState, OutputState, total=False):
    route: Route
    reason: str  # why this source
    router: str  # "local" | "llm" | "llm->local_fallback"
    signals: dict  # the store probe, the arithmetic found, the structured call's record
    expression: str | None  # for the calculator
    documents: list[Document]
    knowledge: list[dict]  # graded, refined strips
    grading: dict
    answer_strategy: str
    started_at: float  # the run's wall clock (runtime.bounds)
    # Plain channels (no reducer), reset by `route`: a thread asked a second question starts a fresh run.
    usage: Usage
    steps: list[dict]


class RouteChoice(BaseModel):
    route: Route = Field(
        description="parametric: general knowledge the model knows; tools: arithmetic for the calculator; "
        "retrieval: facts from the private documents; hybrid: documents plus general knowledge or arithmetic."
    )
    reason: str = Field(default="", max_length=160, description="One sentence: why this source.")
    expression: str | None = Field(
        default=None, max_length=120, description="For tools: the arithmetic expression to compute."
    )


def local_route(question: str, probe: dict[str, Any], has_model: bool) -> tuple[Route, str, str | None]:
    """Cheap signals: arithmetic -> tools; unrelated to the store -> parametric (with a model); else retrieval."""
    expression = arithmetic_expression(question)
    if expression:
        return "tools", f"arithmetic expression {expression!r}: the calculator computes it exactly", expression
    if probe["max_sim"] < UNRELATED_BELOW:
        if has_model:
            return (
                "parametric",
                f"unrelated to the documents (best similarity {probe['max_sim']:.2f}): general knowledge",
                None,
            )
        return (
            "retrieval",
            (
                f"looks like general knowledge (best similarity {probe['max_sim']:.2f}) "
                "but parametric answering needs a chat model: searching the documents instead"
            ),
            None,
        )
    return "retrieval", f"about the documents (best similarity {probe['max_sim']:.2f})", None


def answered(state: State, answer: Answer, step: dict[str, Any]) -> dict[str, Any]:
    """The state update of a node that wrote the answer."""
    return {
        "answer": answer.text,
        "sources": answer.sources,
        "usage": add_usage(state.get("usage"), answer.usage),
        "answer_strategy": answer.strategy,
        "steps": state["steps"] + [step],
    }


# ---------------------------------------------------------------------- nodes
def route(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Pick the source of the answer (LLM router, or cheap signals) and start a fresh run."""
    ctx = context(config, GRAPH)
    question = state["question"]
    probe = probe_store(ctx.store, question)
    chosen, reason, expression = local_route(question, probe, ctx.model is not None)
    strategy, usage, extra = "local", empty_usage(), {}
    mode = ctx.option("router", "auto")
    if mode == "llm" or (mode == "auto" and ctx.model is not None):
        result = structured_call(
            ctx.require_model("the LLM router"),
            RouteChoice,
            ROUTE_PROMPT.format(question=question, max_sim=probe["max_sim"], unrelated=UNRELATED_BELOW),
            fallback=RouteChoice(route=chosen, reason=reason, expression=expression),
            max_repairs=ctx.settings.max_structured_repairs,
        )
        usage, extra = result.usage, result.trace()
        strategy = "llm->local_fallback" if result.fallback else "llm"
        chosen, reason = result.value.route, result.value.reason or reason
        expression = (result.value.expression or expression) if chosen == "tools" else expression
    return fresh_run(
        route=chosen,
        reason=reason,
        router=strategy,
        expression=expression,
        signals={"probe": probe, "arithmetic": arithmetic_expression(question), **extra},
        documents=[],
        knowledge=[],
        grading={},
        usage=usage,
        steps=[{"step": "route", "route": chosen, "router": strategy, "reason": reason}],
    )


def use_tool(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Compute the arithmetic exactly with the calculator tool (the model answers if nothing is computable)."""
    ctx = context(config, GRAPH)
    answer = calculate(state["question"], state.get("expression"))
    if answer is None:  # the LLM chose tools but gave nothing computable
        answer = parametric_answer(state["question"], ctx.model)
    step = {"step": "use_tool", "tool": "calculator", "expression": state.get("expression"), "answer": answer.text}
    return answered(state, answer, step)


def answer_parametric(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the model's own knowledge (no sources); offline, say that a model is needed."""
    ctx = context(config, GRAPH)
    answer = parametric_answer(state["question"], ctx.model)
    return answered(state, answer, {"step": "answer_parametric", "strategy": answer.strategy})


def retrieve(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Retrieve the top-k chunks (hybrid: vectors and BM25 fused)."""
    ctx = context(config, GRAPH)
    docs = ctx.retriever("hybrid").search(state["question"])
    return {"documents": docs, "steps": state["steps"] + [{"step": "retrieve", "documents": len(docs)}]}


def grade(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Grade the retrieved chunks and keep their relevant strips, as CRAG's evaluator and refinement do."""
    ctx = context(config, GRAPH)
    evidence = gather_evidence(state["question"], state["documents"], ctx)
    return {
        "knowledge": [s.as_dict() for s in evidence.strips],
        "usage": add_usage(state.get("usage"), evidence.usage),
        "grading": {"evaluator": evidence.evaluator, "action": evidence.action, "scores": evidence.scores},
        "steps": state["steps"] + [evidence.step("grade")],
    }


def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the kept strips with citations, or abstain when none survived."""
    ctx = context(config, GRAPH)
    answer = generate_answer(
        state["question"],
        [Strip(**s) for s in state.get("knowledge", [])],
        ctx.model_within(state),
        documents=state.get("documents", []),
        store=ctx.store,
    )
    return answered(state, answer, {"step": "generate", "strategy": answer.strategy})


def generate_hybrid(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the strips plus the model's own knowledge, computing with the calculator tool."""
    ctx = context(config, GRAPH)
    if ctx.model is None:  # hybrid is only chosen by an LLM router, but a scripted route may say so offline
        needs_model = Answer(text=NEEDS_MODEL, sources=[], strategy="needs_model", abstained=True)
        return answered(state, needs_model, {"step": "generate_hybrid", "strategy": "needs_model"})
    from graphcraft.tools.calculator import calculator_tool

    strips = [Strip(**s) for s in state.get("knowledge", [])]
    numbers, sources = number_sources(strips)
    knowledge = "\n".join(f"[{numbers[s.chunk_id or s.source]}] {s.text}" for s in strips) or "(no relevant documents)"
    max_tool_calls = ctx.option("max_tool_calls", 3)
    run = run_with_tools(
        ctx.model,
        [SystemMessage(HYBRID_SYSTEM), HumanMessage(f"Knowledge:\n{knowledge}\n\nQuestion: {state['question']}")],
        [calculator_tool()],
        max_tool_calls=max_tool_calls,
        max_turns=max_tool_calls + 1,
    )
    step = {"step": "generate_hybrid", "tool_calls": run.tool_calls, "stop_reason": run.stop_reason}
    return answered(state, Answer(text=run.text, sources=sources, strategy="hybrid", usage=run.usage), step)


def finish(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Explain the run: the route taken and why, the router used, how the answer was written."""
    ctx = context(config, GRAPH)
    trace = make_trace(
        GRAPH,
        state,
        action=state.get("route"),
        stop_reason=stop_reason(state, ctx),
        reason=state.get("reason"),
        router=state.get("router"),
        signals=state.get("signals", {}),
        answer_strategy=state.get("answer_strategy"),
        grading=state.get("grading") or None,
    )
    return {"trace": trace}


# ---------------------------------------------------------------------- routing (the tool exchange bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that cut the hybrid route's tool exchange short (max_tool_calls, max_turns, a repeated
    call) or kept it from starting (the run's LLM calls, tokens or time); None otherwise."""
    if state.get("route") != "hybrid":
        return None
    exchange = [s for s in state.get("steps", []) if s["step"] == "generate_hybrid" and "stop_reason" in s]
    if exchange:
        return None if exchange[-1]["stop_reason"] == "answered" else exchange[-1]["stop_reason"]
    return ctx.bounds.reached(state)


def by_route(state: State) -> str:
    return {"parametric": "answer_parametric", "tools": "use_tool"}.get(state["route"], "retrieve")


def after_grade(state: State, config: RunnableConfig) -> str:
    """The hybrid exchange starts only within the run's budgets; otherwise the cited answer is written."""
    ctx = context(config, GRAPH)
    return "generate_hybrid" if state["route"] == "hybrid" and not stop_reason(state, ctx) else "generate"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    router: str = "auto",
    max_tool_calls: int = 3,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the router graph.

    model: chat model for the LLM router, parametric and hybrid answers (None: configured or offline).
    store: a ChunkStore to use instead of the configured one.
    router: "auto" (LLM when a model exists), "local" or "llm".
    max_tool_calls: calculator calls allowed in the hybrid exchange.
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        store=store,
        options={"router": router, "max_tool_calls": max_tool_calls},
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (route, use_tool, answer_parametric, retrieve, grade, generate, generate_hybrid, finish):
        g.add_node(node.__name__, node)
    g.add_edge(START, "route")
    g.add_conditional_edges("route", by_route, ["answer_parametric", "use_tool", "retrieve"])
    g.add_edge("retrieve", "grade")
    g.add_conditional_edges("grade", after_grade, ["generate", "generate_hybrid"])
    for node_name in ("use_tool", "answer_parametric", "generate", "generate_hybrid"):
        g.add_edge(node_name, "finish")
    g.add_edge("finish", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
