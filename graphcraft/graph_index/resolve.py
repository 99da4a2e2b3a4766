"""Entity resolution: merge the surface forms of one entity, keep them as aliases.

Four rules, applied in order over all mentions of the corpus (union-find):

1. same normalised name: accents, case, leading articles and titles ("Dr."), corporate
   suffixes ("Inc.", "Corp", "Corporation") and punctuation removed, so "Acme Corp",
   "Acme Corporation" and "ACME" are one key;
2. acronyms: "LMT" joins "Lindqvar Metropolitan Transit" when exactly one name has those
   initials;
3. short forms: "Renwick", "T. Renwick" join "Tobias Renwick" when the short form's words
   (or initial + surname) occur in a longer name of a compatible type; among several such
   names the clearly most mentioned one wins (a popularity prior, as in entity linking),
   otherwise the short form stays on its own rather than being merged wrongly;
4. embeddings: names of compatible types that share a word and whose name embeddings have
   cosine similarity above a threshold ("Essel Reconnect" / "Essel Reconnect Programme").

Types from spaCy are noisy on unfamiliar names, so a cluster's type is the majority of its
mentions' types, and types only block merges between clearly different kinds
(a person and a place).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

_TITLES = {"dr", "mr", "mrs", "ms", "miss", "prof", "professor", "sir", "dame", "lord", "lady", "st"}
_SUFFIXES = {
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "ltd",
    "limited",
    "llc",
    "plc",
    "gmbh",
    "ag",
    "sa",
    "company",
    "ab",
    "as",
    "oy",
}
_ARTICLES = {"the", "a", "an"}
_STOP = {"of", "for", "and", "the", "de", "la", "in", "on", "at", "to"}
_KIND = {
    "PERSON": "person",
    "ORG": "org", "NORP": "org",
    "GPE": "place", "LOC": "place", "FAC": "place",
}  # fmt: skip


def normalise(name: str) -> str:
    """The matching key of a name (see rule 1)."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower().replace("&", " and ")
    text = re.sub(r"['’]s\b", "", text)
    words = re.findall(r"[a-z0-9]+", text)
    while words and words[0] in _ARTICLES | _TITLES:
        words = words[1:]
    while len(words) > 1 and words[-1] in _SUFFIXES:
        words = words[:-1]
    return " ".join(words)


def kind(entity_type: str) -> str:
    """person / org / place / other: the only distinctions the resolver trusts."""
    return _KIND.get(entity_type.upper(), "other")


def compatible(a: str, b: str) -> bool:
    ka, kb = kind(a), kind(b)
    return ka == kb or "other" in (ka, kb)


def initials(key: str, skip_stop: bool) -> str:
    return "".join(w[0] for w in key.split() if not (skip_stop and w in _STOP))


@dataclass
class Form:
    """All mentions of one normalised key."""

    key: str
    names: Counter = field(default_factory=Counter)
    types: Counter = field(default_factory=Counter)
    sources: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return sum(self.names.values())

    @property
    def type(self) -> str:
        informative = Counter({t: n for t, n in self.types.items() if t != "MISC"})
        return (informative or self.types).most_common(1)[0][0] if self.types else "MISC"

    @property
    def is_acronym(self) -> bool:
        best = self.names.most_common(1)[0][0]
        return " " not in self.key and 2 <= len(self.key) <= 6 and best.isupper() and best.isalpha()


@dataclass
class ResolvedEntity:
    id: str
    name: str
    type: str
    aliases: list[str]
    keys: list[str]
    mentions: int


class _UnionFind:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {i: i for i in items}

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def entity_id(key: str) -> str:
    return "e:" + key.replace(" ", "_")


