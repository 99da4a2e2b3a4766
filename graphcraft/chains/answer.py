"""Answer generation from refined knowledge, with citations, or an explicit abstention.

- LLM strategy: the model answers only from the numbered knowledge and cites [n].
- Offline: an extractive answer: the best strips, verbatim, each followed by its citation.
Both abstain with `ABSTAIN` when no knowledge survived, instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel

from graphcraft.chains.question import ANSWER_FIT_BONUS, answer_fit
from graphcraft.chains.refine import Strip
from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, empty_usage

ABSTAIN = "Not found in the sources."

ANSWER_PROMPT = """Answer the question using ONLY the numbered knowledge below. Cite every claim
with its number in square brackets, like [1]. Be concise. If the knowledge does not contain the
answer, reply exactly: {abstain}

Knowledge:
{knowledge}

Question: {question}
Answer:"""


@dataclass
class Answer:
    text: str
    sources: list[dict]
    strategy: str
    usage: Usage = field(default_factory=empty_usage)
    abstained: bool = False


def number_sources(strips: list[Strip]) -> tuple[dict[str, int], list[dict]]:
    """One citation number per chunk (first appearance order) and the matching source dicts."""
    numbers: dict[str, int] = {}
    sources: list[dict] = []
    for strip in strips:
        key = strip.chunk_id or strip.source
        if key not in numbers:
            numbers[key] = len(numbers) + 1
            sources.append({"source": strip.source, "chunk_id": strip.chunk_id, "page": strip.page,
                            "score": round(strip.doc_score, 4), "text": "", "origin": strip.origin, "citation": numbers[key]})
        src = sources[numbers[key] - 1]
        src["text"] = (src["text"] + " " + strip.text).strip()
    return numbers, sources


def readable(text: str) -> str:
    """A strip as prose: markdown heading lines and list bullets dropped, whitespace folded."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    body = [ln for ln in lines if not ln.startswith("#")] or lines
    return " ".join(ln.lstrip("-*• ").strip() for ln in body)


def generate_answer(question: str, strips: list[Strip], model: BaseChatModel | None, max_sentences: int = 3) -> Answer:
    if not strips:
        return Answer(text=ABSTAIN, sources=[], strategy="abstain", abstained=True)
    numbers, sources = number_sources(strips)
    if model is None:
        best = sorted(strips, key=lambda s: s.score + ANSWER_FIT_BONUS * answer_fit(s.text, question), reverse=True)[:max_sentences]
        text = " ".join(f"{readable(s.text)} [{numbers[s.chunk_id or s.source]}]" for s in best)
        cited = {numbers[s.chunk_id or s.source] for s in best}
        return Answer(text=text, sources=[s for s in sources if s["citation"] in cited], strategy="extractive")
    knowledge = "\n".join(f"[{numbers[s.chunk_id or s.source]}] {s.text}" for s in strips)
    reply, usage = invoke_llm(model, ANSWER_PROMPT.format(knowledge=knowledge, question=question, abstain=ABSTAIN))
    text = message_text(reply).strip() or ABSTAIN
    abstained = text.rstrip(".").lower() == ABSTAIN.rstrip(".").lower()
    return Answer(text=text, sources=[] if abstained else sources, strategy="llm", usage=usage, abstained=abstained)
