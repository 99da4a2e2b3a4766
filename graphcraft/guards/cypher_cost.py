"""What a read-only Cypher query costs the database before any timeout or memory cap can stop it.

:mod:`graphcraft.guards.cypher` makes sure a query only reads; this module makes sure reading
it cannot stall or kill the server. Two costs escape the database's own limits:

- **Parsing.** FalkorDB's parser backtracks: each level of nesting (brackets, ``CASE``, a
  prefix ``NOT`` or ``-``) multiplies the parse time by about four, and parsing happens before
  the query timeout starts, on a worker thread other queries wait for. ~100 characters of
  nested maps or parentheses take minutes. :func:`check_nesting` bounds the depth and the total
  parser work (the sum of 4^depth over every level opened).
- **One expression.** A single expression is evaluated without looking at the timeout or the
  per-query memory cap: ``reduce(s = 'ab', i IN range(1, 40) | s + s)`` or a comprehension over
  a range inside a comprehension over a range allocates until the server aborts out of memory.
  :func:`check_values` computes an upper bound on the size of every value (in cells: one per
  number, list item or character) and on the cells produced while evaluating each expression
  (work), following variables from ``WITH ... AS``, ``UNWIND`` and comprehensions, and refuses
  the query when a bound is over the limit.

Sizes that depend on the graph (collected rows, pattern comprehensions) are polynomials in G,
the number of rows or items graph data can supply: a value may grow like G (a few cells per
item), never like G² (a comprehension over collected rows inside another one). Rows gathered by
``collect`` grow one row at a time, which the database's memory cap does stop; what this module
bounds is what a single expression does with them afterwards.

The analysis is an over-approximation over the bracket structure, not a Cypher parser: an
operator adds the sizes of its operands, an unknown function returns at most the sum of its
arguments, and only constructs that multiply (comprehensions, ``reduce``, ``replace``,
``collect``, ``range``) multiply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_NESTING = 12  # levels; the parser needs ~30-100 ms at 12 and about 4x more per level
MAX_PARSE_COST = 2 * 4**12  # sum of 4^depth over every level opened: a few parses at the maximum depth
MAX_VALUE_CELLS = 1_000_000  # the largest value one expression may build (~16-30 MB in FalkorDB)
MAX_WORK = 4_000_000  # cells one expression may produce (~1 s of FalkorDB's time)
MAX_CELLS_PER_GRAPH_ITEM = 64  # a value may hold this many cells per graph row or item
MAX_WORK_PER_GRAPH_ITEM = 256  # and cost this much work per graph row or item
COLLECT_CAP_CELLS = 64_000_000  # what the database's per-query memory cap lets collect() gather
MAX_SORTED_ROWS = 1_000_000  # rows ORDER BY, DISTINCT or grouping may hold (from UNWIND of literals)
MAX_ANALYSIS_STEPS = 5_000  # expressions this module evaluates for one query (keeps the check itself fast)

_CLAUSES = frozenset(
    {"MATCH", "OPTIONAL", "WHERE", "WITH", "RETURN", "UNWIND", "ORDER", "SKIP", "LIMIT", "UNION", "CALL", "YIELD"}
)
_NOT_VARIABLES = frozenset(
    {
        "AND", "OR", "XOR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE", "STARTS", "ENDS", "WITH", "CONTAINS",
        "DISTINCT", "AS", "ASC", "DESC", "ASCENDING", "DESCENDING", "WHEN", "THEN", "ELSE", "END", "BY", "ALL",
    }
)  # fmt: skip
_BOOLEAN_OPERATORS = frozenset({"AND", "OR", "XOR", "NOT", "IN", "IS", "STARTS", "ENDS", "CONTAINS"})
_COMPARISONS = frozenset({"=", "<>", "<", ">", "<=", ">=", "=~"})
_ARITHMETIC = frozenset({"-", "*", "/", "%", "^"})
_SCALAR_FUNCTIONS = frozenset(
    {
        "size", "length", "count", "sum", "avg", "stdev", "stdevp", "percentilecont", "percentiledisc", "abs",
        "ceil", "floor", "round", "sign", "sqrt", "exp", "log", "log10", "rand", "tointeger", "tofloat",
        "toboolean", "tointegerornull", "tofloatornull", "tobooleanornull", "id", "elementid", "exists",
        "isempty", "timestamp", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "pi", "e", "degrees",
        "radians", "haversin", "all", "any", "none", "single", "startnode", "endnode", "type", "hasLabels",
    }
)  # fmt: skip
_AGGREGATES = frozenset(
    {"count", "sum", "avg", "min", "max", "collect", "stdev", "stdevp", "percentilecont", "percentiledisc"}
)
_QUANTIFIERS = frozenset({"all", "any", "none", "single"})
_ITEM_FUNCTIONS = frozenset({"head", "last", "min", "max"})
_PROBE = 1e12  # an accumulator size far above any real one, to read how reduce() grows


class _Token(Protocol):
    kind: str
    text: str
    value: Any

    @property
    def upper(self) -> str: ...


class CostError(ValueError):
    """A query over a cost limit; the message is the one-line reason the guard reports."""


# --- nesting: the parser's cost -------------------------------------------------------------------


def check_nesting(sig: Sequence[_Token]) -> None:
    """Refuse queries nested deeper than MAX_NESTING or whose parse would do more than MAX_PARSE_COST.

    Levels are brackets, CASE ... END, and prefix NOT / - / + (the parser backtracks on each).
    A prefix operator's level ends where its operand does: NOT at AND/OR/XOR, a separator or a
    clause; a sign at the next binary operator as well.
    """
    stack: list[str] = []  # "b" bracket or CASE, "n" NOT, "u" sign
    deepest, cost, prev = 0, 0, None
    for tok in sig:
        word, text = tok.upper, tok.text
        if tok.kind == "punct" and text in (")", "]", "}") or word == "END":
            _pop_prefixes(stack, "nu")
            if not stack:
                raise CostError("unbalanced brackets")
            stack.pop()
        elif word in ("AND", "OR", "XOR", "WHEN", "THEN", "ELSE", "AS") or word in _CLAUSES or text in (",", "|"):
            _pop_prefixes(stack, "nu")
        elif tok.kind == "punct" and text not in ("(", "[", "{", ".") and not _is_sign(tok, prev):
            _pop_prefixes(stack, "u")
        kind = _opens(tok, prev)
        if kind:
            stack.append(kind)
            cost += 4 ** len(stack)
            deepest = max(deepest, len(stack))
        prev = tok
    if stack and any(k == "b" for k in stack):
        raise CostError("unbalanced brackets")
    if deepest > MAX_NESTING:
        raise CostError(
            f"query nested {deepest} levels deep (at most {MAX_NESTING}: the parser's time grows 4x per level)"
        )
    if cost > MAX_PARSE_COST:
        raise CostError("too many deeply nested expressions: the database would spend seconds parsing the query")


def _opens(tok: _Token, prev: _Token | None) -> str:
    """The kind of level a token opens: 'b' bracket or CASE, 'n' NOT, 'u' sign, '' none."""
    if tok.kind == "punct" and tok.text in ("(", "[", "{") or tok.upper == "CASE":
        return "b"
    if tok.upper == "NOT":
        return "n"
    return "u" if _is_sign(tok, prev) else ""


def _is_sign(tok: _Token, prev: _Token | None) -> bool:
    """A '-' or '+' that is a prefix sign rather than a binary operator (after '<' and '>' too: safer)."""
    if tok.kind != "punct" or tok.text not in ("-", "+"):
        return False
    if prev is None:
        return True
    if prev.kind == "punct":
        return prev.text not in (")", "]", "}")
    return prev.kind == "ident" and prev.upper in _NOT_VARIABLES | _CLAUSES | {"UNWIND", "SKIP", "LIMIT"}


def _pop_prefixes(stack: list[str], kinds: str) -> None:
    """Close the prefix-operator levels of the given kinds on top of the stack (their operand ended)."""
    while stack and stack[-1] in kinds:
        stack.pop()


# --- sizes as polynomials in G --------------------------------------------------------------------


@dataclass(frozen=True)
class Poly:
    """An upper bound c[0] + c[1]·G + c[2]·G² + c[3]·G³, G being what graph data can supply."""

    c: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @staticmethod
    def of(value: float, degree: int = 0) -> Poly:
        """value · G^degree."""
        coeffs = [0.0, 0.0, 0.0, 0.0]
        coeffs[degree] = float(value)
        return Poly((coeffs[0], coeffs[1], coeffs[2], coeffs[3]))

    def __add__(self, other: Poly) -> Poly:
        a, b = self.c, other.c
        return Poly((a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]))

    def __mul__(self, other: Poly) -> Poly:
        out = [0.0, 0.0, 0.0, 0.0]
        for i, x in enumerate(self.c):
            for j, y in enumerate(other.c):
                if x and y:
                    out[min(i + j, 3)] += x * y  # degree 3 stands for "3 or more": refused either way
        return Poly((out[0], out[1], out[2], out[3]))

    def scale(self, k: float) -> Poly:
        """Every coefficient times k."""
        return Poly((self.c[0] * k, self.c[1] * k, self.c[2] * k, self.c[3] * k))

    def max(self, other: Poly) -> Poly:
        """Coefficient-wise maximum: a bound of either."""
        a, b = self.c, other.c
        return Poly((max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))

    @property
    def degree(self) -> int:
        """The highest power of G with a non-zero coefficient."""
        return max((i for i, x in enumerate(self.c) if x), default=0)


ZERO, ONE, G = Poly(), Poly.of(1), Poly.of(1, 1)


@dataclass(frozen=True)
class Val:
    """What evaluating an expression gives: its size, item count and item size, and the work done."""

    size: Poly = ONE
    count: Poly = ONE  # items, when the value is a list
    elem: Poly = ONE  # cells of the largest item
    work: Poly = ONE  # cells produced while evaluating it
    num: bool = False  # a fixed-size scalar (number, boolean, null): adding to it does not grow it
    elem_num: bool = False  # a list whose items are all such scalars


SCALAR = Val(num=True)
UNIT = Val()  # a value read from the graph: its size is the database's business


def _item(value: Val) -> Val:
    """One item of a list value (as big as the largest item)."""
    return Val(size=value.elem, count=value.elem, elem=value.elem, work=ZERO, num=value.elem_num)


def _within(value: Val) -> Val:
    """Any part of a value: a list of up to all its cells, each as big as the whole."""
    if value.num:
        return value
    return Val(value.size, value.size, value.size, value.work, False, False)


def _param_size(value: Any, depth: int = 0) -> float:
    """Cells of a parameter's actual value (strings by characters, containers by their items)."""
    if isinstance(value, str | bytes):
        return max(1, len(value))
    if depth < 20 and isinstance(value, list | tuple):
        return 1 + sum(_param_size(v, depth + 1) for v in value)
    if depth < 20 and isinstance(value, Mapping):
        return 1 + sum(_param_size(v, depth + 1) for v in value.values())
    return 1


