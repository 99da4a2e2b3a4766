"""Self-consistency: sample several chain-of-thought answers and take the majority vote.

sample (x n, in parallel via Send) -> vote

Each sample reasons step by step and ends with "Answer: ...". Answers are normalised (case,
punctuation, number formats) before voting; the winner's agreement ratio is reported, and a
tie goes to the answer that appeared first. Sampling uses a higher temperature when the model
has one, so samples differ.
"""

from __future__ import annotations

import operator
from collections import Counter
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from graphcraft.chains.chain_of_thought import cot_messages, parse_cot
from graphcraft.config import Settings
from graphcraft.models import invoke_llm, message_text, require_chat_model
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.bounds import Bounds, make_trace

DESCRIPTION = "Self-consistency: n chain-of-thought samples in parallel, majority vote over normalised answers."


class SelfConsistencyState(TypedDict, total=False):
    question: str
    samples: Annotated[list[dict[str, Any]], operator.add]
    usage: Annotated[Usage, add_usage]
    answer: str
    agreement: float
    sources: list[dict[str, Any]]
    trace: dict[str, Any]


class SampleTask(TypedDict):
    question: str
    index: int


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    n: int = 5,
    temperature: float | None = 0.7,
    max_llm_calls: int | None = None,
    checkpointer: Any = None,
):
    """Compile the graph. n samples, capped by the LLM-call budget (the bound is the sample count)."""
    bounds = Bounds.from_settings(settings, max_llm_calls=max_llm_calls)
    samples_to_draw = max(1, min(n, bounds.max_llm_calls))

    def sampler() -> BaseChatModel:
        base = require_chat_model(model, "the self_consistency graph", settings)
        if temperature is not None and "temperature" in type(base).model_fields:
            return base.model_copy(update={"temperature": temperature})
        return base

    def fan_out(state: SelfConsistencyState) -> list[Send]:
        return [Send("sample", SampleTask(question=state["question"], index=i)) for i in range(samples_to_draw)]

    def sample(task: SampleTask) -> dict:
        reply, usage = invoke_llm(sampler(), cot_messages(task["question"]))
        parsed = parse_cot(message_text(reply))
        return {"samples": [{"index": task["index"], **parsed}], "usage": usage}

    def vote(state: SelfConsistencyState) -> dict:
        samples = sorted(state.get("samples", []), key=lambda s: s["index"])
        valid = [s for s in samples if s["normalized"]]
        counts = Counter(s["normalized"] for s in valid)
        if counts:
            first_seen = {key: i for i, key in reversed(list(enumerate(s["normalized"] for s in valid)))}
            winner = max(counts, key=lambda key: (counts[key], -first_seen[key]))
            answer = next(s["answer"] for s in valid if s["normalized"] == winner)
            agreement = counts[winner] / len(samples)
        else:
            winner, answer, agreement = "", "", 0.0
        trace = make_trace(
            "self_consistency",
            state.get("usage"),
            len(samples),
            n=samples_to_draw,
            votes=dict(counts.most_common()),
            winner=winner,
            agreement=round(agreement, 3),
            answers=[s["answer"] for s in samples],
            unanimous=len(counts) == 1 and len(valid) == len(samples),
        )
        return {"answer": answer, "agreement": agreement, "sources": [], "trace": trace}

    g = StateGraph(SelfConsistencyState)
    g.add_node("sample", sample)  # type: ignore[arg-type]  # LangGraph's overloads reject a Send target (its input is the payload)
    g.add_node("vote", vote)
    g.add_conditional_edges(START, fan_out, ["sample"])
    g.add_edge("sample", "vote")
    g.add_edge("vote", END)
    return g.compile(checkpointer=checkpointer)


graph = build()
