"""Cheap question analysis shared by the routing graphs (adaptive_rag, router) and the checks.

- `arithmetic_expression`: "What is 144 divided by 12?" -> "144 / 12" (validated by the safe
  calculator), or None.
- `expected_answer_type`: what kind of answer the question asks for (person, date, number,
  place, or — in technical documentation — a code name: a function, option, parameter ...), from
  its question words; `has_answer_type` checks an answer contains one. This is the
  offline usefulness signal: an answer to "Who ..." that names nobody does not answer it.
- `question_signals`: length, question word, entities (spaCy), bridge phrases (an entity named
  only by a relation, "the district where ...": the mark of multi-hop questions), overview cues.
No LLM, no network; a spaCy parse of one short sentence costs about a millisecond.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Literal

from graphcraft.chains.terms import words

AnswerType = Literal["person", "date", "number", "place", "code"]

# ------------------------------------------------------------------------------ arithmetic

_WORD_OPERATORS = [
    (r"\bmultiplied by\b|\btimes\b", "*"),
    (r"\bdivided by\b|\bover\b", "/"),
    (r"\bplus\b|\badded to\b", "+"),
    (r"\bminus\b|\bless\b", "-"),
    (r"\bto the power of\b|\braised to\b", "**"),
    (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"),
    (r"\bmodulo\b|\bmod\b", "%"),
    (r"(?<=\d)\s*[x×]\s*(?=\d)", "*"),
    (r"÷", "/"),
]
_SQRT = re.compile(r"\bsquare root of\s+(\d+(?:\.\d+)?)", re.IGNORECASE)
_PERCENT_OF = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|percent)\s+of\s+(\d+(?:\.\d+)?)", re.IGNORECASE)
_EXPRESSION = re.compile(r"[\d(][\d\s.+\-*/%()^]*[\d)]|sqrt\(\d+(?:\.\d+)?\)")
_OPERATOR = re.compile(r"\d\s*(?:\*\*|[+\-*/%^])\s*[\d(]|sqrt\(")


def arithmetic_expression(question: str) -> str | None:
    """The arithmetic the question asks for, as a calculator expression, or None."""
    text = question.replace(",", "")
    text = _PERCENT_OF.sub(lambda m: f"({m.group(1)} / 100 * {m.group(2)})", text)
    text = _SQRT.sub(lambda m: f"sqrt({m.group(1)})", text)
    for pattern, symbol in _WORD_OPERATORS:
        text = re.sub(pattern, f" {symbol} ", text, flags=re.IGNORECASE)
    candidates = [m.group(0).strip() for m in _EXPRESSION.finditer(text)]
    candidates = [c for c in candidates if _OPERATOR.search(c)]
    if not candidates:
        return None
    expression = re.sub(r"\s+", " ", max(candidates, key=len))
    from graphcraft.tools.calculator import CalculatorError, evaluate

    try:
        evaluate(expression)
    except CalculatorError:
        return None
    return expression


# ------------------------------------------------------------------------------ answer types

_TYPE_CUES: list[tuple[re.Pattern[str], AnswerType]] = [
    (
        re.compile(
            r"^(in |on |at |by |during |since |until )?(what|which) (year|date|day|month|decade|century)\b|"
            r"^when (did|was|were|is|are|will|does|do|has|had|have)\b",
            re.I,
        ),
        "date",
    ),
    (
        re.compile(
            r"\bhow (many|much|long|big|large|high|far|old|tall|deep|fast|often)\b|"
            r"\bwhat (age|percentage|proportion|price|fee|cost|number|"
            r"population|temperature|speed|depth|height|budget|share|size|total|amount|revenue|income)\b|"
            r"\bby how much\b|"
            r"^what (is|was|are|were|does|did|do)\b.*"
            r"\b(age|price|fee|cost|population|temperature|speed|depth|height|budget|"
            r"revenue|income|level|ceiling|limit|distance|length|weight|capacity|endurance|salary)\b",
            re.I,
        ),
        "number",
    ),
    (
        re.compile(
            r"^(who|whom|whose)\b|"
            r"\b(which|what) (person|woman|man|brothers|company|organisation|organization|firm|group|"
            r"contractor|party|engineer|director|founder)\b",
            re.I,
        ),
        "person",
    ),
    (
        re.compile(
            r"^where\b|\b(which|what) (district|city|town|country|street|place|region|part of the city)\b", re.I
        ),
        "place",
    ),
    (
        re.compile(
            r"\b(what|which) (\w+[ -])?(version|release|size|port|timeout|limit|level)\b|"
            r"\bwhat (is|was|are) the (oldest|newest|largest|smallest|maximum|minimum|highest|lowest) ",
            re.I,
        ),
        "number",
    ),
    (
        re.compile(
            r"\b(which|what) ([\w-]+ ){0,2}"
            r"(functions?|methods?|options?|arguments?|parameters?|flags?|modules?|class(es)?|attributes?|"
            r"settings?|variables?|commands?|exceptions?|constants?|keywords?|fields?|propert(y|ies)|keys?|switch(es)?|"
            r"extensions?|calls?|roles?|privileges?|statements?|clauses?|tools?|utilit(y|ies)|programs?|views?)\b|"
            r"^how (do|can|should|would) (i|we|you|one|my)\b",
            re.I,
        ),
        "code",
    ),
]
# A name as code writes it: --option, func(), pkg.mod, snake_case, CamelCase, CONSTANT.
_CODE_TOKEN = re.compile(
    r"(?<![\w-])(--?[A-Za-z][\w-]+|\w+\(\)|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z]\w*_\w+|[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*|[A-Z]{3,}\w*)"
)
_NUMBER_WORDS = (
    r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"twenty|thirty|forty|fifty|hundred|thousand|million|billion|dozen)\b"
)
_MONTHS = r"\b(january|february|march|april|may|june|july|august|september|october|november|december)\b"


@lru_cache(maxsize=1024)
def expected_answer_type(question: str) -> AnswerType | None:
    """The kind of answer asked for, from the question's wording (None: open-ended)."""
    for pattern, kind in _TYPE_CUES:
        if pattern.search(question.strip()):
            return kind
    return None


