"""Aggregation rules, agreement and stance normalisation, including every rule's ties."""

from __future__ import annotations

from functools import partial

import pytest

from graphcraft.chains.aggregate import Ballot, Decision, aggregate, agreement, borda, normalize_stance, unanimity


def ballots(*items: tuple) -> list[Ballot]:
    """(stance, confidence[, ranking]) tuples -> ballots of agents a0, a1, ..."""
    return [
        Ballot(
            agent=f"a{i}",
            stance=item[0],
            confidence=item[1],
            rationale=f"why {i}",
            ranking=tuple(item[2]) if len(item) > 2 else (),
        )
        for i, item in enumerate(items)
    ]


@pytest.mark.parametrize("raw", ["Yes", "yes.", "YES", "  yes!  ", '"Yes"', "ｙｅｓ"])
def test_stance_spellings_normalise_to_one(raw: str) -> None:
    assert normalize_stance(raw) == "yes"


def test_normalisation_keeps_distinct_stances_apart() -> None:
    assert normalize_stance("Not  yet.") == "not yet"
    assert normalize_stance("no") != normalize_stance("not yet")


def test_agreement_is_the_share_on_the_most_common_stance() -> None:
    assert agreement(ballots(("yes", 0.5), ("yes", 0.5), ("no", 0.5), ("maybe", 0.5))) == 0.5
    assert agreement([]) == 0.0


def test_majority_records_vote_and_dissent() -> None:
    d = aggregate(ballots(("yes", 0.6), ("yes", 0.7), ("no", 0.9)), "majority")
    assert (d.decision, d.vote, d.tie) == ("yes", {"yes": 2.0, "no": 1.0}, False)
    assert d.dissent == [{"agent": "a2", "stance": "no", "confidence": 0.9, "rationale": "why 2"}]


def test_majority_tie_is_broken_by_confidence_then_alphabetically() -> None:
    d = aggregate(ballots(("yes", 0.9), ("yes", 0.9), ("no", 0.5), ("no", 0.5)), "majority")
    assert (d.decision, d.tie, d.tied, d.tie_break) == ("yes", True, ["yes", "no"], "confidence")
    d = aggregate(ballots(("yes", 0.5), ("no", 0.5)), "majority")
    assert (d.decision, d.tie, d.tie_break) == ("no", True, "alphabetical")


def test_confidence_weighting_can_outvote_a_headcount() -> None:
    d = aggregate(ballots(("yes", 0.3), ("yes", 0.3), ("no", 0.95)), "confidence")
    assert d.decision == "no" and d.vote == {"no": 0.95, "yes": 0.6}
    assert aggregate(ballots(("yes", 0.3), ("yes", 0.3), ("no", 0.95)), "majority").decision == "yes"


def test_confidence_tie_is_broken_by_headcount_then_alphabetically() -> None:
    d = aggregate(ballots(("yes", 0.6), ("yes", 0.4), ("no", 1.0)), "confidence")
    assert (d.decision, d.tie, d.tie_break) == ("yes", True, "count")
    d = aggregate(ballots(("yes", 0.7), ("no", 0.7)), "weighted")
    assert (d.decision, d.tie, d.tie_break) == ("no", True, "alphabetical")


def test_borda_finds_the_compromise_a_plurality_misses() -> None:
    group = ballots(
        ("x", 1, ["y", "z"]), ("x", 1, ["y", "z"]), ("z", 1, ["y", "x"]), ("z", 1, ["y", "x"]), ("y", 1, ["x", "z"])
    )
    d = aggregate(group, "borda")
    assert d.decision == "y" and d.vote == {"y": 6.0, "x": 5.0, "z": 4.0}
    assert aggregate(group, "majority").tie  # x and z tie on first choices


def test_borda_tie_is_broken_by_first_choices_then_alphabetically() -> None:
    group = ballots(("x", 1, ["y", "z"]), ("x", 1, ["z", "y"]), ("y", 1, ["z", "x"]), ("z", 1, ["y", "x"]))
    d = borda(group)
    assert d.vote == {"x": 4.0, "y": 4.0, "z": 4.0}
    assert (d.decision, d.tie, d.tie_break) == ("x", True, "first_choices")
    d = aggregate(ballots(("x", 1, ["y"]), ("y", 1, ["x"])), "ranked_choice")
    assert (d.decision, d.tie, d.tie_break) == ("x", True, "alphabetical")


def test_borda_counts_the_options_nobody_ranked() -> None:
    d = borda(ballots(("x", 1), ("y", 1, ["x"])), options=["x", "y", "z"])
    assert d.vote == {"x": 3.0, "y": 2.0, "z": 0.0} and d.decision == "x"


def test_unanimity_decides_only_when_everyone_agrees() -> None:
    d = aggregate(ballots(("yes", 0.2), ("yes", 0.9)), "unanimity")
    assert (d.decision, d.unanimous, d.fallback_rule, d.dissent) == ("yes", True, None, [])


def test_unanimity_falls_back_and_keeps_the_fallbacks_tie() -> None:
    d = aggregate(ballots(("yes", 0.5), ("no", 0.5)), "unanimity")
    assert (d.rule, d.fallback_rule, d.unanimous) == ("unanimity", "majority", False)
    assert (d.decision, d.tie, d.tie_break) == ("no", True, "alphabetical")
    d = aggregate(ballots(("yes", 0.2), ("yes", 0.2), ("no", 0.9)), partial(unanimity, fallback="confidence"))
    assert (d.decision, d.fallback_rule) == ("no", "confidence")


def test_custom_rule_gets_dissent_filled_in() -> None:
    def chair_decides(group, options):  # type: ignore[no-untyped-def]
        return Decision(group[-1].stance, "chair", {group[-1].stance: 1.0}, {})

    d = aggregate(ballots(("yes", 0.5), ("no", 0.5)), chair_decides)
    assert d.decision == "no" and [x["agent"] for x in d.dissent] == ["a0"]


def test_unknown_rule_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="majority"):
        aggregate(ballots(("yes", 0.5)), "coin_flip")


def test_no_ballots_no_decision() -> None:
    for rule in ("majority", "confidence", "borda", "unanimity"):
        assert aggregate([], rule).decision is None
