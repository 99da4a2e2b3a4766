"""Topic-based publish/subscribe between agents, carried by a LangGraph state channel.

The seed's broker was an object with topic queues: `publish(topic, message)` appended to a
queue, `subscribe(agent, topic)` registered interest, and each agent drained the queues it
subscribed to. Here the same three operations are state updates, so there are no threads,
locks or queues of our own, and every message is checkpointed with the rest of the state:

- topic queues -> one channel ``topics: Annotated[dict[str, list[Message]], merge_topics]``.
  The reducer appends per topic, so parallel nodes (a Send fan-out) can publish in the same
  superstep without overwriting each other; LangGraph applies their writes in a deterministic
  order at the end of the superstep.
- publish(topic, message) -> a node returns ``publish(topic, sender, content, ...)`` as (part of)
  its update: ``{"topics": {topic: [message]}}``.
- subscribe(agent, topic) -> ``subscriptions: dict[agent, list[topic]]`` in the state, written
  with ``subscribe(...)`` by whichever node sets the team up.
- draining a queue -> ``inbox(state, agent, ...)`` reads the subscribed topics, filtered by
  round or sequence number instead of destructive pops, so history stays inspectable (and
  replayable from a checkpoint).
- delivery -> a message published in superstep k is visible to every node from superstep k+1;
  nodes running in the same superstep (one negotiation round) never see each other's messages,
  which is exactly the independence the first round of a consensus needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from typing_extensions import TypedDict

from graphcraft.runtime.reducers import append_by_key


class Message(TypedDict, total=False):
    topic: str
    sender: str
    round: int
    content: Any


Topics = dict[str, list[Message]]


def merge_topics(left: Mapping[str, list[Message]] | None, right: Mapping[str, list[Message]] | None) -> Topics:
    """LangGraph reducer: append each topic's new messages to its queue (topics are created on first publish)."""
    return append_by_key(left, right)


def publish(topic: str, sender: str, content: Any, *, round: int | None = None, **meta: Any) -> dict[str, Topics]:
    """The state update that publishes one message on `topic`."""
    message: Message = {"topic": topic, "sender": sender, "content": content, **meta}  # type: ignore[typeddict-item]
    if round is not None:
        message["round"] = round
    return {"topics": {topic: [message]}}


def subscribe(subscriptions: Mapping[str, list[str]] | None, agent: str, *topics: str) -> dict[str, list[str]]:
    """A copy of `subscriptions` with `agent` subscribed to `topics` (no duplicates)."""
    out = {name: list(ts) for name, ts in (subscriptions or {}).items()}
    current = out.setdefault(agent, [])
    current.extend(t for t in topics if t not in current)
    return out


def inbox(
    topics: Mapping[str, list[Message]] | None,
    subscriptions: Mapping[str, Iterable[str]] | None,
    agent: str,
    *,
    round: int | None = None,
    include_own: bool = False,
) -> list[Message]:
    """Messages on the topics `agent` subscribes to (optionally only those of `round`), oldest first."""
    out: list[Message] = []
    for topic in (subscriptions or {}).get(agent, []):
        for message in (topics or {}).get(topic, []):
            if not include_own and message.get("sender") == agent:
                continue
            if round is not None and message.get("round") != round:
                continue
            out.append(message)
    return out
