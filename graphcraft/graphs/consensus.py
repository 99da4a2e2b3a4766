"""Multi-agent consensus: independent positions, negotiation rounds, a decision by a pluggable rule.

    convene -> propose (x N, parallel) -> tally -> decide
                                            ^  |
                                            |  +-- not converged, within the round limit and the
                                            |      run's budgets --> revise (x N, parallel)
                                            +-------------------------------------+

- convene: sets up the team's subscriptions on the message broker (graphcraft.chains.broker,
  whose docstring maps it to the seed's publish/subscribe/topic queues): each agent publishes
  on "positions/<name>" and, by default, subscribes to every other agent's topic.
- propose: round 0; every agent states a structured position (stance, confidence, rationale)
  in parallel through a LangGraph `Send` fan-out, without seeing anyone else's (messages
  published in a superstep are only visible from the next one).
- tally: agreement level of the round (share of voters on the most common stance), its
  distribution, who was excluded for malformed output.
- revise: a negotiation round; each agent reads the others' latest positions from the topics
  it subscribes to and keeps or revises its own, again all in parallel.
- decide: aggregation of the last round's valid ballots by the chosen rule (majority,
  confidence, borda, unanimity with fallback, or a callable), with the vote, every dissent and
  its rationale, the agreement curve and per-agent LLM calls and tokens.

The loop stops, in `stop_reason` (read by the routing function `after_tally`), at convergence
(agreement >= threshold with a quorum of voters), at the round limit, or when the next round
could break one of the run's bounds (`Bounds`: LLM calls, tokens, wall-clock time); the
decision is then taken on the last round that had voters.

An agent whose model cannot be reached is excluded from that round and the tally names it and
the error; when such failures are not a minority of the panel (the usual case: one shared model
that is down), `tally` raises the ModelError instead of deciding on what is left.

Bounds: a team has at most `max_agents` (default 32) agents, since the default full mesh costs
n^2 subscriptions and every revise prompt carries n-1 positions; at most `max_concurrency`
(default 16) agent calls are in flight at once. The LLM-call budget is counted per round at its
worst case, n x (1 + max_repairs) calls, so a round is only started when it fits. If even round 0
does not fit, the run fails in `convene`, before any LLM call, with a ConsensusOptionError naming
the numbers, rather than quietly running a smaller panel than asked for (a partial panel would
change what the vote means). Unless a budget is given (a build option, a Settings value set
explicitly, or a run's configuration), the LLM-call budget is the one the round limit implies.
The chat model is resolved in `convene`, before any fan-out, so a missing model fails at once.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Overwrite, Send
from typing_extensions import TypedDict

from graphcraft.chains.aggregate import Decision, Rule, aggregate, agreement, distribution, get_rule, unanimity
from graphcraft.chains.broker import Message, inbox, merge_topics, publish, subscribe
from graphcraft.chains.negotiate import AgentSpec, as_ballot, make_agents, state_position
from graphcraft.config import Settings, get_settings, settings_from
from graphcraft.errors import GraphcraftError, ModelError
from graphcraft.runtime import result
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import start_clock
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.reducers import usage_by_key
from graphcraft.runtime.result import OutputState, make_trace

GRAPH = "consensus"
DESCRIPTION = (
    "Multi-agent consensus: parallel independent positions, negotiation rounds until agreement or a round limit, "
    "decision by majority/confidence/Borda/unanimity with dissent and metrics."
)

MAX_AGENTS = 32
MAX_CONCURRENCY = 16
ROUNDS = 3  # default of the rounds option: negotiation rounds after round 0
THRESHOLD = 0.75  # default agreement that counts as converged
QUORUM = 0.5  # default share of the panel that must vote for a round to converge
UNFUNDED = (
    "max_llm_calls={cap} cannot fund round 0: {agents} agents x (1 + {repairs} repairs) = {calls} calls in the "
    "worst case; raise max_llm_calls or lower the number of agents or max_repairs"
)
NO_DECISION = "No decision: no agent produced a valid position (stopped: {reason})."
DECISION = (
    "Decision: {decision} ({rule}; {held} of {agents} agents; agreement {agreement:.2f} in round {round}; "
    "stopped: {reason})."
)


class ConsensusOptionError(GraphcraftError):
    """A build option is out of range (rounds, threshold, budget...): a one-line CLI error."""


class InputState(result.InputState, total=False):
    """The question, and optionally the fixed stances to choose from (else the build option "options")."""

    options: list[str]


class State(InputState, OutputState, total=False):
    subscriptions: dict[str, list[str]]  # broker: agent -> topics it reads
    # Channels with reducers: the parallel propose/revise branches write topics, ballots and usage
    # in one superstep, and each tally adds its round. `convene` overwrites them, so a new question
    # on a thread starts a fresh run.
    topics: Annotated[dict[str, list[Message]], merge_topics]  # broker: topic -> messages
    ballots: Annotated[list[dict], operator.add]  # every agent's output, every round (ok / repaired / excluded)
    agent_usage: Annotated[dict[str, Usage], usage_by_key]
    usage: Annotated[Usage, add_usage]
    rounds: Annotated[list[dict], operator.add]  # one tally per round: agreement, distribution, excluded
    iterations: int  # negotiation rounds done (round 0 not counted)
    started_at: float  # the run's wall clock (runtime.bounds)
    decision: dict  # the aggregated decision of the last round with voters
    steps: list[dict]


class AgentTask(TypedDict, total=False):
    """What one `Send` gives a propose/revise branch."""

    agent: str
    question: str
    options: list[str]
    round: int
    previous: dict | None
    others: list[dict]


# ---------------------------------------------------------------------- the panel (build options of a run)
@dataclass(frozen=True)
class Panel:
    """The run's team and its own limits, read from the run's context."""

    team: list[AgentSpec]
    rounds: int
    threshold: float
    quorum: float
    repairs: int

    @property
    def per_round(self) -> int:
        """LLM calls of one round in the worst case: every agent repairs its position max_repairs times."""
        return len(self.team) * (1 + self.repairs)

    @property
    def voters_needed(self) -> int:
        return max(1, math.ceil(self.quorum * len(self.team)))

    def agent(self, name: str) -> AgentSpec:
        return next(a for a in self.team if a.name == name)


def panel(ctx: Context) -> Panel:
    """The run's panel: the build options, with the run's overrides, validated."""
    repairs = ctx.option("max_repairs", ctx.settings.max_structured_repairs)
    return Panel(
        team=ctx.option("team") or make_agents(None),
        rounds=_number(int, "rounds", ctx.option("rounds", ROUNDS), 0),
        threshold=_number(float, "threshold", ctx.option("threshold", THRESHOLD), 0.0, 1.0),
        quorum=_number(float, "quorum", ctx.option("quorum", QUORUM), 0.0, 1.0),
        repairs=_number(int, "max_repairs", repairs, 0),
    )


def voting_rule(ctx: Context) -> tuple[Rule, str]:
    """The aggregation rule of the run and its name for the trace."""
    rule = ctx.option("rule", "majority")
    if rule in ("unanimity", "unanimous"):
        return partial(unanimity, fallback=ctx.option("unanimity_fallback", "majority")), str(rule)
    return get_rule(rule), rule if isinstance(rule, str) else getattr(rule, "__name__", "custom")


def run_settings(settings: Settings | None, overrides: Mapping[str, Any], own: Mapping[str, Any]) -> Settings:
    """The graph's settings (`settings_from`), with the LLM-call budget that the round limit implies
    (every round at its worst case) when none was given: as a build option, a GRAPHCRAFT_MAX_LLM_CALLS
    variable, or a Settings object that sets it. A run's configuration may still override it."""
    merged = settings_from(settings, dict(overrides))
    given = settings if settings is not None else get_settings()
    if overrides.get("max_llm_calls") is not None or "max_llm_calls" in given.model_fields_set:
        return merged
    repairs = merged.max_structured_repairs if own["max_repairs"] is None else own["max_repairs"]
    return settings_from(merged, {"max_llm_calls": len(own["team"]) * (1 + repairs) * (own["rounds"] + 1)})


