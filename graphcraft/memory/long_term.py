"""Long-term memory: facts and episodes in a LangGraph Store with semantic search.

Items live under ("memory", <user_id>, "facts" | "episodes") and are indexed with the project's
embeddings (MiniLM, 384 dimensions, offline), so recall finds them by meaning. Facts are keyed by
a hash of their normalised text (writing a fact twice keeps one copy); episodes are one record
per finished task.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from pydantic import BaseModel, Field

from graphcraft.models import StructuredResult, get_embeddings, structured_call

FACTS, EPISODES = "facts", "episodes"


def make_store(embeddings: Embeddings | None = None, dims: int = 384) -> InMemoryStore:
    """An InMemoryStore with semantic search over the `text` field of every item."""
    return InMemoryStore(index={"embed": embeddings or get_embeddings(), "dims": dims, "fields": ["text"]})


class Facts(BaseModel):
    """Durable facts worth remembering about the user or the task domain."""

    facts: list[str] = Field(default_factory=list, description="short standalone statements; empty if nothing durable")


class LongTermMemory:
    """Facts and episodes of one user in a Store."""

    def __init__(self, store: BaseStore, user_id: str = "default") -> None:
        self.store = store
        self.user_id = user_id

    def _ns(self, kind: str) -> tuple[str, ...]:
        return ("memory", self.user_id, kind)

    def add_fact(self, text: str, source: str = "") -> str:
        normalised = " ".join(text.lower().split())
        key = hashlib.sha1(normalised.encode()).hexdigest()[:16]
        self.store.put(self._ns(FACTS), key, {"text": text.strip(), "source": source, "at": time.time()})
        return key

    def add_episode(self, task: str, outcome: str, **details: Any) -> str:
        key = uuid.uuid4().hex[:16]
        text = f"Task: {task}\nOutcome: {outcome}"
        self.store.put(
            self._ns(EPISODES), key, {"text": text, "task": task, "outcome": outcome, "at": time.time(), **details}
        )
        return key

    def recall(self, query: str, k: int = 4, min_score: float = 0.2) -> list[dict[str, Any]]:
        """The k most similar facts and episodes: [{"kind", "text", "score"}], best first."""
        found = []
        for kind in (FACTS, EPISODES):
            for item in self.store.search(self._ns(kind), query=query, limit=k):
                score = item.score if item.score is not None else 0.0
                if score >= min_score:
                    found.append(
                        {
                            "kind": kind[:-1],
                            "text": item.value["text"],
                            "score": round(float(score), 4),
                            "key": item.key,
                        }
                    )
        return sorted(found, key=lambda f: -f["score"])[:k]

    def count(self, kind: str) -> int:
        return len(self.store.search(self._ns(kind), limit=10_000))


def format_memories(memories: list[dict[str, Any]]) -> str:
    if not memories:
        return ""
    return "Relevant memories from earlier sessions:\n" + "\n".join(f"- ({m['kind']}) {m['text']}" for m in memories)


def extract_facts(model: BaseChatModel, question: str, answer: str, max_repairs: int = 1) -> StructuredResult[Facts]:
    """Ask the model which durable facts the exchange revealed (bounded repairs, empty fallback)."""
    prompt = (
        f"User message:\n{question}\n\nAssistant answer:\n{answer}\n\n"
        "List durable facts worth remembering for future conversations (preferences, names, stable "
        "facts about the user or their project). Do not list transient details. Return an empty list if none."
    )
    return structured_call(
        model,
        Facts,
        [SystemMessage("You curate an assistant's long-term memory."), HumanMessage(prompt)],
        fallback=Facts(),
        max_repairs=max_repairs,
    )
