"""The PII guard: personal data out of what a model sees, and out of traces and logs.

`PiiGuard(mode)` finds e-mails, phone numbers, US SSNs, credit cards (Luhn-checked), IBANs
(mod-97-checked), IP addresses, names and places (see `pii_engine`) and, by `Settings.pii_mode`:

- ``redact``: each value becomes its type, ``<EMAIL_ADDRESS>``; nothing can be put back.
- ``mask``: a few characters stay so a person can still tell values apart (``j***@***``,
  ``**** **** **** 1111``, ``J*** D***``); nothing can be put back.
- ``pseudonymise``: each value becomes a numbered placeholder, ``<PERSON_1>``; the same value gets
  the same placeholder for as long as the same mapping is passed in, so a thread keeps "<PERSON_1>"
  for one person across turns. `restore` puts the values back (into an answer, when
  `Settings.pii_restore` allows it).

The mapping is a plain ``{placeholder: value}`` dict of strings: a graph keeps it in its state and
a checkpointer stores it with the thread. It holds the personal data itself, so it is as sensitive
as the text it came from: keep it out of logs (`redact_for_log` is for those).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from graphcraft.config import Settings, get_settings
from graphcraft.guards.pii_engine import ENTITIES, Found, PiiError, find_many, propagate

PiiMode = Literal["redact", "mask", "pseudonymise"]
MODES: tuple[str, ...] = get_args(PiiMode)
PLACEHOLDER = re.compile(r"<(" + "|".join(ENTITIES) + r")_(\d{1,9})>")
MAX_LOG_DEPTH = 32  # nesting redact_for_log descends; deeper values are replaced whole
_DIGITS_KEPT = 4


@functools.lru_cache(maxsize=1)
def _anonymizer() -> Any:
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


class PiiModeError(PiiError):
    def __init__(self, mode: str) -> None:
        super().__init__(f"unknown PII mode {mode!r}: use one of {', '.join(MODES)} (GRAPHCRAFT_PII_MODE)")


def _mask_keep_tail(value: str, keep_head: int = 0) -> str:
    """Letters and digits starred except the first `keep_head` and the last four; separators kept."""
    alnum = [i for i, ch in enumerate(value) if ch.isalnum()]
    shown = set(alnum[:keep_head]) | set(alnum[-_DIGITS_KEPT:])
    return "".join(ch if (i in shown or not ch.isalnum()) else "*" for i, ch in enumerate(value))


def mask_value(entity_type: str, value: str) -> str:
    """The partial form of `value` in mask mode: enough to tell two values apart, not to use one."""
    if entity_type == "EMAIL_ADDRESS":
        return f"{value[:1]}***@***"
    if entity_type == "IBAN_CODE":
        return _mask_keep_tail(value, keep_head=2)  # the country stays readable
    if entity_type in ("PHONE_NUMBER", "US_SSN", "CREDIT_CARD"):
        return _mask_keep_tail(value)
    if entity_type == "IP_ADDRESS":
        separator = ":" if ":" in value else "."
        head, *rest = value.split(separator)
        return separator.join([head, *("*" for _ in rest)])
    return " ".join(f"{word[:1]}***" for word in value.split())


class PiiGuard:
    """Finds personal data in text and redacts, masks or pseudonymises it (see the module docstring)."""

    def __init__(self, mode: str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.mode = mode or self.settings.pii_mode
        if self.mode not in MODES:
            raise PiiModeError(self.mode)

    def find(self, text: str, mapping: Mapping[str, str] | None = None) -> list[Found]:
        """The personal data in `text`, non-overlapping, in text order; values already in `mapping` included."""
        return propagate(text, find_many([text], self.settings.spacy_model)[0], known_values(mapping))

    def anonymize(self, text: str, mapping: Mapping[str, str] | None = None) -> tuple[str, dict[str, str], list[str]]:
        """(text without its personal data, the updated mapping, the entity types found).

        `mapping` is not changed: the returned one is a new dict (the same content when nothing new
        was pseudonymised, and always the given one in redact and mask modes).
        """
        return self.apply(text, self.find(text, mapping), mapping)

    def anonymize_many(
        self, texts: list[str], mapping: Mapping[str, str] | None = None
    ) -> tuple[list[str], dict[str, str], list[str]]:
        """`anonymize` over several texts (retrieved chunks) in one spaCy batch, sharing one mapping."""
        updated = dict(mapping or {})
        out: list[str] = []
        types: set[str] = set()
        for text, spans in zip(texts, find_many(texts, self.settings.spacy_model), strict=True):
            anonymized, updated, found = self.apply(text, propagate(text, spans, known_values(updated)), updated)
            out.append(anonymized)
            types.update(found)
        return out, updated, sorted(types)

    def apply(
        self, text: str, found: list[Found], mapping: Mapping[str, str] | None = None
    ) -> tuple[str, dict[str, str], list[str]]:
        """`anonymize` with the spans already found (lets a caller analyse many texts in one batch)."""
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        pseudonyms = Pseudonyms(mapping)
        if not found:
            return text, pseudonyms.mapping, []
        if self.mode == "pseudonymise":  # number placeholders in reading order (Presidio works from the end)
            for span in found:
                pseudonyms.placeholder(span.type, text[span.start : span.end])
        types = sorted({span.type for span in found})
        # The replacement depends on (type, value) only, so one operator per type does: the same value
        # always gets the same replacement.
        operators = {
            entity: OperatorConfig("custom", {"lambda": functools.partial(self._replacement, entity, pseudonyms)})
            for entity in types
        }
        results = [RecognizerResult(span.type, span.start, span.end, span.score) for span in found]
        return _anonymizer().anonymize(text, results, operators).text, pseudonyms.mapping, types

    def _replacement(self, entity_type: str, pseudonyms: Pseudonyms, value: str) -> str:
        if self.mode == "redact":
            return f"<{entity_type}>"
        if self.mode == "mask":
            return mask_value(entity_type, value)
        return pseudonyms.placeholder(entity_type, value)

    @staticmethod
    def restore(text: str, mapping: Mapping[str, str]) -> str:
        """`text` with every known placeholder replaced by its value (unknown ones are left as they are)."""
        return PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def pii_guard(mode: str | None = None, *, settings: Settings | None = None) -> PiiGuard:
    """A guard for `mode` (default Settings.pii_mode); cheap, the analyzer behind it is built once per process."""
    return PiiGuard(mode, settings=settings)


class Pseudonyms:
    """A copy of a pseudonymisation mapping with its reverse index: placeholder lookups in constant time."""

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        self.mapping: dict[str, str] = dict(mapping or {})
        self._by_value: dict[tuple[str, str], str] = {}
        self._last: dict[str, int] = {}
        for placeholder, value in self.mapping.items():
            if m := PLACEHOLDER.fullmatch(placeholder):
                self._by_value.setdefault((m.group(1), value), placeholder)
                self._last[m.group(1)] = max(self._last.get(m.group(1), 0), int(m.group(2)))

    def placeholder(self, entity_type: str, value: str) -> str:
        """The placeholder of `value`, adding ``<TYPE_n>`` (the next number for the type) when it is new."""
        key = (entity_type, value)
        if key not in self._by_value:
            self._last[entity_type] = self._last.get(entity_type, 0) + 1
            placeholder = f"<{entity_type}_{self._last[entity_type]}>"
            self.mapping[placeholder] = value
            self._by_value[key] = placeholder
        return self._by_value[key]


def known_values(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """value -> entity type of a pseudonymisation mapping: values seen in earlier turns are found again."""
    known: dict[str, str] = {}
    for placeholder, value in (mapping or {}).items():
        if m := PLACEHOLDER.fullmatch(placeholder):
            known.setdefault(value, m.group(1))
    return known


def redact_for_log(obj: Any, *, settings: Settings | None = None) -> Any:
    """A copy of `obj` (a trace, a log record) with personal data in every string redacted (<EMAIL_ADDRESS>).

    Strings inside dicts, lists, tuples and sets are analysed in one batch; dict keys, numbers,
    booleans and None are kept; any other object is logged as its redacted ``str()``. Always
    redact mode: a log must not hold values that could be put back. Nesting deeper than
    MAX_LOG_DEPTH is replaced whole by ``<REDACTED_DEPTH>`` rather than logged unscanned.
    """
    settings = settings or get_settings()
    strings: list[str] = []
    _collect(obj, strings, 0)
    found = find_many(strings, settings.spacy_model) if strings else []
    guard = PiiGuard("redact", settings=settings)
    redacted = {text: guard.apply(text, propagate(text, spans))[0] for text, spans in zip(strings, found, strict=True)}
    return _rebuild(obj, redacted, 0)


def _collect(obj: Any, strings: list[str], depth: int) -> None:
    if depth > MAX_LOG_DEPTH:
        return
    if isinstance(obj, str):
        strings.append(obj)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            _collect(value, strings, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            _collect(value, strings, depth + 1)
    elif obj is not None and not isinstance(obj, bool | int | float):
        strings.append(str(obj))


def _rebuild(obj: Any, redacted: Mapping[str, str], depth: int) -> Any:
    if depth > MAX_LOG_DEPTH:
        return "<REDACTED_DEPTH>"
    if isinstance(obj, str):
        return redacted[obj]
    if isinstance(obj, Mapping):
        return {key: _rebuild(value, redacted, depth + 1) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = [_rebuild(value, redacted, depth + 1) for value in obj]
        return items if isinstance(obj, list | set | frozenset) else tuple(items)
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    return redacted[str(obj)]