def _number(kind: type, name: str, value: Any, low: float, high: float | None = None) -> Any:
    """`value` as `kind` within [low, high], else a one-line ConsensusOptionError."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConsensusOptionError(f"{name} must be a number (got {value!r})") from None
    if number < low or (high is not None and number > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConsensusOptionError(f"{name} must be {bound} (got {value!r})")
    return number


def position_topic(agent: str) -> str:
    """The broker topic an agent publishes its positions on."""
    return f"positions/{agent}"


# ---------------------------------------------------------------------- nodes (the protocol's steps)
def convene(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Check the budget funds round 0 and a model exists, then subscribe every agent to the others' topics."""
    ctx = context(config, GRAPH)
    p = panel(ctx)
    # Checked when the run starts, not in build(): `graph = build()` runs at import and must not
    # fail because a global GRAPHCRAFT_MAX_LLM_CALLS is small.
    if unfunded({}, ctx):
        raise ConsensusOptionError(
            UNFUNDED.format(cap=ctx.settings.max_llm_calls, agents=len(p.team), repairs=p.repairs, calls=p.per_round)
        )
    # Resolve the shared model before any fan-out: a missing model fails here, once, not per agent.
    if any(agent.model is None for agent in p.team):
        ctx.require_model("the consensus graph")
    wiring = ctx.option("subscriptions") or {}
    names = {a.name for a in p.team}
    subs: dict[str, list[str]] = {}
    for agent in p.team:
        wanted = wiring.get(agent.name, [a.name for a in p.team if a is not agent])
        subs = subscribe(subs, agent.name, *(position_topic(w) if w in names else w for w in wanted))
    return {
        **start_clock(),
        "subscriptions": subs,
        "options": list(state.get("options") or ctx.option("options", [])),
        "topics": Overwrite({}),
        "ballots": Overwrite([]),
        "agent_usage": Overwrite({}),
        "usage": Overwrite(empty_usage()),
        "rounds": Overwrite([]),
        "iterations": 0,
        "decision": {},
        "answer": "",
        "sources": [],
        "trace": {},
        "steps": [{"step": "convene", "agents": len(p.team), "subscriptions": sum(len(t) for t in subs.values())}],
    }


