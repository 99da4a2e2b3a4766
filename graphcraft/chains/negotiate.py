"""One agent's turn in a negotiation: state a structured position, or revise it after reading others'.

A position is structured (stance, confidence in [0, 1], rationale, optional ranking of the
acceptable stances) and goes through `structured_call`: a malformed reply is sent back for a
bounded number of repairs; if it still fails, the agent is excluded from that round and the
ballot says so (status "excluded", with the validation errors). Stances are normalised
("Yes", "yes." and "YES" are one stance); when the question has a fixed list of options, a
stance outside them is a validation error, so it is repaired like any other.

Agents are data (`AgentSpec`: name, role, persona, and optionally their own chat model), so a
team can mix providers and models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, create_model, field_validator
from pydantic.config import JsonDict

from graphcraft.chains.aggregate import Ballot, normalize_stance
from graphcraft.errors import GraphcraftError, ModelError, NoChatModelError
from graphcraft.models import structured_call, with_counter
from graphcraft.runtime.accounting import Usage, UsageCallback

# Length limits appear in the JSON schema, so a grammar-constrained model cannot run past its
# token limit in the middle of a string; other providers are asked to shorten (a repair).
STANCE_CHARS = 80
RATIONALE_CHARS = 300
MAX_RANKING = 5


class Position(BaseModel):
    """An agent's position on the question."""

    stance: str = Field(
        max_length=STANCE_CHARS, description="your answer in a few words (e.g. 'yes', 'no', or one of the options)"
    )
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="how sure you are, from 0 to 1",
        json_schema_extra={"enum": [i / 10 for i in range(11)]},
    )  # a grammar has no numeric range
    rationale: str = Field(
        max_length=RATIONALE_CHARS, description="the main reasons for your stance, in one to three sentences"
    )
    ranking: list[Annotated[str, Field(max_length=STANCE_CHARS)]] = Field(
        default_factory=list, max_length=MAX_RANKING, description="optional: acceptable stances, most preferred first"
    )

    @field_validator("stance")
    @classmethod
    def _stance_not_empty(cls, value: str) -> str:
        if not normalize_stance(value):
            raise ValueError("stance must not be empty")
        return value


@lru_cache(maxsize=32)
def position_schema(options: tuple[str, ...] = ()) -> type[Position]:
    """`Position`, or a subclass whose stance must be one of `options` (after normalisation).

    The options are also the stance's JSON-schema enum, so a grammar-constrained model can only
    pick one of them; validation stays lenient ("Yes." counts as "yes") for other providers.
    """
    if not options:
        return Position
    allowed = {normalize_stance(o) for o in options}

    def _in_options(cls: type, value: str) -> str:
        if normalize_stance(value) not in allowed:
            raise ValueError(f"stance must be one of: {', '.join(options)}")
        return value

    enum: JsonDict = {"enum": list(options)}
    stance = Field(max_length=STANCE_CHARS, description=f"exactly one of: {', '.join(options)}", json_schema_extra=enum)
    ranking: list[str] = Field(
        default_factory=list, max_length=len(options), description="optional: acceptable options, most preferred first"
    )
    return create_model(
        "Position",
        __base__=Position,
        __doc__=Position.__doc__,
        stance=(str, stance),
        ranking=(list[Annotated[str, Field(json_schema_extra=enum)]], ranking),
        # pydantic accepts a classmethod here, which its annotation (plain callables) does not say.
        __validators__={"_in_options": cast(Callable[..., Any], field_validator("stance")(classmethod(_in_options)))},
    )


# ---------------------------------------------------------------------------- agents


class TeamError(GraphcraftError):
    """The team cannot be formed (size out of range, duplicate names): a one-line CLI error."""


@dataclass
class AgentSpec:
    """A negotiating agent: its name, role, persona and (optionally) its own chat model."""

    name: str
    role: str = "analyst"
    persona: str = ""
    model: BaseChatModel | None = None

    def system_prompt(self) -> str:
        persona = f" {self.persona}" if self.persona else ""
        return (
            f"You are {self.name}, the {self.role} on a panel that must reach a decision together.{persona} "
            "Think independently, state your honest position, and change it only for good reasons."
        )


DEFAULT_TEAM: tuple[tuple[str, str], ...] = (
    ("optimist", "You look for opportunities and upside."),
    ("skeptic", "You look for risks, missing evidence and failure modes."),
    ("pragmatist", "You weigh cost, effort and what can be done now."),
    ("domain expert", "You rely on established facts and standards of your field."),
    ("economist", "You reason about incentives, trade-offs and costs."),
    ("ethicist", "You weigh fairness, harm and the people affected."),
    ("engineer", "You care about feasibility and how things fail in practice."),
    ("user advocate", "You speak for the people who will live with the decision."),
    ("historian", "You compare with precedents and how similar decisions turned out."),
)


