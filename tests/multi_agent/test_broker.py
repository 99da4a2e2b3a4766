"""The state-channel message broker: publish/subscribe semantics and delivery through a real graph."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from graphcraft.chains.broker import inbox, merge_topics, publish, subscribe


def test_publish_appends_per_topic_without_overwriting() -> None:
    topics = merge_topics({}, publish("news", "a", "hello", round=0)["topics"])
    topics = merge_topics(
        topics, merge_topics(publish("news", "b", "hi")["topics"], publish("alerts", "c", "!")["topics"])
    )
    assert [m["sender"] for m in topics["news"]] == ["a", "b"] and topics["alerts"][0]["content"] == "!"
    assert topics["news"][0]["round"] == 0 and "round" not in topics["news"][1]


def test_inbox_reads_only_subscribed_topics_and_filters() -> None:
    topics = {
        "news": [
            {"topic": "news", "sender": "a", "round": 0, "content": 1},
            {"topic": "news", "sender": "b", "round": 1, "content": 2},
        ],
        "alerts": [{"topic": "alerts", "sender": "c", "round": 1, "content": 3}],
    }
    subs = subscribe(subscribe({}, "a", "news"), "a", "news", "alerts")
    assert subs == {"a": ["news", "alerts"]}
    assert [m["content"] for m in inbox(topics, subs, "a")] == [2, 3]  # own message skipped
    assert [m["content"] for m in inbox(topics, subs, "a", include_own=True, round=0)] == [1]
    assert inbox(topics, subs, "nobody") == []


class Board(TypedDict, total=False):
    topics: Annotated[dict[str, list[dict]], merge_topics]
    subscriptions: dict[str, list[str]]
    seen: Annotated[list[tuple[str, int, list[str]]], operator.add]


def test_messages_of_a_superstep_are_delivered_in_the_next_one() -> None:
    agents = ["a", "b", "c"]

    def setup(state: Board) -> dict:
        subs: dict[str, list[str]] = {}
        for name in agents:
            subs = subscribe(subs, name, "board")
        return {"subscriptions": subs}

    def speak(task: dict) -> dict:
        heard = [m["sender"] for m in inbox(task["topics"], task["subscriptions"], task["agent"])]
        return {
            **publish("board", task["agent"], f"hi from {task['agent']}", round=task["round"]),
            "seen": [(task["agent"], task["round"], heard)],
        }

    def fan_out(state: Board, round_: int) -> list[Send]:
        return [
            Send(
                "speak" if round_ == 0 else "reply",
                {
                    "agent": a,
                    "round": round_,
                    "topics": state.get("topics", {}),
                    "subscriptions": state["subscriptions"],
                },
            )
            for a in agents
        ]

    g = StateGraph(Board)
    g.add_node("setup", setup)
    g.add_node("speak", speak)
    g.add_node("reply", speak)
    g.add_node("gather", lambda state: {})
    g.add_edge(START, "setup")
    g.add_conditional_edges("setup", lambda s: fan_out(s, 0), ["speak"])
    g.add_edge("speak", "gather")
    g.add_conditional_edges(
        "gather", lambda s: fan_out(s, 1) if len(s["topics"]["board"]) == 3 else END, ["reply", END]
    )
    g.add_edge("reply", END)
    out = g.compile().invoke({})
    first = {agent: heard for agent, r, heard in out["seen"] if r == 0}
    second = {agent: heard for agent, r, heard in out["seen"] if r == 1}
    assert first == {"a": [], "b": [], "c": []}  # same superstep: nobody hears anybody
    assert second == {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]}
    assert len(out["topics"]["board"]) == 6