class EntityResolver:
    """Clusters mentions into entities. ``embed(names) -> (n, d) normalised vectors`` enables rule 4."""

    def __init__(
        self,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        similarity: float = 0.85,
        dominance: float = 2.0,
    ) -> None:
        self.embed = embed
        self.similarity = similarity
        self.dominance = dominance  # how much more often the winning long form must be mentioned

    def resolve(self, mentions: Sequence[tuple[str, str, str]]) -> tuple[list[ResolvedEntity], dict[str, str]]:
        """[(surface name, type, source)] -> (entities, {surface name: entity id})."""
        forms: dict[str, Form] = {}
        for name, etype, source in mentions:
            key = normalise(name)
            if not key:
                continue
            form = forms.setdefault(key, Form(key))
            form.names[name] += 1
            form.types[etype] += 1
            form.sources.add(source)
        uf = _UnionFind(forms)
        self._acronyms(forms, uf)
        self._short_forms(forms, uf)
        if self.embed is not None:
            self._similar(forms, uf)

        clusters: dict[str, list[Form]] = defaultdict(list)
        for key, form in forms.items():
            clusters[uf.find(key)].append(form)
        entities, by_name = [], {}
        for members in clusters.values():
            # canonical: the most mentioned full name (several words, not an acronym), then the longest
            main = max(members, key=lambda f: (len(f.key.split()) > 1 and not f.is_acronym, f.count, len(f.key), f.key))
            types: Counter = Counter()
            for f in members:
                types.update(f.types)
            informative = Counter({t: n for t, n in types.items() if t != "MISC"}) or types
            ent = ResolvedEntity(
                id=entity_id(main.key),
                name=main.names.most_common(1)[0][0],
                type=informative.most_common(1)[0][0],
                aliases=sorted({n for f in members for n in f.names}),
                keys=sorted(f.key for f in members),
                mentions=sum(f.count for f in members),
            )
            entities.append(ent)
            for f in members:
                for n in f.names:
                    by_name[n] = ent.id
        entities.sort(key=lambda e: e.id)
        return entities, by_name

    # -- rules -------------------------------------------------------------------------
    def _acronyms(self, forms: dict[str, Form], uf: _UnionFind) -> None:
        by_initials: dict[str, set[str]] = defaultdict(set)
        for key in forms:
            if len(key.split()) >= 2:
                by_initials[initials(key, False)].add(key)
                by_initials[initials(key, True)].add(key)
        for key, form in forms.items():
            if form.is_acronym:
                targets = {t for t in by_initials.get(key, set()) if compatible(forms[t].type, form.type)}
                if len(targets) == 1:
                    uf.union(key, targets.pop())

    def _short_forms(self, forms: dict[str, Form], uf: _UnionFind) -> None:
        longer = sorted(forms, key=lambda k: -len(k.split()))
        for key in longer:  # two-word short forms first, so "Institute" sees their merges
            form = forms[key]
            words = key.split()
            if len(words) > 2 or form.is_acronym or all(w in _STOP or w.isdigit() for w in words):
                continue
            candidates = [
                other for other in longer
                if other != key and len(other.split()) >= len(words) and _contains(other.split(), words)
                and (
                    compatible(forms[other].type, form.type)
                    or _person_short_form(words, other.split(), forms[other].type)
                )
            ]  # fmt: skip
            if not candidates:
                continue
            # candidates that are themselves one entity count once
            by_root: dict[str, int] = defaultdict(int)
            for c in candidates:
                by_root[uf.find(c)] += forms[c].count
            ranked = sorted(by_root.items(), key=lambda kv: -kv[1])
            # A short form far more frequent than its only long form is a name of its own that
            # the long form builds on ("Saltgate" vs "Saltgate Book Fair").
            surname = len(words) == 1 and kind(form.type) == "person"  # "Haddad" -> "Leila Haddad" is the usual case
            if not surname and form.count > self.dominance * 1.5 * ranked[0][1]:
                continue
            if len(ranked) == 1 or ranked[0][1] >= self.dominance * ranked[1][1]:
                uf.union(key, ranked[0][0])

    def _similar(self, forms: dict[str, Form], uf: _UnionFind) -> None:
        keys = sorted(forms)
        by_word: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            for w in set(key.split()) - _STOP:
                if not w.isdigit():
                    by_word[w].append(i)
        pairs = {(i, j) for idx in by_word.values() if len(idx) <= 50 for i in idx for j in idx if i < j}
        pairs = {
            (i, j)
            for i, j in pairs
            if compatible(forms[keys[i]].type, forms[keys[j]].type) and uf.find(keys[i]) != uf.find(keys[j])
        }
        if not pairs:
            return
        assert self.embed is not None
        pairs = {(i, j) for i, j in pairs if _digits(keys[i]) == _digits(keys[j])}  # "Line 3" is not "Line 7"
        used = sorted({i for pair in pairs for i in pair})
        if not used:
            return
        row = {i: n for n, i in enumerate(used)}
        vectors = np.asarray(self.embed([forms[keys[i]].names.most_common(1)[0][0] for i in used]), dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        for i, j in sorted(pairs):
            if float(vectors[row[i]] @ vectors[row[j]]) >= self.similarity:
                uf.union(keys[i], keys[j])


def _person_short_form(short: list[str], long: list[str], long_type: str) -> bool:
    """A surname alone or an initial + surname names a person whatever spaCy labelled it."""
    if kind(long_type) != "person":
        return False
    return short == long[-1:] or (len(short) == 2 and len(short[0]) == 1 and short[1] == long[-1])


def _digits(key: str) -> set[str]:
    return {w for w in key.split() if any(c.isdigit() for c in w)}


def _contains(long: list[str], short: list[str]) -> bool:
    """short's words appear in long contiguously, or as initial + surname ("t renwick")."""
    n = len(short)
    if any(long[i : i + n] == short for i in range(len(long) - n + 1)):
        return True
    if n == 2 and len(short[0]) == 1 and len(long) >= 2:
        return long[0].startswith(short[0]) and long[-1] == short[1]
    return False
