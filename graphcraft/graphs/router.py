"""Source routing: answer from the model's own knowledge, a tool, the documents, or both.

    route --parametric--> answer_parametric ----------------------------+
          --tools-------> use_tool -------------------------------------+--> finish
          --retrieval---> retrieve -> grade -> generate ----------------+
          --hybrid------> retrieve -> grade -> generate_hybrid ---------+

route: an LLM picks the source (structured output, told how close the store's best passage is),
or, without a model, cheap signals decide: arithmetic -> the calculator tool; a question far from
everything in the store -> parametric (which needs a model and says so offline); otherwise
retrieval. The choice and its reason are in the trace.
retrieval is the CRAG path from the shared chains (hybrid retrieval, relevance grading, strip
refinement, cited answer or abstention); hybrid adds the model's own knowledge and the
calculator to the retrieved evidence, in a bounded tool-calling exchange.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from graphcraft.chains.answer import generate_answer, number_sources
from graphcraft.chains.classify import UNRELATED_BELOW, probe_store
from graphcraft.chains.direct import NEEDS_MODEL, calculate, parametric_answer
from graphcraft.chains.evidence import gather_evidence
from graphcraft.chains.question import arithmetic_expression
from graphcraft.chains.refine import Strip
from graphcraft.chains.tool_calls import run_with_tools
from graphcraft.config import Settings, settings_from
from graphcraft.models import structured_call
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Source router: send a question to parametric knowledge, a tool (calculator), retrieval (CRAG path) or a "
    "hybrid, and explain why."
)

Route = Literal["parametric", "tools", "retrieval", "hybrid"]


class RouterState(TypedDict, total=False):
    question: str
    route: Route
    reason: str
    router: str  # "local" | "llm" | "llm->local_fallback"
    signals: dict
    expression: str | None
    documents: list[Document]
    knowledge: list[dict]
    grading: dict
    answer: str
    sources: list[dict]
    answer_strategy: str
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict], operator.add]
    trace: dict


class RouteChoice(BaseModel):
    route: Route = Field(
        description="parametric: general knowledge the model knows; tools: arithmetic for the calculator; "
        "retrieval: facts from the private documents; hybrid: documents plus general knowledge or arithmetic."
    )
    reason: str = Field(default="", max_length=160, description="One sentence: why this source.")
    expression: str | None = Field(
        default=None, max_length=120, description="For tools: the arithmetic expression to compute."
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


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    router: str = "auto",
    max_tool_calls: int = 3,
    **options: Any,
) -> Any:
    """Compile the router graph. router: "auto" (LLM when a model exists), "local" or "llm"."""
    settings = settings_from(settings, options)
    base = Resources(settings, model=model, store=store)

    # ------------------------------------------------------------------ nodes
    def route(state: RouterState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        question = state["question"]
        probe = probe_store(res.store, question)
        chosen, reason, expression = local_route(question, probe, res.model is not None)
        strategy, usage, extra = "local", None, {}
        if router == "llm" or (router == "auto" and res.model is not None):
            result = structured_call(
                res.require_model("the LLM router"),
                RouteChoice,
                ROUTE_PROMPT.format(question=question, max_sim=probe["max_sim"], unrelated=UNRELATED_BELOW),
                fallback=RouteChoice(route=chosen, reason=reason, expression=expression),
                max_repairs=res.settings.max_structured_repairs,
            )
            usage, extra = result.usage, result.trace()
            strategy = "llm->local_fallback" if result.fallback else "llm"
            chosen, reason = result.value.route, result.value.reason or reason
            expression = (result.value.expression or expression) if chosen == "tools" else expression
        return {
            "route": chosen,
            "reason": reason,
            "router": strategy,
            "expression": expression,
            "usage": usage,
            "signals": {"probe": probe, "arithmetic": arithmetic_expression(question), **extra},
            "steps": [{"step": "route", "route": chosen, "router": strategy, "reason": reason}],
        }

    def use_tool(state: RouterState, config: RunnableConfig) -> dict:
        answer = calculate(state["question"], state.get("expression"))
        if answer is None:  # the LLM chose tools but gave nothing computable
            answer = parametric_answer(state["question"], base.for_config(config).model)
        return {
            "answer": answer.text,
            "sources": [],
            "usage": answer.usage,
            "answer_strategy": answer.strategy,
            "steps": [
                {"step": "use_tool", "tool": "calculator", "expression": state.get("expression"), "answer": answer.text}
            ],
        }

    def answer_parametric(state: RouterState, config: RunnableConfig) -> dict:
        answer = parametric_answer(state["question"], base.for_config(config).model)
        return {
            "answer": answer.text,
            "sources": [],
            "usage": answer.usage,
            "answer_strategy": answer.strategy,
            "steps": [{"step": "answer_parametric", "strategy": answer.strategy}],
        }

    def retrieve(state: RouterState, config: RunnableConfig) -> dict:
        docs = base.for_config(config).retriever("hybrid").search(state["question"])
        return {"documents": docs, "steps": [{"step": "retrieve", "documents": len(docs)}]}

    def grade(state: RouterState, config: RunnableConfig) -> dict:
        evidence = gather_evidence(state["question"], state["documents"], base.for_config(config))
        return {
            "knowledge": [s.as_dict() for s in evidence.strips],
            "usage": evidence.usage,
            "grading": {"evaluator": evidence.evaluator, "action": evidence.action, "scores": evidence.scores},
            "steps": [evidence.step("grade")],
        }

    def generate(state: RouterState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        answer = generate_answer(
            state["question"],
            [Strip(**s) for s in state.get("knowledge", [])],
            res.model,
            documents=state.get("documents", []),
            store=res.store,
        )
        return {
            "answer": answer.text,
            "sources": answer.sources,
            "usage": answer.usage,
            "answer_strategy": answer.strategy,
            "steps": [{"step": "generate", "strategy": answer.strategy}],
        }

    def generate_hybrid(state: RouterState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        model = res.model
        if model is None:  # hybrid is only chosen by an LLM router, but a scripted route may say so offline
            return {
                "answer": NEEDS_MODEL,
                "sources": [],
                "answer_strategy": "needs_model",
                "steps": [{"step": "generate_hybrid", "strategy": "needs_model"}],
            }
        from graphcraft.tools.calculator import calculator_tool

        strips = [Strip(**s) for s in state.get("knowledge", [])]
        numbers, sources = number_sources(strips)
        knowledge = (
            "\n".join(f"[{numbers[s.chunk_id or s.source]}] {s.text}" for s in strips) or "(no relevant documents)"
        )
        run = run_with_tools(
            model,
            [SystemMessage(HYBRID_SYSTEM), HumanMessage(f"Knowledge:\n{knowledge}\n\nQuestion: {state['question']}")],
            [calculator_tool()],
            max_tool_calls=max_tool_calls,
            max_turns=max_tool_calls + 1,
        )
        return {
            "answer": run.text,
            "sources": sources,
            "usage": run.usage,
            "answer_strategy": "hybrid",
            "steps": [{"step": "generate_hybrid", "tool_calls": run.tool_calls, "stop_reason": run.stop_reason}],
        }

    def finish(state: RouterState) -> dict:
        trace = make_trace(
            "router",
            state,
            route=state.get("route"),
            reason=state.get("reason"),
            router=state.get("router"),
            signals=state.get("signals", {}),
            answer_strategy=state.get("answer_strategy"),
            grading=state.get("grading"),
            steps=state.get("steps", []),
        )
        return {"trace": trace}

    # ------------------------------------------------------------------ routing
    def by_route(state: RouterState) -> str:
        return {"parametric": "answer_parametric", "tools": "use_tool"}.get(state["route"], "retrieve")

    def after_grade(state: RouterState) -> str:
        return "generate_hybrid" if state["route"] == "hybrid" else "generate"

    g = StateGraph(RouterState)
    for node in (route, use_tool, answer_parametric, retrieve, grade, generate, generate_hybrid, finish):
        g.add_node(node.__name__, node)
    g.add_edge(START, "route")
    g.add_conditional_edges("route", by_route, ["answer_parametric", "use_tool", "retrieve"])
    g.add_edge("retrieve", "grade")
    g.add_conditional_edges("grade", after_grade, ["generate", "generate_hybrid"])
    for node_name in ("use_tool", "answer_parametric", "generate", "generate_hybrid"):
        g.add_edge(node_name, "finish")
    g.add_edge("finish", END)
    return g.compile(name="router")


graph = build()