# --- the bracket tree -----------------------------------------------------------------------------


@dataclass
class Group:
    """A bracketed part of the query: "(" "[" "{" or "CASE", with its tokens and subgroups."""

    open: str
    items: list[Any] = field(default_factory=list)


def build_tree(sig: Sequence[_Token]) -> list[Any]:
    """The tokens with every (...), [...], {...} and CASE ... END as a Group (nesting already checked)."""
    root: list[Any] = []
    stack: list[Group] = []
    closers = {")": "(", "]": "[", "}": "{", "END": "CASE"}
    for tok in sig:
        current = stack[-1].items if stack else root
        opener = (
            tok.text if tok.kind == "punct" and tok.text in ("(", "[", "{") else "CASE" if tok.upper == "CASE" else ""
        )
        closer = (
            tok.text if tok.kind == "punct" and tok.text in (")", "]", "}") else "END" if tok.upper == "END" else ""
        )
        if opener:
            group = Group(opener)
            current.append(group)
            stack.append(group)
        elif closer:
            if not stack or stack[-1].open != closers[closer]:
                raise CostError("unbalanced brackets")
            stack.pop()
        else:
            current.append(tok)
    if stack:
        raise CostError("unbalanced brackets")
    return root


def _split(items: list[Any], sep: str) -> list[list[Any]]:
    """Items split at a top-level separator token (',' or '|')."""
    parts: list[list[Any]] = [[]]
    for item in items:
        if isinstance(item, Group) or item.text != sep:
            parts[-1].append(item)
        else:
            parts.append([])
    return parts