def position(task: AgentTask, config: RunnableConfig) -> dict[str, Any]:
    """One agent states its position (round 0) or keeps or revises it (later rounds), and publishes it."""
    ctx = context(config, GRAPH)
    p = panel(ctx)
    agent = p.agent(task["agent"])
    record, usage = state_position(
        agent,
        agent.model or ctx.require_model(f"consensus agent {agent.name!r}"),
        task["question"],
        options=task.get("options", []),
        round=task["round"],
        previous=task.get("previous"),
        others=task.get("others", []),
        max_repairs=p.repairs,
    )
    update: dict[str, Any] = {"ballots": [record], "usage": usage, "agent_usage": {agent.name: usage}}
    if record["status"] != "excluded":
        content = {k: record[k] for k in ("agent", "stance", "confidence", "rationale", "ranking")}
        update.update(publish(position_topic(agent.name), agent.name, content, round=task["round"]))
    return update


def tally(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Measure the round's agreement and name who was excluded; a panel whose models are mostly down raises."""
    team = panel(context(config, GRAPH)).team
    r = len(state.get("rounds", []))
    records = [b for b in state.get("ballots", []) if b["round"] == r]
    unreachable = [b for b in records if b.get("model_error")]
    if unreachable and 2 * len(unreachable) >= len(team):  # not a minority: no panel left to speak of
        raise ModelError(unreachable[0]["errors"][0])
    ballots = [as_ballot(b) for b in records if b["status"] != "excluded"]
    summary = {
        "round": r,
        "agreement": round(agreement(ballots), 4),
        "voters": len(ballots),
        "distribution": distribution(ballots),
        "excluded": [
            {"agent": b["agent"], "errors": b.get("errors", []), "model_error": bool(b.get("model_error"))}
            for b in records
            if b["status"] == "excluded"
        ],
        "repaired": [b["agent"] for b in records if b["status"] == "repaired"],
        "changed": _changed(state.get("ballots", []), r),
    }
    steps = [
        {"step": "propose" if r == 0 else "revise", "round": r, "positions": len(records)},
        {"step": "tally", "round": r, "agreement": summary["agreement"], "voters": len(ballots)},
    ]
    return {"rounds": [summary], "iterations": r, "steps": state["steps"] + steps}


def decide(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Aggregate the last round that had voters by the rule; report the vote, the dissent and the curve."""
    ctx = context(config, GRAPH)
    p, (rule, rule_name) = panel(ctx), voting_rule(ctx)
    rounds_done = state["rounds"]
    final = next((r for r in reversed(rounds_done) if r["voters"]), rounds_done[-1])
    records = [b for b in state.get("ballots", []) if b["round"] == final["round"] and b["status"] != "excluded"]
    decided = aggregate([as_ballot(b) for b in records], rule, state.get("options", []))
    reason = stop_reason(state, ctx)
    converged = reason == "converged"
    steps = state["steps"] + [{"step": "decide", "rule": decided.rule, "decision": decided.decision}]
    decision = {
        **decided.as_dict(),
        "rule": rule_name if decided.fallback_rule is None else decided.rule,
        "agreement": final["agreement"],
        "decided_on_round": final["round"],
    }
    trace = make_trace(
        GRAPH,
        state,
        action="converged" if converged else "stopped",
        stop_reason=None if converged else reason,
        steps=steps,
        decision=decided.decision,
        decided_on_round=final["round"],
        rule=decision["rule"],
        converged=converged,
        rounds_to_convergence=rounds_done[-1]["round"] if converged else None,
        agreement_curve=[r["agreement"] for r in rounds_done],
        rounds=rounds_done,
        vote=decided.vote,
        tie=decided.tie,
        tie_break=decided.tie_break,
        fallback_rule=decided.fallback_rule,
        dissent=decided.dissent,
        agents=_per_agent(p.team, state),
        bounds={
            "rounds": p.rounds,
            "threshold": p.threshold,
            "quorum": p.quorum,
            "max_llm_calls": ctx.bounds.max_llm_calls,
            "token_budget": ctx.bounds.token_budget,
            "max_seconds": ctx.bounds.max_seconds,
        },
    )
    answer = _answer_text(decided, final, len(p.team), reason)
    return {"decision": decision, "answer": answer, "sources": [], "trace": trace, "steps": steps}


def _latest(ballots: Sequence[Mapping[str, Any]], agent: str) -> dict | None:
    """The agent's most recent valid ballot (a round where it was excluded does not erase its stance)."""
    return next((dict(b) for b in reversed(ballots) if b["agent"] == agent and b["status"] != "excluded"), None)


def _latest_positions(state: State, agent: str) -> list[dict]:
    """The newest message from each sender on the agent's subscribed topics (from the broker)."""
    newest: dict[str, dict] = {}
    for message in inbox(state.get("topics"), state.get("subscriptions"), agent):
        newest[message["sender"]] = dict(message)
    return list(newest.values())


def _changed(ballots: Sequence[Mapping[str, Any]], r: int) -> list[dict]:
    """Agents whose stance in round r differs from their previous valid stance."""
    if r == 0:
        return []
    out = []
    for b in ballots:
        if b["round"] != r or b["status"] == "excluded":
            continue
        before = _latest([x for x in ballots if x["round"] < r], b["agent"])
        if before is not None and before["stance"] != b["stance"]:
            out.append({"agent": b["agent"], "from": before["stance"], "to": b["stance"]})
    return out


def _per_agent(team: Sequence[AgentSpec], state: State) -> dict[str, dict]:
    usage = state.get("agent_usage", {})
    out = {}
    for agent in team:
        mine = [b for b in state.get("ballots", []) if b["agent"] == agent.name]
        u = usage.get(agent.name, {})
        out[agent.name] = {
            "role": agent.role,
            "model": _model_name(agent.model),
            "llm_calls": int(u.get("llm_calls", 0)),
            "prompt_tokens": int(u.get("prompt_tokens", 0)),
            "completion_tokens": int(u.get("completion_tokens", 0)),
            "excluded_rounds": [b["round"] for b in mine if b["status"] == "excluded"],
            "repaired_rounds": [b["round"] for b in mine if b["status"] == "repaired"],
            "stances": [b.get("stance") for b in mine],
        }
    return out


def _model_name(model: BaseChatModel | None) -> str:
    if model is None:
        return "default"
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)


def _answer_text(decided: Decision, final: Mapping[str, Any], n_agents: int, reason: str | None) -> str:
    if decided.decision is None:
        return NO_DECISION.format(reason=reason)
    text = DECISION.format(
        decision=decided.decision,
        rule=decided.rule + (f" -> {decided.fallback_rule}" if decided.fallback_rule else ""),
        held=decided.counts.get(decided.decision, 0),
        agents=n_agents,
        agreement=final["agreement"],
        round=final["round"],
        reason=reason,
    )
    if decided.tie:
        text += f" Tie between {', '.join(decided.tied)} broken by {decided.tie_break}."
    if decided.dissent:
        text += " Dissent: " + "; ".join(f"{d['agent']} ({d['stance']}): {d['rationale']}" for d in decided.dissent)
    return text


# ---------------------------------------------------------------------- routing (every loop bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """Why negotiation ends after the last tally: converged, round_limit or a run bound; None to go on."""
    p = panel(ctx)
    last = state["rounds"][-1]
    if last["agreement"] >= p.threshold and last["voters"] >= p.voters_needed:
        return "converged"
    if last["round"] >= p.rounds:
        return "round_limit"
    return unfunded(state, ctx)


def unfunded(state: Mapping[str, Any], ctx: Context) -> str | None:
    """The run bound that another round could break: its worst-case calls must all fit in the budget.

    A round may start when the budget is not yet reached with all but the last of those calls spent.
    """
    worst = add_usage(state.get("usage"), {"llm_calls": panel(ctx).per_round - 1})
    return ctx.bounds.reached({**state, "usage": worst})


def fan_out_proposals(state: State, config: RunnableConfig) -> list[Send]:
    """Round 0: every agent at once, each on its own."""
    options = state.get("options", [])
    return [
        Send("propose", AgentTask(agent=a.name, question=state["question"], options=options, round=0))
        for a in panel(context(config, GRAPH)).team
    ]


def after_tally(state: State, config: RunnableConfig) -> list[Send] | str:
    """Decide when `stop_reason` says so; otherwise every agent revises, reading the topics it subscribes to."""
    ctx = context(config, GRAPH)
    if stop_reason(state, ctx) is not None:
        return "decide"
    nxt = state["rounds"][-1]["round"] + 1
    return [
        Send(
            "revise",
            AgentTask(
                agent=a.name,
                question=state["question"],
                options=state.get("options", []),
                round=nxt,
                previous=_latest(state.get("ballots", []), a.name),
                others=_latest_positions(state, a.name),
            ),
        )
        for a in panel(ctx).team
    ]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    agents: int | Sequence[AgentSpec | Mapping[str, Any] | str] | None = None,
    rounds: int = ROUNDS,
    threshold: float = THRESHOLD,
    quorum: float = QUORUM,
    rule: str | Callable[..., Decision] = "majority",
    unanimity_fallback: str = "majority",
    options: Sequence[str] = (),
    max_repairs: int | None = None,
    subscriptions: Mapping[str, Sequence[str]] | None = None,
    max_agents: int = MAX_AGENTS,
    max_concurrency: int = MAX_CONCURRENCY,
    checkpointer: Any = None,
    **overrides: Any,
) -> Any:
    """Compile the consensus graph (options out of range raise TeamError / ConsensusOptionError).

    model: default chat model for agents without their own (None: the configured one, resolved at run time).
    agents: team size (default roles) or a list of AgentSpec / dicts / role names; each may carry a model.
    rounds: negotiation rounds after round 0. threshold / quorum: converged when agreement >= threshold
      with voters >= quorum x agents. rule: majority | confidence | borda | unanimity (then `unanimity_fallback`).
    options: fixed stances. max_repairs: of a malformed position (default: Settings.max_structured_repairs).
    subscriptions: agent -> agents (or topics) it listens to, e.g. a ring; default: everyone else.
    max_agents: largest team accepted. max_concurrency: agent calls in flight at once.
    overrides: Settings fields, e.g. max_llm_calls or token_budget (the default call budget: `run_settings`).
    """
    team = make_agents(agents, max_agents=max_agents)
    get_rule(rule)  # an unknown rule fails here, not in the middle of a run
    own = {
        "team": team,
        "rounds": _number(int, "rounds", rounds, 0),  # a command line may pass strings
        "threshold": _number(float, "threshold", threshold, 0.0, 1.0),
        "quorum": _number(float, "quorum", quorum, 0.0, 1.0),
        "rule": rule,
        "unanimity_fallback": unanimity_fallback,
        "options": list(options),
        "max_repairs": None if max_repairs is None else _number(int, "max_repairs", max_repairs, 0),
        "subscriptions": subscriptions,
    }
    ctx = Context(run_settings(settings, overrides, own), model=model, options=own)
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for name, node in (("convene", convene), ("propose", position), ("revise", position), ("tally", tally)):
        g.add_node(name, node)  # type: ignore[arg-type]  # a Send target's input is the payload, not State
    g.add_node("decide", decide)
    g.add_edge(START, "convene")
    g.add_conditional_edges("convene", fan_out_proposals, ["propose"])
    g.add_edge("propose", "tally")
    g.add_edge("revise", "tally")
    g.add_conditional_edges("tally", after_tally, ["revise", "decide"])
    g.add_edge("decide", END)
    # Up to max_concurrency agents of a round at once (LangGraph's default pool has cpu+4 threads);
    # the recursion limit is sized so that the round limit, not LangGraph, ends the loop.
    concurrency = max(1, min(len(team), _number(int, "max_concurrency", max_concurrency, 1)))
    compiled = g.compile(name=GRAPH, checkpointer=checkpointer)
    compiled = compiled.with_config(max_concurrency=concurrency, recursion_limit=4 * (own["rounds"] + 2) + 10)
    return bind_context(compiled, GRAPH, ctx)


graph = build()
