"""Summaries for hierarchical indexing: abstractive with the chat model, extractive offline.

- LLM strategy: one call per summary; the prompt asks to keep names, numbers and dates,
  because the summary is what a top-down search matches the question against.
- Offline: centroid-nearest sentences. The centroid of a text's sentence (strip) vectors is its
  "topic"; the sentences closest to it, picked with a redundancy penalty (MMR) and put back in
  reading order, form the summary. Ingestion stores late-chunked strip vectors for every
  chunk, so summarising an ingested document needs no embedding call at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from langchain_core.language_models import BaseChatModel

from graphcraft.chains.answer import readable
from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, empty_usage

SUMMARY_PROMPT = """Write a summary of the {kind} below in at most {max_words} words.
Keep every name, number, date and place that matters; no preamble, no bullet points.
{title}
{kind_cap}:
{text}

Summary:"""


@dataclass
class Summary:
    text: str
    strategy: str  # "llm" | "extractive"
    usage: Usage = field(default_factory=empty_usage)


def centroid_sentences(
    sentences: Sequence[str], vectors: np.ndarray, max_sentences: int = 3, redundancy: float = 0.5
) -> list[int]:
    """Indices (reading order) of the sentences nearest the centroid, redundant ones penalised (MMR)."""
    if len(sentences) == 0:
        return []
    vecs = np.asarray(vectors, dtype=np.float32)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    centroid = vecs.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    relevance = vecs @ centroid
    chosen: list[int] = []
    candidates = [i for i, s in enumerate(sentences) if _is_prose(s)] or list(range(len(sentences)))
    while candidates and len(chosen) < max_sentences:
        if chosen:
            overlap = (vecs[candidates] @ vecs[chosen].T).max(axis=1)
            gains = relevance[candidates] - redundancy * overlap
        else:
            gains = relevance[candidates]
        best = candidates[int(np.argmax(gains))]
        chosen.append(best)
        candidates.remove(best)
    return sorted(chosen)


def _is_prose(sentence: str) -> bool:
    """A sentence worth quoting in a summary: not a table row, heading or short fragment."""
    text = readable(sentence)
    return sentence.count("|") < 2 and len(text.split()) >= 5 and not text.endswith(":")


def extractive_summary(sentences: Sequence[str], vectors: np.ndarray, max_sentences: int = 3) -> str:
    """The centroid-nearest sentences as prose (markdown headings and bullets removed)."""
    picked = centroid_sentences(sentences, vectors, max_sentences)
    return " ".join(readable(sentences[i]) for i in picked)


def summarize(
    sentences: Sequence[str],
    vectors: np.ndarray | None = None,
    model: BaseChatModel | None = None,
    *,
    kind: str = "document",
    title: str = "",
    max_sentences: int = 3,
    max_words: int = 80,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> Summary:
    """Summarise a text given as sentences (strips). LLM when `model`, else extractive.

    vectors: the sentences' vectors (row-aligned); embedded with `embed` when missing.
    """
    keep = [i for i, s in enumerate(sentences) if s.strip()]
    if vectors is not None and len(vectors) == len(sentences):
        vectors = np.asarray(vectors)[keep]
    sentences = [sentences[i] for i in keep]
    if not sentences:
        return Summary(text="", strategy="empty")
    if model is not None:
        text = "\n".join(sentences)
        prompt = SUMMARY_PROMPT.format(
            kind=kind,
            kind_cap=kind.capitalize(),
            max_words=max_words,
            title=f"Title: {title}" if title else "",
            text=text,
        )
        reply, usage = invoke_llm(model, prompt)
        summary = message_text(reply).strip()
        if summary:
            return Summary(text=summary, strategy="llm", usage=usage)
        # An empty reply still cost a call; fall through to the extractive summary.
        fallback = _extractive(sentences, vectors, embed, max_sentences)
        return Summary(text=fallback, strategy="llm->extractive_fallback", usage=usage)
    return Summary(text=_extractive(sentences, vectors, embed, max_sentences), strategy="extractive")


def _extractive(
    sentences: list[str],
    vectors: np.ndarray | None,
    embed: Callable[[list[str]], np.ndarray] | None,
    max_sentences: int,
) -> str:
    if vectors is None or len(vectors) != len(sentences):
        if embed is None:  # no vectors at all: the lead sentences are the best cheap guess
            return " ".join(readable(s) for s in sentences[:max_sentences])
        vectors = embed(list(sentences))
    return extractive_summary(sentences, vectors, max_sentences)