def _new_names(answer: str, question: str) -> list[str]:
    """Capitalised words in the answer (not sentence-initial) that the question does not contain."""
    asked = {w.lower() for w in words(question)}
    names = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", answer):
        tokens = words(re.sub(r"\[\d+\]", "", sentence))
        names += [t for t in tokens[1:] if t[0].isupper() and t.lower() not in asked and len(t) > 1]
    return names


_NAME_LABELS = {"person": ("PERSON", "ORG", "NORP"), "place": ("GPE", "LOC", "FAC")}


def has_answer_type(answer: str, kind: AnswerType | None, question: str = "", nlp: object | None = None) -> bool:
    """Does the answer contain something of the expected kind? (True when nothing is expected.)

    Numbers and dates by pattern; names (person, place) by spaCy entities the question does not
    already mention when `nlp` is given, else by capitalised words new to the question.
    """
    if kind is None:
        return True
    text = re.sub(r"\[\d+\]", "", answer)
    low = text.lower()
    if kind == "number":
        return bool(re.search(r"\d", text) or re.search(_NUMBER_WORDS, low))
    if kind == "date":
        return bool(re.search(r"\b(1[0-9]{3}|20[0-9]{2})\b", text) or re.search(_MONTHS, low))
    if kind == "code":
        asked = question.lower()
        return any(m.group(0).lower().rstrip("()") not in asked for m in _CODE_TOKEN.finditer(text))
    if nlp is not None:
        asked = question.lower()
        return any(e.label_ in _NAME_LABELS[kind] and e.text.lower() not in asked for e in nlp(text).ents)  # type: ignore[operator]
    return bool(_new_names(text, question))


ANSWER_FIT_BONUS = 0.3  # ranking strips: one holding the asked-for kind of answer beats a merely similar one


def answer_fit(strip_text: str, question: str) -> float:
    """1 when the strip holds the kind of thing asked for (a number, a date, a new name), else 0.

    Open questions (no expected type) give 0 for every strip, so ranking falls back to relevance.
    """
    kind = expected_answer_type(question)
    return 1.0 if kind is not None and has_answer_type(strip_text, kind, question) else 0.0


# ------------------------------------------------------------------------------ signals

_OVERVIEW = re.compile(
    r"^(summari[sz]e|describe|outline|explain|overview|tell me about|give (me )?(an )?(overview|summary|account))\b|"
    r"\b(overview|summary|history of|main (points|themes|objectives)|key (points|facts|findings))\b|"
    r"^how (is|are|was|were|has|have|does|do) .+ (involved|related|connected|changed|developed|work)\b|"
    r"^what (rules|role|changes|steps|measures|decisions|objectives|goals|findings|problems) |"
    r"^what (has|have|did) .+ (shown|decided?|found|achieved|changed)\b",
    re.IGNORECASE,
)
_BRIDGE = re.compile(
    r"\b(the|a|an)\s+(?:\w+\s+){0,3}?\w+\s+(where|whose|that|which|who)\s+\w+|"
    r"\bthe (year|day|month|date) (the|that|when)\b",
    re.IGNORECASE,
)


@dataclass
class QuestionSignals:
    words: int
    question_word: str | None
    answer_type: AnswerType | None
    entities: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)  # "the district where ...": an entity named only by a relation
    overview_cue: str | None = None
    arithmetic: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def question_signals(question: str, nlp: object | None = None) -> QuestionSignals:
    """Cheap signals about a question; `nlp` is a spaCy pipeline (entities and relative clauses)."""
    tokens = words(question)
    first = tokens[0].lower() if tokens else None
    qword = next(
        (
            t.lower()
            for t in tokens[:4]
            if t.lower() in {"what", "which", "who", "whom", "whose", "when", "where", "why", "how"}
        ),
        first,
    )
    overview = _OVERVIEW.search(question.strip())
    bridges = [m.group(0) for m in _BRIDGE.finditer(question) if m.start() > 0]
    entities: list[str] = []
    if nlp is not None:
        doc = nlp(question)  # type: ignore[operator]
        entities = [
            e.text
            for e in doc.ents
            if e.label_ not in ("CARDINAL", "ORDINAL") and not e.text.lower().startswith(("what", "which"))
        ]
    return QuestionSignals(
        words=len(tokens),
        question_word=qword,
        answer_type=expected_answer_type(question),
        entities=entities,
        bridges=bridges,
        overview_cue=overview.group(0) if overview else None,
        arithmetic=arithmetic_expression(question),
    )
