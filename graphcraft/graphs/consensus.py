"""Multi-agent consensus: independent positions, negotiation rounds, a decision by a pluggable rule.

convene -> propose (x N, parallel) -> tally -> [revise (x N, parallel) -> tally]* -> decide

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

The loop stops, in the routing function `after_tally`, at convergence (agreement >= threshold
with a quorum of voters), at the round limit, when the LLM-call or token budget is spent, or
when the run's wall-clock time (Settings.max_seconds) is up; the decision is then taken on the
last round that had voters.

An agent whose model cannot be reached is excluded from that round and the tally names it and
the error; when such failures are not a minority of the panel (the usual case: one shared model
that is down), `tally` raises the ModelError instead of deciding on what is left.

Bounds: a team has at most `max_agents` (default 32) agents, since the default full mesh costs
n^2 subscriptions and every revise prompt carries n-1 positions; at most `max_concurrency`
(default 16) agent calls are in flight at once. The LLM-call budget is counted per round at its
worst case, n x (1 + max_repairs) calls, so a round is only started when it fits. If even round 0
does not fit, the run fails in `convene`, before any LLM call, with a ConsensusOptionError naming
the numbers, rather than quietly running a smaller panel than asked for (a partial panel would
change what the vote means).
The chat model is resolved in `convene`, before any fan-out, so a missing model fails at once.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from graphcraft.chains.aggregate import Decision, aggregate, agreement, distribution, get_rule, unanimity
from graphcraft.chains.broker import Message, inbox, merge_topics, publish, subscribe
from graphcraft.chains.negotiate import AgentSpec, as_ballot, make_agents, state_position
from graphcraft.config import Settings, get_settings
from graphcraft.errors import GraphcraftError, ModelError
from graphcraft.runtime.accounting import Usage, add_usage, total_tokens
from graphcraft.runtime.bounds import out_of_time, start_clock
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.reducers import usage_by_key
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Multi-agent consensus: parallel independent positions, negotiation rounds until agreement or a round limit, "
    "decision by majority/confidence/Borda/unanimity with dissent and metrics."
)

MAX_AGENTS = 32
MAX_CONCURRENCY = 16


class ConsensusOptionError(GraphcraftError, ValueError):
    """A build option is out of range (rounds, threshold, budget...): a one-line CLI error."""


def position_topic(agent: str) -> str:
    """The broker topic an agent publishes its positions on."""
    return f"positions/{agent}"


class ConsensusState(TypedDict, total=False):
    question: str
    options: list[str]  # optional fixed stances to choose from
    subscriptions: dict[str, list[str]]  # broker: agent -> topics it reads
    topics: Annotated[dict[str, list[Message]], merge_topics]  # broker: topic -> messages
    ballots: Annotated[list[dict], operator.add]  # every agent's output, every round (ok / repaired / excluded)
    rounds: Annotated[list[dict], operator.add]  # one tally per round: agreement, distribution, excluded
    agent_usage: Annotated[dict[str, Usage], usage_by_key]
    usage: Annotated[Usage, add_usage]
    iterations: int  # negotiation rounds done (round 0 not counted)
    started_at: float  # the run's wall clock (set by convene)
    decision: dict
    answer: str
    sources: list[dict]
    trace: dict


class AgentTask(TypedDict, total=False):
    """What one `Send` gives a propose/revise branch."""

    agent: str
    question: str
    options: list[str]
    round: int
    previous: dict | None
    others: list[dict]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    agents: int | Sequence[AgentSpec | Mapping[str, Any] | str] | None = None,
    rounds: int = 3,
    threshold: float = 0.75,
    quorum: float = 0.5,
    rule: str | Callable[..., Decision] = "majority",
    unanimity_fallback: str = "majority",
    options: Sequence[str] = (),
    max_repairs: int | None = None,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    subscriptions: Mapping[str, Sequence[str]] | None = None,
    max_agents: int = MAX_AGENTS,
    max_concurrency: int = MAX_CONCURRENCY,
    **settings_overrides: Any,
) -> Any:
    """Compile the consensus graph.

    model: default chat model for agents without their own (None: the configured one, resolved at run time).
    agents: team size (default roles) or a list of AgentSpec / dicts / role names; each may carry a model.
    rounds: maximum negotiation rounds after the independent round 0.
    threshold / quorum: converged when agreement >= threshold and voters >= quorum x agents.
    rule: majority | confidence | borda | unanimity (falling back to `unanimity_fallback`) | callable.
    options: fixed stances (a stance outside them is repaired like malformed output).
    max_llm_calls / token_budget: stop starting new rounds once spent (defaults: Settings values when
      set explicitly, else the calls the round limit implies; Settings.token_budget).
    subscriptions: agent -> agents (or topics) it listens to; default: everyone else (a full mesh).
      Each agent publishes on "positions/<name>", so a ring or a hub is just a subscription map.
    max_agents: largest team accepted (TeamError beyond it). max_concurrency: agent calls in flight at once.
    Raises TeamError / ConsensusOptionError (GraphcraftErrors) for options out of range; a run whose
    LLM-call budget cannot fund round 0 (agents x (1 + max_repairs) calls in the worst case) fails
    with ConsensusOptionError before any call.
    """
    settings = settings or get_settings(**{k: v for k, v in settings_overrides.items() if k in Settings.model_fields})
    team = make_agents(agents, max_agents=max_agents)
    by_name = {a.name: a for a in team}
    rounds = _number(int, "rounds", rounds, 0)  # a CLI may pass strings
    threshold = _number(float, "threshold", threshold, 0.0, 1.0)
    quorum = _number(float, "quorum", quorum, 0.0, 1.0)
    repairs = _number(int, "max_repairs", settings.max_structured_repairs if max_repairs is None else max_repairs, 0)
    per_round = len(team) * (1 + repairs)  # worst-case LLM calls of one round
    # A budget set explicitly (argument, GRAPHCRAFT_* variable or a CLI override of Settings) wins;
    # otherwise the call cap is what the round limit already implies.
    if max_llm_calls is None and "max_llm_calls" in settings.model_fields_set:
        max_llm_calls = settings.max_llm_calls
    call_cap = (
        _number(int, "max_llm_calls", max_llm_calls, 0) if max_llm_calls is not None else per_round * (rounds + 1)
    )
    concurrency = max(1, min(len(team), _number(int, "max_concurrency", max_concurrency, 1)))
    tokens_cap = token_budget if token_budget is not None else settings.token_budget
    max_seconds = settings.max_seconds
    chosen_rule = (
        partial(unanimity, fallback=unanimity_fallback) if rule in ("unanimity", "unanimous") else get_rule(rule)
    )
    rule_label = rule if isinstance(rule, str) else getattr(rule, "__name__", "custom")
    base = Resources(settings, model=model)
    fixed_options = list(options)

    def agent_model(agent: AgentSpec, config: RunnableConfig) -> BaseChatModel:
        return agent.model or base.for_config(config).require_model(f"consensus agent {agent.name!r}")

    # ------------------------------------------------------------------ nodes
    def convene(state: ConsensusState, config: RunnableConfig) -> dict:
        # Checked when the run starts, not in build(): `graph = build()` runs at import and must not
        # fail because a global GRAPHCRAFT_MAX_LLM_CALLS is small.
        if per_round > call_cap:
            raise ConsensusOptionError(
                f"max_llm_calls={call_cap} cannot fund round 0: "
                f"{len(team)} agents x (1 + {repairs} repairs) = {per_round} "
                "calls in the worst case; raise max_llm_calls or lower the number of agents or max_repairs"
            )
        # Resolve the shared model before any fan-out: a missing model fails here, once, not per agent.
        if any(agent.model is None for agent in team):
            base.for_config(config).require_model("the consensus graph")
        subs: dict[str, list[str]] = {}
        for agent in team:
            wanted = (subscriptions or {}).get(agent.name, [a.name for a in team if a is not agent])
            subs = subscribe(subs, agent.name, *(position_topic(w) if w in by_name else w for w in wanted))
        return {
            **start_clock(),
            "subscriptions": subs,
            "options": list(state.get("options") or fixed_options),
            "iterations": 0,
        }

    def position(task: AgentTask, config: RunnableConfig) -> dict:
        agent = by_name[task["agent"]]
        record, usage = state_position(
            agent,
            agent_model(agent, config),
            task["question"],
            options=task.get("options", []),
            round=task["round"],
            previous=task.get("previous"),
            others=task.get("others", []),
            max_repairs=repairs,
        )
        update: dict[str, Any] = {"ballots": [record], "usage": usage, "agent_usage": {agent.name: usage}}
        if record["status"] != "excluded":
            content = {k: record[k] for k in ("agent", "stance", "confidence", "rationale", "ranking")}
            update.update(publish(position_topic(agent.name), agent.name, content, round=task["round"]))
        return update

    def tally(state: ConsensusState) -> dict:
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
        return {"rounds": [summary], "iterations": r}

    def decide(state: ConsensusState) -> dict:
        rounds_done = state.get("rounds", [])
        final = next((r for r in reversed(rounds_done) if r["voters"]), rounds_done[-1])
        records = [b for b in state.get("ballots", []) if b["round"] == final["round"] and b["status"] != "excluded"]
        decided = aggregate([as_ballot(b) for b in records], chosen_rule, state.get("options", []))
        reason = stop_reason(state)
        curve = [r["agreement"] for r in rounds_done]
        converged = reason == "converged"
        per_agent = _per_agent(team, state)
        result = {
            **decided.as_dict(),
            "rule": rule_label if decided.fallback_rule is None else decided.rule,
            "agreement": final["agreement"],
            "decided_on_round": final["round"],
        }
        answer = _answer_text(decided, final, len(team), reason)
        trace = make_trace(
            "consensus",
            state,
            decision=decided.decision,
            rule=result["rule"],
            stop_reason=reason,
            converged=converged,
            rounds_to_convergence=rounds_done[-1]["round"] if converged else None,
            agreement_curve=curve,
            rounds=rounds_done,
            vote=decided.vote,
            tie=decided.tie,
            tie_break=decided.tie_break,
            fallback_rule=decided.fallback_rule,
            dissent=decided.dissent,
            agents=per_agent,
            bounds={
                "rounds": rounds,
                "threshold": threshold,
                "quorum": quorum,
                "max_llm_calls": call_cap,
                "token_budget": tokens_cap,
                "max_seconds": max_seconds,
            },
        )
        return {"decision": result, "answer": answer, "sources": [], "trace": trace}

    # ------------------------------------------------------------------ routing (the loop's bounds live here)
    def stop_reason(state: ConsensusState) -> str | None:
        last = state["rounds"][-1]
        if last["agreement"] >= threshold and last["voters"] >= max(1, math.ceil(quorum * len(team))):
            return "converged"
        if last["round"] >= rounds:
            return "round_limit"
        usage = state.get("usage", {})
        if usage.get("llm_calls", 0) + per_round > call_cap:  # the next round's worst case must fit
            return "max_llm_calls"
        if total_tokens(usage) >= tokens_cap:
            return "token_budget"
        if out_of_time(state, max_seconds):
            return "max_seconds"
        return None

    def fan_out_proposals(state: ConsensusState) -> list[Send]:
        return [
            Send(
                "propose",
                AgentTask(agent=a.name, question=state["question"], options=state.get("options", []), round=0),
            )
            for a in team
        ]

    def after_tally(state: ConsensusState) -> list[Send] | str:
        if stop_reason(state) is not None:
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
            for a in team
        ]

    g = StateGraph(ConsensusState)
    g.add_node("convene", convene)
    g.add_node("propose", position)  # type: ignore[arg-type]  # LangGraph's overloads reject a Send target (its input is the payload)
    g.add_node("revise", position)  # type: ignore[arg-type]  # LangGraph's overloads reject a Send target (its input is the payload)
    g.add_node("tally", tally)
    g.add_node("decide", decide)
    g.add_edge(START, "convene")
    g.add_conditional_edges("convene", fan_out_proposals, ["propose"])
    g.add_edge("propose", "tally")
    g.add_edge("revise", "tally")
    g.add_conditional_edges("tally", after_tally, ["revise", "decide"])
    g.add_edge("decide", END)
    # Up to `concurrency` agents of a round run at once (the default thread pool would cap them at
    # cpu+4), and the recursion limit is sized so that the round limit, not LangGraph, ends the loop.
    return g.compile(name="consensus").with_config(max_concurrency=concurrency, recursion_limit=4 * (rounds + 2) + 10)


# ---------------------------------------------------------------------------- helpers


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


def _latest(ballots: Sequence[Mapping[str, Any]], agent: str) -> dict | None:
    """The agent's most recent valid ballot (a round where it was excluded does not erase its stance)."""
    return next((dict(b) for b in reversed(ballots) if b["agent"] == agent and b["status"] != "excluded"), None)


def _latest_positions(state: ConsensusState, agent: str) -> list[dict]:
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


def _per_agent(team: Sequence[AgentSpec], state: ConsensusState) -> dict[str, dict]:
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
        return f"No decision: no agent produced a valid position (stopped: {reason})."
    held = decided.counts.get(decided.decision, 0)
    text = (
        f"Decision: {decided.decision} "
        f"({decided.rule}{' -> ' + decided.fallback_rule if decided.fallback_rule else ''}; "
        f"{held} of {n_agents} agents; agreement {final['agreement']:.2f} in round {final['round']}; "
        f"stopped: {reason})."
    )
    if decided.tie:
        text += f" Tie between {', '.join(decided.tied)} broken by {decided.tie_break}."
    if decided.dissent:
        text += " Dissent: " + "; ".join(f"{d['agent']} ({d['stance']}): {d['rationale']}" for d in decided.dissent)
    return text


graph = build()
