"""Self-consistency: sample several chain-of-thought answers and take the majority vote (Wang et al. 2022,
arXiv:2203.11171).

    START --n samples, in parallel (Send)--> sample x n -> vote

Each sample reasons step by step and ends with "Answer: ...". Answers are normalised (case,
punctuation, number formats) before voting; the winner's agreement ratio is reported, and a
tie goes to the answer that appeared first. Sampling uses a higher temperature when the model
has one, so samples differ. One sample is one LLM call, so the call budget caps the sample count.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from graphcraft.chains.chain_of_thought import cot_messages, parse_cot
from graphcraft.config import Settings, settings_from
from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "self_consistency"
DESCRIPTION = "Self-consistency: n chain-of-thought samples in parallel, majority vote over normalised answers."
DEFAULT_SAMPLES = 5
DEFAULT_TEMPERATURE = 0.7


def by_index(old: list[dict[str, Any]] | None, new: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Reducer of the parallel samples: each lands at its own index, replacing the one a previous run
    on the same thread (Studio, LangGraph Server) left there."""
    merged = {s["index"]: s for s in (old or []) + (new or [])}
    return [merged[i] for i in sorted(merged)]


class State(InputState, OutputState, total=False):
    samples: Annotated[list[dict[str, Any]], by_index]  # one per reasoning path, each with the usage it cost
    usage: Usage


class SampleTask(TypedDict):
    """What one parallel `sample` receives (its Send payload)."""

    question: str
    index: int


def sampler(ctx: Context) -> BaseChatModel:
    """The chat model at the sampling temperature (when it has one), so that samples differ."""
    model = ctx.require_model("the self_consistency graph")
    temperature = ctx.option("temperature")
    if temperature is not None and "temperature" in type(model).model_fields:
        return model.model_copy(update={"temperature": float(temperature)})
    return model


# ---------------------------------------------------------------------- nodes (the paper's steps)
def sample(task: SampleTask, config: RunnableConfig) -> dict[str, Any]:
    """Sample one chain-of-thought reasoning path and read its final answer."""
    ctx = context(config, GRAPH)
    reply, usage = invoke_llm(sampler(ctx), cot_messages(task["question"]))
    return {"samples": [{"index": task["index"], **parse_cot(message_text(reply)), "usage": usage}]}


def vote(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Majority vote over the normalised answers of this run's samples; a tie goes to the first seen."""
    ctx = context(config, GRAPH)
    drawn, reason = samples_to_draw(ctx)
    samples = [s for s in state.get("samples", []) if s["index"] < drawn]
    valid = [s for s in samples if s["normalized"]]
    counts = Counter(s["normalized"] for s in valid)
    winner, answer, agreement = "", "", 0.0
    if counts:
        first_seen = {key: i for i, key in reversed(list(enumerate(s["normalized"] for s in valid)))}
        winner = max(counts, key=lambda key: (counts[key], -first_seen[key]))
        answer = next(s["answer"] for s in valid if s["normalized"] == winner)
        agreement = counts[winner] / len(samples)
    unanimous = len(counts) == 1 and len(valid) == len(samples)
    usage = empty_usage()
    for s in samples:
        usage = add_usage(usage, s["usage"])
    steps = [{"step": "sample", "index": s["index"], "answer": s["answer"]} for s in samples]
    trace = make_trace(
        GRAPH,
        state,
        action="unanimous" if unanimous else "majority" if counts else "no_answer",
        stop_reason=reason,
        iterations=len(samples),
        steps=steps + [{"step": "vote", "winner": winner, "votes": counts[winner] if counts else 0}],
        usage=usage,
        n=drawn,
        votes=dict(counts.most_common()),
        winner=winner,
        agreement=round(agreement, 3),
        answers=[s["answer"] for s in samples],
        unanimous=unanimous,
    )
    return {"answer": answer, "sources": [], "usage": usage, "trace": trace}


# ---------------------------------------------------------------------- routing (the sample count is bounded here)
def samples_to_draw(ctx: Context) -> tuple[int, str | None]:
    """(how many samples, the bound that cut them): n, or fewer when the LLM-call budget ends first."""
    bounds = ctx.bounds
    n = max(1, ctx.option("n", DEFAULT_SAMPLES))
    for drawn in range(n):  # one call per sample: the calls the samples before this one cost
        if reached := bounds.reached({"usage": {"llm_calls": drawn}}):
            return max(1, drawn), reached
    return n, None


def fan_out(state: State, config: RunnableConfig) -> list[Send]:
    """One `sample` per reasoning path, all at once."""
    drawn, _ = samples_to_draw(context(config, GRAPH))
    return [Send("sample", SampleTask(question=state["question"], index=i)) for i in range(drawn)]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    n: int = DEFAULT_SAMPLES,
    temperature: float | None = DEFAULT_TEMPERATURE,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the self-consistency graph.

    model: the chat model that samples (None: the configured one).
    n: samples to draw, capped by max_llm_calls (a Settings field, given here or per run).
    temperature: the sampling temperature for a model that has one (None: the model's own).
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh vote).
    """
    ctx = Context(settings_from(settings, options), model=model, options={"n": n, "temperature": temperature})
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    g.add_node("sample", sample)  # type: ignore[arg-type]  # a Send target: its input is the payload
    g.add_node("vote", vote)
    g.add_conditional_edges(START, fan_out, ["sample"])
    g.add_edge("sample", "vote")
    g.add_edge("vote", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
