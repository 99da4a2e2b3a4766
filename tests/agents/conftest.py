"""Agent tests: graphs driven by ScriptedChatModel (tool calls + structured outputs), real tools."""

from __future__ import annotations

import pytest

from graphcraft.testing import ScriptedChatModel


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


def critique(
    score: float, criteria=("correctness", "completeness", "clarity"), feedback: str = "be more specific"
) -> dict:
    return {"scores": [{"criterion": c, "score": score, "feedback": feedback} for c in criteria], "summary": feedback}


def script(rules):
    """A ScriptedChatModel from (predicate, reply) rules; reply may be a function of the call."""

    def respond(call):
        for predicate, reply in rules:
            if predicate(call):
                return reply(call) if callable(reply) else reply
        raise AssertionError(f"unscripted call #{call.index}: schema={call.schema} last={call.last[:200]!r}")

    return ScriptedChatModel(script=respond)


def schema_is(name):
    return lambda call: call.schema == name


def text_has(fragment):
    return lambda call: fragment in call.last


ANY = lambda call: True  # noqa: E731
