"""The embedding-similarity half of the prompt-injection guard, and the labelled set it learns from.

A text's sentences that could address a model (they contain a cue word: "you", "assistant",
"instructions", "ignore", "answer" ...) are embedded and compared with labelled exemplar
sentences: the malicious ones (the injected payloads of the shipped set's *training* half) and
the benign ones (the training half's benign texts, hard negatives included). A sentence's margin
is the mean similarity of its NEAREST nearest malicious exemplars minus that of its NEAREST
nearest benign ones; the text's probability is a logistic function of its largest margin.

Only cue-bearing sentences are embedded, at most MAX_SENTENCES per text: embedding every
sentence of every retrieved chunk would cost more than the answer. A sentence with no cue word
(no second person, no model, no instruction, no imperative aimed at an answer) is left to the
rules.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from langchain_core.embeddings import Embeddings

from graphcraft.guards.injection_rules import normalise
from graphcraft.models import embed_texts

LABELLED_SET = Path(__file__).resolve().parent / "data" / "injection_set.jsonl"
MAX_SENTENCES = 8  # cue-bearing sentences embedded per text
NEAREST = 5  # exemplars averaged on each side
# NEAREST and MARGIN_OFFSET: the best training F1 with leave-one-out margins (benchmarks/guards.py --calibrate).
MARGIN_OFFSET = 0.16
MARGIN_SCALE = 0.04

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CUE = re.compile(
    r"\b(?:you|your|yourself|assistant|ai|model|llm|gpt|chatbot|bot|instructions?|prompt|system|rules|"
    r"ignore|disregard|forget|pretend|roleplay|persona|jailbreak|restrictions?|answer|respond|reply|"
    r"reveal|repeat|tell|say|must|always|never|user|obey|comply|override)\b"
)

Label = Literal["malicious", "benign"]


@dataclass(frozen=True)
class LabelledExample:
    """One line of the labelled set; `payload` is the injected part of a malicious document."""

    text: str
    label: Label
    kind: str
    split: str
    technique: str = ""
    payload: str = ""


def load_labelled_set(path: Path = LABELLED_SET) -> list[LabelledExample]:
    """The labelled injection set (JSONL: text, label, kind, split, optional technique and payload)."""
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            examples.append(
                LabelledExample(
                    text=row["text"],
                    label=row["label"],
                    kind=row["kind"],
                    split=row["split"],
                    technique=row.get("technique", ""),
                    payload=row.get("payload", ""),
                )
            )
    return examples


def candidate_sentences(text: str, limit: int = MAX_SENTENCES) -> list[str]:
    """The normalised sentences of `text` that contain a cue word, those with most cues first."""
    sentences = [s.strip()[:400] for s in _SENTENCE_END.split(normalise(text)) if len(s.strip()) >= 16]
    cued = [(len(_CUE.findall(s)), i, s) for i, s in enumerate(sentences)]
    best = sorted((c for c in cued if c[0] > 0), key=lambda c: (-c[0], c[1]))[:limit]
    return [s for _, _, s in sorted(best, key=lambda c: c[1])]


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _top_mean(similarities: np.ndarray, k: int) -> np.ndarray:
    k = min(k, similarities.shape[1])
    return np.asarray(np.sort(similarities, axis=1)[:, -k:].mean(axis=1))


class ExemplarClassifier:
    """Nearest-exemplar margin between malicious and benign sentences, as a probability."""

    def __init__(self, embeddings: Embeddings, malicious: list[str], benign: list[str]) -> None:
        if not malicious or not benign:
            raise ValueError("the injection classifier needs malicious and benign exemplars")
        self.embeddings = embeddings
        self.malicious = _unit(embed_texts(embeddings, malicious))
        self.benign = _unit(embed_texts(embeddings, benign))

    def margins(self, texts: list[str]) -> list[tuple[float, str]]:
        """Each text's largest sentence margin and that sentence (-1.0 and "" without a cue-bearing one)."""
        per_text = [candidate_sentences(t) for t in texts]
        flat = [s for sentences in per_text for s in sentences]
        if not flat:
            return [(-1.0, "")] * len(texts)
        vectors = _unit(embed_texts(self.embeddings, flat))
        margin = _top_mean(vectors @ self.malicious.T, NEAREST) - _top_mean(vectors @ self.benign.T, NEAREST)
        out, at = [], 0
        for sentences in per_text:
            if sentences:
                best = at + int(np.argmax(margin[at : at + len(sentences)]))
                out.append((float(margin[best]), flat[best]))
            else:
                out.append((-1.0, ""))
            at += len(sentences)
        return out

    def probabilities(self, texts: list[str]) -> list[tuple[float, str]]:
        """P(injection) for each text, from its largest margin, with the sentence that gave it."""
        return [(probability(m), sentence) for m, sentence in self.margins(texts)]


def probability(margin: float) -> float:
    """The logistic map from a sentence margin to a probability (offset and scale set on training data)."""
    return 1.0 / (1.0 + math.exp(-(margin - MARGIN_OFFSET) / MARGIN_SCALE))


def exemplars(examples: list[LabelledExample]) -> tuple[list[str], list[str]]:
    """Malicious (payload sentences) and benign (cue-bearing sentences) exemplars of `examples`."""
    malicious: list[str] = []
    benign: list[str] = []
    for ex in examples:
        if ex.label == "malicious":
            malicious.extend(candidate_sentences(ex.payload or ex.text, limit=12) or [normalise(ex.payload or ex.text)])
        else:
            benign.extend(candidate_sentences(ex.text, limit=12))
    return malicious, benign


_CLASSIFIERS: dict[int, tuple[Embeddings, ExemplarClassifier]] = {}


def default_classifier(embeddings: Embeddings) -> ExemplarClassifier:
    """The classifier on the shipped set's training half, built once per embedding model."""
    cached = _CLASSIFIERS.get(id(embeddings))
    if cached is None or cached[0] is not embeddings:
        train = [ex for ex in load_labelled_set() if ex.split == "train"]
        cached = (embeddings, ExemplarClassifier(embeddings, *exemplars(train)))
        _CLASSIFIERS[id(embeddings)] = cached
    return cached[1]