def make_agents(
    agents: int | Sequence[AgentSpec | Mapping[str, Any] | str] | None = None,
    *,
    default: int = 3,
    max_agents: int | None = None,
) -> list[AgentSpec]:
    """A team from a size (default roles), or from specs / dicts / role names; names made unique.

    Raises TeamError for an empty team, a size beyond `max_agents` (checked before any agent is
    made, so a huge size fails at once) or duplicate names.
    """
    if agents is None:
        agents = default
    if isinstance(agents, str):  # from a command line: "5", "-1" or "optimist,skeptic,judge"
        text = agents.strip()
        agents = int(text) if text.lstrip("+-").isdigit() else [a.strip() for a in text.split(",") if a.strip()]
    size = agents if isinstance(agents, int) else len(agents)
    if size < 1:
        raise TeamError(f"a consensus needs at least one agent (got {size})")
    if max_agents is not None and size > max_agents:
        raise TeamError(f"a consensus takes at most {max_agents} agents (got {size}); raise max_agents to allow more")
    if isinstance(agents, int):
        specs = [
            AgentSpec(
                name=f"agent{i + 1}",
                role=DEFAULT_TEAM[i % len(DEFAULT_TEAM)][0],
                persona=DEFAULT_TEAM[i % len(DEFAULT_TEAM)][1],
            )
            for i in range(agents)
        ]
    else:
        specs = []
        for i, item in enumerate(agents):
            if isinstance(item, AgentSpec):
                specs.append(item)
            elif isinstance(item, str):
                specs.append(AgentSpec(name=item.replace(" ", "_"), role=item))
            else:
                specs.append(AgentSpec(**{"name": f"agent{i + 1}", **dict(item)}))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise TeamError(f"agent names must be unique: {', '.join(names)}")
    return specs


# ---------------------------------------------------------------------------- prompts


def position_prompt(
    agent: AgentSpec,
    question: str,
    *,
    options: Sequence[str] = (),
    round: int = 0,
    previous: Mapping[str, Any] | None = None,
    others: Sequence[Mapping[str, Any]] = (),
) -> list[BaseMessage]:
    """Round 0: state a position alone. Later rounds: read the others' positions and keep or revise."""
    lines = [f"Question: {question}"]
    if options:
        lines.append(f"Answer with one of these stances: {', '.join(options)}.")
    if round == 0 or (previous is None and not others):
        lines.append("State your position independently.")
    else:
        if previous is not None and previous.get("status") != "excluded":
            lines.append(
                f"Your position in the previous round: {previous['stance']} "
                f"(confidence {previous['confidence']:.2f}) because {previous['rationale']}"
            )
        lines.append(f"Negotiation round {round}. The other panel members' latest positions:")
        for other in others:
            pos = other.get("content", other)
            lines.append(
                f"- {other.get('sender', pos.get('agent', '?'))}: {pos['stance']} "
                f"(confidence {pos['confidence']:.2f}) because {pos['rationale']}"
            )
        if not others:
            lines.append("- (none received)")
        lines.append("Consider their arguments. Keep your stance or revise it; say why in the rationale.")
    return [SystemMessage(agent.system_prompt()), HumanMessage("\n".join(lines))]


# ---------------------------------------------------------------------------- one turn


def state_position(
    agent: AgentSpec,
    model: BaseChatModel,
    question: str,
    *,
    options: Sequence[str] = (),
    round: int = 0,
    previous: Mapping[str, Any] | None = None,
    others: Sequence[Mapping[str, Any]] = (),
    max_repairs: int = 2,
    config: dict | None = None,
) -> tuple[dict[str, Any], Usage]:
    """Ask `agent` for its position; returns (ballot record, usage).

    The ballot's status is "ok", "repaired" (valid after one or more repairs) or "excluded"
    (still malformed after `max_repairs`, or the model call itself failed: one broken provider
    does not sink the panel; the agent just does not vote this round). An unreachable model
    is marked ``model_error: True`` so the graph can tell a broken panel from a split one; the
    failed call still counts in the usage.
    """
    schema = position_schema(tuple(options))
    fallback = Position(stance="(excluded)", confidence=0.0, rationale="no valid position")
    messages = position_prompt(agent, question, options=options, round=round, previous=previous, others=others)
    record: dict[str, Any] = {"agent": agent.name, "round": round}
    spent = UsageCallback()  # sees the calls of a structured call that raised, whose own usage is lost
    try:
        result = structured_call(
            model, schema, messages, fallback=fallback, max_repairs=max_repairs, config=with_counter(config, spent)
        )
    except NoChatModelError:
        raise  # configuration problems are the user's to fix, not a vote to skip
    except Exception as exc:  # noqa: BLE001 - a failing provider call excludes the agent for this round
        text = str(exc) if isinstance(exc, GraphcraftError) else f"{type(exc).__name__}: {exc}"
        record.update(
            status="excluded",
            attempts=int(spent.usage["llm_calls"]) or 1,
            errors=[text.splitlines()[0][:300]],
            model_error=isinstance(exc, ModelError),
        )
        return record, spent.usage
    record["attempts"] = result.attempts
    if result.fallback:
        record.update(status="excluded", errors=result.errors[-3:])
    else:
        pos = result.value
        record.update(
            status="repaired" if result.attempts > 1 else "ok",
            stance=normalize_stance(pos.stance),
            stated=pos.stance,
            confidence=float(pos.confidence),
            rationale=pos.rationale.strip(),
            ranking=[normalize_stance(r) for r in pos.ranking if normalize_stance(r)],
        )
        if result.errors:
            record["errors"] = result.errors[-3:]
    return record, result.usage


def as_ballot(record: Mapping[str, Any]) -> Ballot:
    """The vote of a valid ballot record."""
    return Ballot(
        agent=record["agent"],
        stance=record["stance"],
        confidence=float(record["confidence"]),
        rationale=record.get("rationale", ""),
        ranking=tuple(record.get("ranking", ())),
    )