def _is_word(item: Any, word: str) -> bool:
    """item is the keyword or identifier ``word`` (not a group)."""
    return not isinstance(item, Group) and item.kind == "ident" and item.upper == word


def _index_of_word(items: list[Any], word: str) -> int:
    """Index of the first top-level ``word``, or -1."""
    return next((i for i, item in enumerate(items) if _is_word(item, word)), -1)


def _index_of_text(items: list[Any], text: str) -> int:
    """Index of the first top-level token with this text, or -1."""
    return next((i for i, it in enumerate(items) if not isinstance(it, Group) and it.text == text), -1)


# --- value sizes ----------------------------------------------------------------------------------


class ValueBounds:
    """Walks the query's clauses, binding variables, and checks every expression's size and work."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.checking = True
        self.steps = 0  # expressions evaluated: reduce() evaluates its body several times, nested ones more

    # -- limits ----------------------------------------------------------------------------------
    def check(self, value: Val, what: str = "value") -> Val:
        """Raise CostError when a value's size or work is over the limits (skipped while probing)."""
        if self.checking:
            _check_poly(value.size, MAX_VALUE_CELLS, MAX_CELLS_PER_GRAPH_ITEM, f"{what} too large", "cells")
            _check_poly(value.work, MAX_WORK, MAX_WORK_PER_GRAPH_ITEM, f"too much work in one {what}", "cells of work")
        return value

    # -- clauses ---------------------------------------------------------------------------------
    def query(self, items: list[Any], env: dict[str, Val], rows: Poly = ONE) -> None:
        """Evaluate each clause in order, following variables and the number of rows; UNION parts start afresh."""
        scope = _Scope(env, rows, set(env))
        for clause in _clauses(items):
            word = clause[0].upper
            body = clause[2:] if word in ("OPTIONAL", "ORDER") else clause[1:]
            if word == "UNION":
                scope = _Scope(env, ONE, set())
                env.clear()
            elif word in ("MATCH", "OPTIONAL", "CALL"):
                self.match(body, scope)
            elif word == "UNWIND":
                self.unwind(body, scope)
            elif word in ("WITH", "RETURN", "YIELD"):
                self.projection(body, scope)
            else:  # WHERE, ORDER BY, SKIP, LIMIT
                if word == "ORDER":
                    _check_rows(scope.rows, "ORDER BY")
                for part in _split(body, ","):
                    self.sequence(part, env, scope.rows)

    def match(self, body: list[Any], scope: _Scope) -> None:
        """A pattern part that shares no variable with what is bound so far may match every node for every
        row: the rows multiply by G (a cartesian product). A connected part expands rows as edges allow."""
        for part in _split(body, ","):
            names = _pattern_names(part)
            scope.rows = scope.rows.max(G) if names & scope.bound else scope.rows * G
            scope.bound |= names
        self.sequence(body, scope.env, scope.rows)

    def unwind(self, body: list[Any], scope: _Scope) -> None:
        """UNWIND list AS x: one row per item, x as big as the largest item."""
        at = _index_of_word(body, "AS")
        listed = self.sequence(body[:at] if at >= 0 else body, scope.env, scope.rows)
        if at >= 0 and at + 1 < len(body):
            scope.env[str(body[at + 1].value)] = _item(listed)
            scope.bound.add(str(body[at + 1].value))
        scope.rows = scope.rows * listed.count

    def projection(self, body: list[Any], scope: _Scope) -> None:
        """WITH / RETURN / YIELD items: bind each alias. Rows collapse to one when every item aggregates;
        DISTINCT and grouping keep them all in memory, so they are bounded like ORDER BY."""
        if body and _is_word(body[0], "DISTINCT"):
            _check_rows(scope.rows, "DISTINCT")
            body = body[1:]
        aggregated, plain, star = False, False, False
        bound: dict[str, Val] = {}
        for item in _split(body, ","):
            at = _index_of_word(item, "AS")
            expr = item[:at] if at >= 0 else item
            star = star or (len(expr) == 1 and not isinstance(expr[0], Group) and expr[0].text == "*")
            value = self.sequence(expr, scope.env, scope.rows)
            has_aggregate = _contains_aggregate(expr)
            aggregated, plain = aggregated or has_aggregate, plain or not has_aggregate
            name = item[at + 1] if 0 <= at < len(item) - 1 else (expr[0] if len(expr) == 1 else None)
            if name is not None and not isinstance(name, Group) and name.kind in ("ident", "bident"):
                bound[str(name.value)] = Val(value.size, value.count, value.elem, ZERO, value.num)
        if aggregated and plain:
            _check_rows(scope.rows, "grouping")
        scope.env.update(bound)
        scope.bound = scope.bound | set(bound) if star else set(bound)
        scope.rows = ONE if aggregated and not plain else scope.rows

    # -- expressions -----------------------------------------------------------------------------
    def sequence(self, items: list[Any], env: dict[str, Val], rows: Poly = ONE) -> Val:
        """An expression as a flat run of operands and operators: operands add up (concatenation)."""
        self.steps += 1
        if self.steps > MAX_ANALYSIS_STEPS:
            raise CostError("query too complex to check (reduce() nested in reduce() ...): write it more simply")
        if items and not isinstance(items[0], Group) and items[0].kind == "ident" and items[0].upper in _CLAUSES:
            self.query(items, dict(env), rows)  # a subquery: EXISTS { MATCH ... }
            return SCALAR
        operands: list[Val] = []
        boolean = False
        i = 0
        while i < len(items):
            value, i, is_bool = self.operand(items, i, env, rows)
            boolean = boolean or is_bool
            if value is not None:
                operands.append(value)
        # Comparisons and boolean operators give a boolean; '-', '*', '/', '%', '^' (and a sign) a number.
        boolean = boolean or any(not isinstance(it, Group) and it.text in _ARITHMETIC for it in items)
        if boolean:
            work = sum((v.work for v in operands), ZERO) + ONE
            return self.check(Val(work=work, num=True), "expression")
        if len(operands) == 1:  # checked where it was built (a collect() over rows is the database's)
            return operands[0]
        return self.check(_concatenate(operands), "expression")

    def operand(self, items: list[Any], i: int, env: dict[str, Val], rows: Poly) -> tuple[Val | None, int, bool]:
        """The operand starting at items[i] (with its property accesses and subscripts), the next index,
        and whether items[i] was a boolean or comparison operator."""
        item = items[i]
        if isinstance(item, Group):
            value = self.group(item, env, rows)
        elif (
            item.kind == "ident" and i + 1 < len(items) and isinstance(items[i + 1], Group) and items[i + 1].open == "("
        ):
            value, i = self.call(str(item.value).lower(), items[i + 1], env, rows), i + 1
        elif item.kind in ("ident", "bident") and _is_dotted_call(items, i):
            return None, i + 1, False  # a namespace before '.': the call is handled at its last name
        else:
            return self.token(items, i, env)
        return self.postfix(items, i + 1, value, env, rows)

    def token(self, items: list[Any], i: int, env: dict[str, Val]) -> tuple[Val | None, int, bool]:
        """A single-token operand: a literal, a parameter, a variable, or an operator or keyword (None)."""
        item = items[i]
        after = items[i + 1] if i + 1 < len(items) else None
        if item.kind == "number":
            return SCALAR, i + 1, False
        if item.kind == "string":
            n = max(1, len(str(item.value)))
            return Val(size=Poly.of(n), count=ONE, elem=Poly.of(n), work=Poly.of(n)), i + 1, False
        if item.kind == "param":
            cells = _param_size(self.params.get(str(item.value)))
            return Val(size=Poly.of(cells), count=Poly.of(cells), elem=Poly.of(cells), work=ZERO), i + 1, False
        if item.kind == "punct":
            return None, i + 1, item.text in _COMPARISONS
        if item.kind == "ident" and item.upper in _NOT_VARIABLES:
            constant = item.upper in ("NULL", "TRUE", "FALSE")
            return (SCALAR if constant else None), i + 1, item.upper in _BOOLEAN_OPERATORS
        if after is not None and not isinstance(after, Group) and after.text == ":":
            return None, i + 1, False  # a map key, or a variable with a label test
        prev = items[i - 1] if i > 0 else None
        if prev is not None and not isinstance(prev, Group) and prev.text in (":", "."):
            return None, i + 1, False  # a label, relationship type or property name
        return env.get(str(item.value), UNIT), i + 1, False

    def postfix(self, items: list[Any], i: int, value: Val, env: dict[str, Val], rows: Poly) -> tuple[Val, int, bool]:
        """Property accesses (.name) and subscripts ([i], [a..b]) keep at most the value they start from,
        in any shape (an item of a list may be as big as the whole list)."""
        start = i
        while i < len(items):
            item = items[i]
            if isinstance(item, Group) and item.open == "[":
                self.sequence(item.items, env, rows)
                i += 1
            elif not isinstance(item, Group) and item.text == "." and i + 1 < len(items):
                i += 2
            else:
                break
        return (_within(value) if i > start else value), i, False

    def group(self, group: Group, env: dict[str, Val], rows: Poly) -> Val:
        """A bracketed operand: parentheses, list, map, subquery or CASE."""
        if group.open == "[":
            return self.list_group(group.items, env, rows)
        if group.open == "{" and group.items and _is_word(group.items[0], "MATCH"):
            self.query(group.items, dict(env), rows)
            return SCALAR
        parts = [p for p in _split(group.items, ",") if p]
        if group.open == "CASE":
            parts = _split_case(group.items)
        values = [self.sequence(p, env, rows) for p in parts]
        if group.open == "(" and len(values) == 1:
            return values[0]
        return self.check(_concatenate(values), "expression")

    def list_group(self, items: list[Any], env: dict[str, Val], rows: Poly) -> Val:
        """[a, b], [x IN list WHERE p | f], or a pattern comprehension [(a)-->(b) WHERE p | f]."""
        if len(items) > 1 and not isinstance(items[0], Group) and _is_word(items[1], "IN"):
            return self.comprehension(items, env, rows)
        bar = _index_of_text(items, "|")
        if bar >= 0 and items and (isinstance(items[0], Group) or _index_of_text(items[:bar], "=") >= 0):
            projection = self.sequence(items[bar + 1 :], env, rows)
            self.sequence(items[:bar], env, rows)
            size = G * projection.size + ONE
            return self.check(Val(size, G, projection.size, G * projection.work + size), "pattern comprehension")
        values = [self.sequence(p, env, rows) for p in _split(items, ",") if p]
        size = sum((v.size for v in values), ONE)
        elem = _largest(v.size for v in values)
        work = sum((v.work for v in values), size)
        return self.check(Val(size, Poly.of(len(values)), elem, work, False, all(v.num for v in values)), "list")

    def comprehension(self, items: list[Any], env: dict[str, Val], rows: Poly) -> Val:
        """[x IN list WHERE predicate | projection]: one projection per item of the list."""
        name = str(items[0].value)
        bar = _index_of_text(items, "|")
        head, projection = (items[:bar], items[bar + 1 :]) if bar >= 0 else (items, None)
        where = _index_of_word(head, "WHERE")
        source = self.sequence(head[2:where] if where >= 0 else head[2:], env, rows)
        inner = {**env, name: _item(source)}
        predicate = self.sequence(head[where + 1 :], inner, rows) if where >= 0 else Val(work=ZERO)
        if projection is None:
            value = Val(source.size, source.count, source.elem, ZERO)
        else:
            value = self.sequence(projection, inner, rows)
        size = source.count * value.size + ONE
        work = source.work + source.count * (predicate.work + value.work) + size
        return self.check(Val(size, source.count, value.size, work, False, value.num), "list comprehension")

    def quantifier(self, name: str, items: list[Any], env: dict[str, Val], rows: Poly) -> Val:
        """all/any/none/single(x IN list WHERE predicate): a boolean, the predicate once per item."""
        where = _index_of_word(items, "WHERE")
        source = self.sequence(items[2:where] if where >= 0 else items[2:], env, rows)
        inner = {**env, str(items[0].value): _item(source)}
        predicate = self.sequence(items[where + 1 :], inner, rows) if where >= 0 else Val(work=ZERO)
        return self.check(Val(work=source.work + source.count * predicate.work + ONE, num=True), f"{name}()")

    # -- function calls --------------------------------------------------------------------------
    def call(self, name: str, args: Group, env: dict[str, Val], rows: Poly) -> Val:
        """A function call: the ones that multiply sizes are modelled, others return at most their arguments."""
        special: dict[str, Callable[[Group, dict[str, Val], Poly], Val]] = {
            "range": self.call_range,
            "reduce": self.call_reduce,
            "collect": self.call_collect,
            "replace": self.call_replace,
            "split": self.call_split,
        }
        if name in special:
            return special[name](args, env, rows)
        if name in _QUANTIFIERS and len(args.items) > 1 and _is_word(args.items[1], "IN"):
            return self.quantifier(name, args.items, env, rows)
        values = [self.sequence(p, env, rows) for p in _split(args.items, ",") if p]
        work = sum((v.work for v in values), ONE)
        if name in _ITEM_FUNCTIONS and values:  # one item of the list
            item = _item(values[0])
            return self.check(Val(item.size, item.count, item.elem, work + item.size, item.num), f"{name}() call")
        if name in _SCALAR_FUNCTIONS:
            return self.check(Val(work=work, num=True), f"{name}() call")
        total = _within(_concatenate(values))  # head(), tail(), coalesce() ... may return any part of it
        return self.check(Val(total.size, total.count, total.elem, work + total.size, total.num), f"{name}() call")

    def call_range(self, args: Group, env: dict[str, Val], rows: Poly) -> Val:
        """range(a, b[, step]): the cypher guard has already required small integer literals."""
        numbers = [_literal_int(p) for p in _split(args.items, ",")]
        start, end = numbers[0] or 0, numbers[1] if len(numbers) > 1 else 0
        step = numbers[2] if len(numbers) > 2 and numbers[2] else 1
        items = max(0, ((end or 0) - start) // step + 1)
        return self.check(Val(Poly.of(items + 1), Poly.of(items), ONE, Poly.of(items + 1), False, True), "range()")

    def call_collect(self, args: Group, env: dict[str, Val], rows: Poly) -> Val:
        """collect(x) gathers one x per row: rows times x. Row by row, the database's memory cap applies,
        so a collection over rows growing faster than G is taken at the cap's size."""
        items = args.items[1:] if args.items and _is_word(args.items[0], "DISTINCT") else args.items
        value = self.sequence(items, env, rows)
        size = rows * value.size + ONE
        if size.degree >= 2:
            cap = Poly.of(COLLECT_CAP_CELLS)
            return Val(cap, cap, value.size, value.work, False, value.num)
        if size.degree == 0:  # rows from UNWIND of literals: the size is known now
            self.check(Val(size, rows, value.size, ONE), "collect()")
        return Val(size, rows, value.size, value.work, False, value.num)

    def call_replace(self, args: Group, env: dict[str, Val], rows: Poly) -> Val:
        """replace(s, find, by): every character of s may become a copy of `by`."""
        values = [self.sequence(p, env, rows) for p in _split(args.items, ",")]
        text, by = values[0], values[-1]
        size = text.size * (by.size + ONE)
        work = sum((v.work for v in values), size)
        return self.check(Val(size, ONE, size, work), "replace() result")

    def call_split(self, args: Group, env: dict[str, Val], rows: Poly) -> Val:
        """split(s, sep): at most one item per character."""
        values = [self.sequence(p, env, rows) for p in _split(args.items, ",")]
        size = values[0].size.scale(2) + ONE
        return self.check(Val(size, values[0].size, values[0].size, sum((v.work for v in values), size)), "split()")

    def call_reduce(self, args: Group, env: dict[str, Val], rows: Poly) -> Val:
        """reduce(acc = init, x IN list | body): the accumulator after as many steps as the list has items."""
        parts = _split(args.items, ",")
        bar = _index_of_text(parts[-1], "|") if len(parts) >= 2 else -1
        if len(parts) != 2 or bar < 0 or len(parts[0]) < 3 or len(parts[1]) < 3 or not _is_word(parts[1][1], "IN"):
            raise CostError("reduce() must read reduce(acc = init, x IN list | expression)")
        acc, init = str(parts[0][0].value), self.sequence(parts[0][2:], env, rows)
        var, source = str(parts[1][0].value), self.sequence(parts[1][2:bar], env, rows)
        body = parts[1][bar + 1 :]

        def step(size: Poly, num: bool) -> Val:
            """The body evaluated with an accumulator of this size."""
            state = Val(size, size, size, ZERO, num)
            return self.sequence(body, {**env, acc: state, var: _item(source)}, rows)

        return self.check(_accumulate(self, step, init, source), "reduce() result")


def _accumulate(bounds: ValueBounds, step: Callable[[Poly, bool], Val], init: Val, source: Val) -> Val:
    """The value of a reduce(): how the body grows its accumulator decides between linear and exponential."""
    steps = source.count
    if init.num:
        first = step(ONE, True)
        if first.num:  # a number stays a number: one cell, whatever the number of steps
            return Val(work=source.work + steps * first.work + ONE, num=True)
    checking, bounds.checking = bounds.checking, False
    try:
        empty, probed = step(ZERO, False), step(Poly.of(_PROBE), False)
    finally:
        bounds.checking = checking
    if any(x >= _PROBE / 2 for x in probed.size.c[1:]):
        raise CostError("reduce() multiplies its accumulator by graph data: it grows exponentially")
    growth = (probed.size.c[0] - empty.size.c[0]) / _PROBE
    if growth < 1.5:  # each step adds at most what the body adds to an empty accumulator
        final = init.size + steps * empty.size
        last = step(final, False)
        count, elem = init.count + steps * empty.count, init.elem.max(empty.elem)
        return Val(final, count, elem, source.work + steps * last.work + final, False, init.elem_num and empty.elem_num)
    if steps.degree > 0 or steps.c[0] > 64:
        raise CostError("reduce() doubles its accumulator (or more) on every step: the value grows too large")
    size, work = init.size, source.work
    try:
        for _ in range(int(steps.c[0])):
            grown = bounds.check(step(size, False), "reduce() step")
            size, work = grown.size, work + grown.work
    except CostError as exc:
        raise CostError(f"reduce() grows its accumulator too fast ({exc})") from None
    return Val(size, size, size, work + size)


@dataclass
class _Scope:
    """While walking one query part: variables with known values, rows per record so far, bound names."""

    env: dict[str, Val]
    rows: Poly
    bound: set[str]


def _check_rows(rows: Poly, what: str) -> None:
    """ORDER BY, DISTINCT and grouping hold every row in memory, which the per-query memory cap does not
    cover: the rows must not multiply graph data by itself, nor exceed MAX_SORTED_ROWS."""
    if rows.degree >= 2:
        raise CostError(
            f"{what} over the product of separate MATCH patterns (every row of one times every row of the "
            "other): connect the patterns through a shared variable, or drop the sort"
        )
    if rows.c[1] > MAX_CELLS_PER_GRAPH_ITEM or rows.c[0] > MAX_SORTED_ROWS:
        raise CostError(f"{what} over too many rows (about {rows.c[0] + rows.c[1]:.3g} per graph item or in all)")


def _pattern_names(part: list[Any]) -> set[str]:
    """The node, relationship and path variables of a pattern part: (a), [r], p = ... (values in property
    maps do not count: matching on a value is a filter that may keep every node)."""
    names: set[str] = set()
    for k, item in enumerate(part):
        if isinstance(item, Group):
            if item.open in ("(", "[") and item.items:
                first = item.items[0]
                if (
                    not isinstance(first, Group)
                    and first.kind in ("ident", "bident")
                    and first.upper not in _NOT_VARIABLES
                ):
                    names.add(str(first.value))
                names |= _pattern_names(item.items)
        elif item.kind in ("ident", "bident") and k + 1 < len(part):
            nxt = part[k + 1]
            if not isinstance(nxt, Group) and nxt.text == "=":
                names.add(str(item.value))
    return names


def _check_poly(p: Poly, limit: float, per_item: float, what: str, unit: str) -> None:
    """Refuse a bound over the limits: G² or more at all, too much per graph item, or too much in all."""
    if p.degree >= 2 and any(p.c[2:]):
        raise CostError(f"{what}: it grows with the square of the graph data (nested iteration over collected rows)")
    if p.c[1] > per_item:
        raise CostError(f"{what}: about {p.c[1]:.0f} {unit} per graph item (at most {per_item:.0f})")
    if p.c[0] > limit:
        shown = f"{p.c[0]:.3g}" if math.isfinite(p.c[0]) else "unbounded"
        raise CostError(f"{what}: about {shown} {unit} in one expression (at most {limit:.0f})")


def _concatenate(values: list[Val]) -> Val:
    """Operands joined by operators: numbers stay one cell, anything else adds up (+ concatenates)."""
    if not values:
        return Val(work=ZERO, num=True)
    if all(v.num for v in values):
        return Val(work=sum((v.work for v in values), ONE), num=True)
    size = sum((v.size for v in values), ZERO)
    count = sum((v.count for v in values), ZERO)
    return Val(size, count, _largest(v.elem for v in values), sum((v.work for v in values), size))


def _largest(polys: Any) -> Poly:
    """The coefficient-wise maximum (at least one cell)."""
    out = ONE
    for p in polys:
        out = out.max(p)
    return out


def _literal_int(part: list[Any]) -> int | None:
    """The value of an argument that is an integer literal (optionally negative), else None."""
    sign = -1 if len(part) == 2 and part[0].text == "-" else 1
    tok = part[-1] if part else None
    if tok is None or isinstance(tok, Group) or tok.kind != "number":
        return None
    text = tok.text.lower()
    return sign * (int(text, 16) if text.startswith("0x") else int(text)) if text.isdigit() or "x" in text else None


def _split_case(items: list[Any]) -> list[list[Any]]:
    """A CASE's subject, conditions and results, each evaluated (their sizes add up: an upper bound)."""
    parts: list[list[Any]] = [[]]
    for item in items:
        if any(_is_word(item, w) for w in ("WHEN", "THEN", "ELSE")):
            parts.append([])
        else:
            parts[-1].append(item)
    return [p for p in parts if p]


def _is_dotted_call(items: list[Any], i: int) -> bool:
    """items[i] is a namespace of a dotted function name such as point.distance(...)."""
    j = i
    while j + 2 < len(items) and not isinstance(items[j + 1], Group) and items[j + 1].text == ".":
        j += 2
    return j > i and j + 1 < len(items) and isinstance(items[j + 1], Group) and items[j + 1].open == "("


def _contains_aggregate(items: list[Any]) -> bool:
    """The expression calls an aggregate (count, collect ...), so its clause groups rows."""
    for k, item in enumerate(items):
        if isinstance(item, Group):
            if _contains_aggregate(item.items):
                return True
        elif item.kind == "ident" and str(item.value).lower() in _AGGREGATES and k + 1 < len(items):
            if isinstance(items[k + 1], Group) and items[k + 1].open == "(":
                return True
    return False


def _clauses(items: list[Any]) -> list[list[Any]]:
    """Top-level items split before each clause keyword (not the WITH of STARTS/ENDS WITH)."""
    clauses: list[list[Any]] = []
    for k, item in enumerate(items):
        prev = items[k - 1] if k else None
        starts = not isinstance(item, Group) and item.kind == "ident" and item.upper in _CLAUSES
        if (
            starts
            and item.upper == "WITH"
            and prev is not None
            and (_is_word(prev, "STARTS") or _is_word(prev, "ENDS"))
        ):
            starts = False
        if starts and item.upper == "MATCH" and prev is not None and _is_word(prev, "OPTIONAL"):
            starts = False
        if starts or not clauses:
            clauses.append([item])
        else:
            clauses[-1].append(item)
    return [c for c in clauses if not isinstance(c[0], Group)]


def check_values(sig: Sequence[_Token], params: Mapping[str, Any] | None = None) -> None:
    """Refuse a query when any expression's value or work is over the limits (see the module docstring)."""
    tree = build_tree(sig)
    ValueBounds(dict(params or {})).query(tree, {})
