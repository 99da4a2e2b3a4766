"""Prompt-injection guard: screens user input, retrieved chunks and tool outputs before a model reads them.

Two signals make one score in [0, 1]:

- pattern rules (:mod:`graphcraft.guards.injection_rules`) for instruction override, role
  hijack, system-prompt extraction, delimiter tricks, hidden instructions aimed at the model and
  fake citations, run on normalised text (zero-width and bidi characters removed, look-alike
  letters folded), and again on what base64 / hex runs, Unicode tag characters, rot13 and
  reversal decode to; fired rules combine as a noisy-or of their weights;
- when embeddings are given, a nearest-exemplar classifier
  (:mod:`graphcraft.guards.injection_classifier`) trained on the shipped labelled set's training
  half, which catches paraphrased injections no rule names.

A text scoring at or above the threshold (``Settings.injection_threshold``) is suspicious:
`screen_documents` drops such chunks and returns a quarantine record for each; chunks it keeps
have their own citation markers ("[1]") rewritten so they never sit beside graphcraft's.
Cost is bounded: at most HEAD_CHARS + TAIL_CHARS characters of a text are scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from graphcraft.guards import injection_rules as ir
from graphcraft.guards.injection_classifier import default_classifier

CLASSIFIER_WEIGHT = 0.75  # a confident classifier alone quarantines; a doubtful one needs a rule too
EXCERPT_CHARS = 120

_CITATION_MARK = re.compile(
    r"\[\s*(\d{1,3}(?:\s*[,\u2013-]\s*\d{1,3})*)\s*\]|【\s*(\d{1,3})[^】\n]{0,40}】|［\s*(\d{1,3})\s*］"
)


@dataclass(frozen=True)
class InjectionFinding:
    """What the guard found in one text: `rules` that fired and a short quote of what matched.

    Rule names are those of :data:`graphcraft.guards.injection_rules.RULES`, prefixed with the
    encoding they were hidden in ("base64:override_instructions"), plus "obfuscation" and
    "classifier". The excerpt quotes the normalised text (lower case, look-alikes folded).
    """

    suspicious: bool
    score: float
    rules: tuple[str, ...]
    excerpt: str


@dataclass(frozen=True)
class RuleHits:
    """The weight of every rule that fired on a text, and a quote of the strongest match."""

    weights: dict[str, float]
    excerpt: str

    @property
    def score(self) -> float:
        return _noisy_or(self.weights.values())


def _noisy_or(weights: Iterable[float]) -> float:
    remaining = 1.0
    for w in weights:
        remaining *= 1.0 - w
    return 1.0 - remaining


def _excerpt(text: str, start: int, end: int) -> str:
    return " ".join(text[start : min(end, start + EXCERPT_CHARS)].split())


def _match_rules(text: str, families: frozenset[str] | None = None) -> tuple[dict[str, float], str]:
    weights: dict[str, float] = {}
    excerpt, best = "", 0.0
    for rule in ir.RULES:
        if families is not None and rule.family not in families:
            continue
        match = rule.search(text)
        if match:
            weights[rule.name] = rule.weight
            if rule.weight > best:
                excerpt, best = _excerpt(text, match.start(), match.end()), rule.weight
    return weights, excerpt


def _hidden_payloads(raw: str, normal: str) -> list[tuple[str, str]]:
    """(encoding, decoded text) of everything hidden in `raw`, decoded up to MAX_DECODE_DEPTH deep."""
    found: list[tuple[str, str]] = []
    smuggled = ir.tag_text(raw)
    if smuggled:
        found.append(("tag_characters", smuggled))
    layer = [("", ir.strip_invisible(raw))]
    for _ in range(ir.MAX_DECODE_DEPTH):
        layer = [(enc, text) for _, source in layer for enc, text in ir.decoded_payloads(source)][: ir.MAX_PAYLOADS]
        found.extend(layer)
    return found[: 1 + ir.MAX_PAYLOADS] + list(ir.transformed(normal))


def _encoded_hits(raw: str, normal: str) -> tuple[dict[str, float], str]:
    weights: dict[str, float] = {}
    excerpt = ""
    for encoding, decoded in _hidden_payloads(raw, normal):
        fired, quote = _match_rules(ir.normalise(decoded), ir.PAYLOAD_FAMILIES)
        for name in fired:
            weights[f"{encoding}:{name}"] = ir.ENCODING_WEIGHT
        excerpt = excerpt or (f"[{encoding}] {quote}" if fired else "")
    return weights, excerpt


def rule_hits(text: str) -> RuleHits:
    """The rules that fire on `text` (bounded), on its normalised form and on what it hides."""
    raw = ir.bounded(text)
    normal = ir.normalise(raw)
    weights, excerpt = _match_rules(normal)
    encoded, encoded_excerpt = _encoded_hits(raw, normal)
    weights.update(encoded)
    if ir.obfuscated(raw):
        weights["obfuscation"] = ir.OBFUSCATION_WEIGHT
    return RuleHits(weights, excerpt or encoded_excerpt)


def _finding(hits: RuleHits, classified: tuple[float, str] | None, threshold: float) -> InjectionFinding:
    score, rules, excerpt = hits.score, list(hits.weights), hits.excerpt
    if classified is not None:
        probability, sentence = classified
        score = 1.0 - (1.0 - score) * (1.0 - CLASSIFIER_WEIGHT * probability)
        if probability >= 0.5:
            rules.append("classifier")
            excerpt = excerpt or " ".join(sentence[:EXCERPT_CHARS].split())
    score = round(min(max(score, 0.0), 1.0), 4)
    return InjectionFinding(score >= threshold, score, tuple(rules), excerpt)


def scan(text: str, *, embeddings: Embeddings | None = None, threshold: float = 0.5) -> InjectionFinding:
    """Screen one text: rules always, the exemplar classifier too when `embeddings` are given."""
    return scan_many([text], embeddings=embeddings, threshold=threshold)[0]


def scan_many(
    texts: list[str], *, embeddings: Embeddings | None = None, threshold: float = 0.5
) -> list[InjectionFinding]:
    """`scan` for several texts, embedding their sentences in one batch."""
    hits = [rule_hits(t) for t in texts]
    classified: list[tuple[float, str] | None] = [None] * len(texts)
    if embeddings is not None:
        classified = list(default_classifier(embeddings).probabilities([ir.bounded(t) for t in texts]))
    return [_finding(h, c, threshold) for h, c in zip(hits, classified, strict=True)]


def screen_text(
    text: str, origin: str = "user", *, threshold: float = 0.5, embeddings: Embeddings | None = None
) -> InjectionFinding:
    """Screen user input or a tool's output (`origin` names which, for the caller's trace).

    The finding is returned, not acted on: a user may legitimately ask *about* an injection, and
    the caller knows whether to refuse, warn or strip a tool result.
    """
    del origin  # the same rules apply to every origin; the caller records it with the finding
    return scan(text, embeddings=embeddings, threshold=threshold)


def neutralise_citations(text: str) -> str:
    """Rewrite a document's own citation markers ("[1]", "[2, 3]", "【4†source】") as "(1)", "(2, 3)", "(4†source)".

    Only the brackets change, one character for one, so the text keeps its length: the spans and
    strip offsets stored for a chunk still point at the same sentences.
    """
    return _CITATION_MARK.sub(lambda m: f"({m.group(0)[1:-1]})", text)


def screen_documents(
    docs: list[Document], *, threshold: float = 0.5, embeddings: Embeddings | None = None
) -> tuple[list[Document], list[dict]]:
    """Documents to pass on (citation markers neutralised) and quarantine records for those dropped.

    A record is {"source", "chunk_id", "score", "rules", "excerpt"}: enough for a trace to show
    what was held back and why, without passing the injected text on.
    """
    screened, quarantined = screen_each_document(docs, threshold=threshold, embeddings=embeddings)
    return [d for d in screened if d is not None], quarantined


def screen_each_document(
    docs: list[Document], *, threshold: float = 0.5, embeddings: Embeddings | None = None
) -> tuple[list[Document | None], list[dict]]:
    """`screen_documents` position by position: each document as it may pass on (citation markers
    neutralised, a copy when that changed it), or None where it was quarantined; then the records.
    For callers that keep something beside each document (a score)."""
    findings = scan_many([d.page_content for d in docs], embeddings=embeddings, threshold=threshold)
    screened: list[Document | None] = []
    quarantined: list[dict] = []
    for doc, finding in zip(docs, findings, strict=True):
        if finding.suspicious:
            screened.append(None)
            quarantined.append(
                {
                    "source": doc.metadata.get("source"),
                    "chunk_id": doc.metadata.get("chunk_id", doc.id),
                    "score": finding.score,
                    "rules": list(finding.rules),
                    "excerpt": finding.excerpt,
                }
            )
        else:
            text = neutralise_citations(doc.page_content)
            screened.append(doc if text == doc.page_content else doc.model_copy(update={"page_content": text}))
    return screened, quarantined
