"""Turning agents' positions into one decision: agreement level and pluggable aggregation rules.

Every rule takes the round's valid ballots and returns a `Decision` that records the vote (the
score of every stance under that rule), whether the top was tied and how the tie was broken,
and every dissenting agent with its rationale. Ties are broken deterministically, never at
random, and are flagged so a caller can treat a tie as "no consensus":

- majority: most agents; ties -> higher summed confidence -> alphabetical order;
- confidence: highest summed confidence; ties -> more agents -> alphabetical order;
- borda (ranked choice): each ballot's ranking gives m-1, m-2, ... points over the m candidate
  stances (the agent's own stance is always its first choice; unranked candidates get 0);
  ties -> more first choices -> alphabetical order;
- unanimity: the common stance if every voter holds it, else the fallback rule's decision
  (majority by default), recorded as `fallback_rule`.

A custom rule is any callable ``(ballots, options) -> Decision``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_EDGE_PUNCTUATION = " \t\n\"'`.,;:!?()[]{}*_"


def normalize_stance(text: str) -> str:
    """One spelling per stance: NFKC, case-folded, whitespace collapsed, edge punctuation removed.

    "Yes", "yes." and " YES! " all become "yes".
    """
    s = unicodedata.normalize("NFKC", str(text)).casefold()
    return re.sub(r"\s+", " ", s).strip(_EDGE_PUNCTUATION)


@dataclass(frozen=True)
class Ballot:
    """One agent's valid position in one round (stance already normalised)."""

    agent: str
    stance: str
    confidence: float
    rationale: str = ""
    ranking: tuple[str, ...] = ()


@dataclass
class Decision:
    decision: str | None
    rule: str
    vote: dict[str, float]  # stance -> score under the rule (best first)
    counts: dict[str, int]  # stance -> number of agents
    tie: bool = False
    tied: list[str] = field(default_factory=list)
    tie_break: str | None = None
    unanimous: bool = False
    fallback_rule: str | None = None
    dissent: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(ballots: Sequence[Ballot]) -> float:
    """Share of the voters holding the most common stance (0.0 with no voters)."""
    if not ballots:
        return 0.0
    return max(Counter(b.stance for b in ballots).values()) / len(ballots)


def distribution(ballots: Sequence[Ballot]) -> dict[str, int]:
    return dict(Counter(b.stance for b in ballots).most_common())


# ---------------------------------------------------------------------------- rules


def _rank(
    rule: str, ballots: Sequence[Ballot], primary: dict[str, float], secondary: dict[str, float], secondary_name: str
) -> Decision:
    """Winner by primary score; ties broken by the secondary score, then alphabetically."""
    counts = distribution(ballots)
    if not primary:
        return Decision(None, rule, {}, counts)
    order = sorted(primary, key=lambda s: (-primary[s], -secondary.get(s, 0.0), s))
    best = order[0]
    tied = [s for s in order if _close(primary[s], primary[best])]
    tie_break = None
    if len(tied) > 1:
        still_tied = [s for s in tied if _close(secondary.get(s, 0.0), secondary.get(best, 0.0))]
        tie_break = secondary_name if len(still_tied) == 1 else "alphabetical"
    vote = {s: round(primary[s], 6) for s in order}
    return Decision(
        best,
        rule,
        vote,
        counts,
        tie=len(tied) > 1,
        tied=tied if len(tied) > 1 else [],
        tie_break=tie_break,
        unanimous=len(counts) == 1,
        dissent=dissent(ballots, best),
    )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9


def _confidence_sums(ballots: Sequence[Ballot]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for b in ballots:
        sums[b.stance] += b.confidence
    return dict(sums)


def majority(ballots: Sequence[Ballot], options: Sequence[str] = ()) -> Decision:
    counts = {s: float(c) for s, c in distribution(ballots).items()}
    return _rank("majority", ballots, counts, _confidence_sums(ballots), "confidence")


def confidence_weighted(ballots: Sequence[Ballot], options: Sequence[str] = ()) -> Decision:
    counts = {s: float(c) for s, c in distribution(ballots).items()}
    return _rank("confidence", ballots, _confidence_sums(ballots), counts, "count")


def borda(ballots: Sequence[Ballot], options: Sequence[str] = ()) -> Decision:
    candidates = sorted(
        {b.stance for b in ballots} | {r for b in ballots for r in b.ranking} | {normalize_stance(o) for o in options}
    )
    if not ballots:
        return Decision(None, "borda", {}, {})
    m = len(candidates)
    points: dict[str, float] = {c: 0.0 for c in candidates}
    for b in ballots:
        for i, stance in enumerate(ballot_ranking(b)):
            points[stance] += m - 1 - i
    firsts = {c: float(n) for c, n in distribution(ballots).items()}
    return _rank("borda", ballots, points, firsts, "first_choices")


def ballot_ranking(ballot: Ballot) -> list[str]:
    """The ballot's preference order: its stance first, then its ranking without repeats."""
    order = [ballot.stance]
    order.extend(r for r in ballot.ranking if r and r not in order)
    return order


def unanimity(ballots: Sequence[Ballot], options: Sequence[str] = (), fallback: str = "majority") -> Decision:
    counts = distribution(ballots)
    if len(counts) == 1:
        ((stance, n),) = counts.items()
        return Decision(stance, "unanimity", {stance: float(n)}, counts, unanimous=True)
    decided = get_rule(fallback)(ballots, options)
    decided.rule, decided.fallback_rule = "unanimity", decided.rule
    return decided


def dissent(ballots: Sequence[Ballot], decision: str | None) -> list[dict[str, Any]]:
    """Every agent whose stance differs from the decision, with its rationale."""
    return [
        {"agent": b.agent, "stance": b.stance, "confidence": b.confidence, "rationale": b.rationale}
        for b in ballots
        if b.stance != decision
    ]


Rule = Callable[[Sequence[Ballot], Sequence[str]], Decision]

RULES: dict[str, Rule] = {
    "majority": majority,
    "confidence": confidence_weighted,
    "borda": borda,
    "unanimity": unanimity,
}
_ALIASES = {
    "confidence_weighted": "confidence",
    "weighted": "confidence",
    "ranked": "borda",
    "ranked_choice": "borda",
    "unanimous": "unanimity",
}


def get_rule(rule: str | Rule) -> Rule:
    """A rule by name (majority, confidence, borda, unanimity, or an alias) or the callable itself."""
    if callable(rule):
        return rule
    name = _ALIASES.get(rule.strip().lower(), rule.strip().lower())
    if name not in RULES:
        raise ValueError(f"unknown aggregation rule {rule!r}; choose one of {', '.join(RULES)}")
    return RULES[name]


def aggregate(ballots: Sequence[Ballot], rule: str | Rule = "majority", options: Sequence[str] = ()) -> Decision:
    """The decision of `rule` over `ballots`; a custom rule's dissent is filled in if it left it empty."""
    decided = get_rule(rule)(ballots, options)
    if not decided.dissent and decided.decision is not None:
        decided.dissent = dissent(ballots, decided.decision)
    return decided
