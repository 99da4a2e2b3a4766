"""Read-only validation of untrusted Cypher (Text2Cypher output) before it reaches a database.

The validator does not pattern-match the raw text. It normalises the text (NFKC, zero-width
and other format characters removed, Cyrillic/Greek look-alikes mapped to ASCII outside
string literals), lexes it into tokens the way Cypher does, and then **rebuilds** the query
that will run from those tokens:

- every string literal becomes a query parameter (``$gc_lit_0`` ...) holding its value, so the
  text sent to the database contains no quotes at all: whatever an "escape" or an unclosed
  quote was meant to do, the database parses exactly the tokens checked here;
- comments are dropped (a comment that hides a write keyword, or a keyword split by a
  comment like ``DE/**/LETE``, is refused);
- write and admin clauses (CREATE, MERGE, SET, DELETE, DETACH, REMOVE, DROP, LOAD CSV,
  FOREACH, CALL { } subqueries, CALL of any procedure not on a short read-only list, dotted
  function calls such as ``apoc.*`` outside a small list of built-ins) are refused, as are
  several statements, unknown characters and non-ASCII identifiers;
- ``range()`` must have small integer-literal bounds (at most MAX_RANGE_ITEMS items), since
  ``size(range(1, 2000000000))`` exhausts the server before any LIMIT applies;
- every RETURN gets a LIMIT (appended, or capped when larger), variable-length patterns get
  an upper bound on hops (their bounds must be integer literals, not parameters);
- what reading costs is bounded (:mod:`graphcraft.guards.cypher_cost`): the query length, its
  nesting (the database's parser takes about four times longer per level, before any timeout
  applies), and the size and work of every value a single expression builds (``reduce`` that
  doubles, comprehensions over ranges inside comprehensions, lists of a variable repeated),
  which the database evaluates without looking at its timeout or memory cap; sorting,
  DISTINCT and grouping must not hold the product of separate MATCH patterns.

The result is a :class:`SafeCypher` (query, params, limit, timeout) for
:meth:`graphcraft.stores.graph.GraphStore.query`, which runs it on the backend's read-only
path (FalkorDB GRAPH.RO_QUERY, Neo4j READ transaction) with the timeout, under the database's
own per-query memory cap: a second line of defence that does not rely on this module being right.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphcraft.errors import GraphcraftError
from graphcraft.guards.cypher_cost import (
    MAX_NESTING,
    MAX_PARSE_COST,
    MAX_VALUE_CELLS,
    MAX_WORK,
    CostError,
    check_nesting,
    check_values,
)

__all__ = [
    "UnsafeCypherError",
    "SafeCypher",
    "validate_read_only",
    "run_read_only",
    "READ_PROCEDURES",
    "FORBIDDEN_KEYWORDS",
    "MAX_QUERY_CHARS",
    "MAX_RANGE_ITEMS",
    "MAX_NESTING",
    "MAX_PARSE_COST",
    "MAX_VALUE_CELLS",
    "MAX_WORK",
]

FORBIDDEN_KEYWORDS = frozenset(
    {
        "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "LOAD", "FOREACH",
        "USE", "GRANT", "REVOKE", "DENY", "ALTER", "RENAME", "START", "STOP", "TERMINATE",
        "SHOW", "ENABLE", "DISABLE", "IMPORT", "PERIODIC", "COMMIT", "TRANSACTIONS", "INSERT",
    }
)  # fmt: skip

READ_PROCEDURES = frozenset(
    {
        "db.labels",
        "db.relationshiptypes",
        "db.propertykeys",
        "db.indexes",
        "db.constraints",
        "db.schema.visualization",
        "db.schema.nodetypeproperties",
        "db.schema.reltypeproperties",
        "db.idx.fulltext.querynodes",
    }
)

# Dotted built-in functions that only compute (namespaced user functions such as apoc.* can write).
READ_FUNCTIONS = frozenset(
    {
        "point.distance",
        "point.withinbbox",
        "date.truncate",
        "datetime.truncate",
        "localdatetime.truncate",
        "duration.between",
        "duration.inmonths",
        "duration.indays",
        "duration.inseconds",
        "vector.similarity.cosine",
        "vector.similarity.euclidean",
        "vec.cosinedistance",
        "vec.euclideandistance",
    }
)

LITERAL_PREFIX = "gc_lit_"
MAX_QUERY_CHARS = 5000
MAX_RANGE_ITEMS = 100_000  # range() with more items is a memory/CPU bomb, not a question

# Look-alike letters outside ASCII that NFKC leaves alone (Cyrillic, Greek, Latin small caps ...).
_HOMOGLYPHS = str.maketrans(
    {
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
        "Т": "T", "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W",
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
        "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
        "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ν": "v", "α": "a", "ι": "i",
        "ᴀ": "A", "ʙ": "B", "ᴄ": "C", "ᴅ": "D", "ᴇ": "E", "ɢ": "G", "ʜ": "H", "ɪ": "I", "ᴊ": "J",
        "ᴋ": "K", "ʟ": "L", "ᴍ": "M", "ɴ": "N", "ᴏ": "O", "ᴘ": "P", "ʀ": "R", "ꜱ": "S", "ᴛ": "T",
        "ᴜ": "U", "ᴠ": "V", "ᴡ": "W", "ʏ": "Y", "ᴢ": "Z", "ı": "i",
    }
)  # fmt: skip

# A quote, or an escape that spells one: inside a literal next to a write keyword, a break-out attempt.
_QUOTE_LIKE = re.compile(r"['\"`]|\\u00(?:27|22|60)|\\x(?:27|22|60)|\\U000000(?:27|22|60)", re.IGNORECASE)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.\d+|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[^\W\d]\w*")
_PARAM = re.compile(r"\$(?:[^\W\d]\w*|\d+|`[^`]*`)")
_PUNCT = ("..", "<>", "<=", ">=", "=~", "+=", "::", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ":", ".",
          "-", "+", "*", "/", "%", "^", "|", ";", "!")  # fmt: skip


class UnsafeCypherError(GraphcraftError):
    """A generated Cypher query was refused; ``reason`` says why (fed back to the repair loop)."""

    def __init__(self, reason: str, query: str = "") -> None:
        super().__init__(f"refused Cypher: {reason}")
        self.reason = reason
        self.query = query


@dataclass(frozen=True)
class SafeCypher:
    """A validated read-only query ready to run: literals are parameters, LIMIT is enforced."""

    query: str
    params: dict[str, Any] = field(default_factory=dict)
    limit: int = 100
    timeout_ms: int = 5000
    changes: tuple[str, ...] = ()  # what the validator rewrote (LIMIT appended/capped, hops bounded ...)


@dataclass
class _Tok:
    kind: str  # ident | bident | number | param | string | punct | ws | comment
    text: str  # the source text (for strings/comments: the whole literal)
    value: Any = None  # decoded string value / identifier name

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    # Format characters (zero-width space/joiners, BOM, bidi overrides) are invisible tricks.
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    for ch in text:
        if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r":
            raise UnsafeCypherError(f"control character U+{ord(ch):04X} in query")
    return text


def _decode_string(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt in "uU":
                width = 4 if nxt == "u" else 8
                digits = body[i + 2 : i + 2 + width]
                if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                    out.append(chr(int(digits, 16)))
                    i += 2 + width
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def _lex(text: str) -> list[_Tok]:
    """Cypher tokens; raises on anything it does not understand (so nothing unchecked runs)."""
    toks: list[_Tok] = []
    i = 0
    while i < len(text):
        tok, i = _next_token(text, i, toks)
        toks.append(tok)
    return toks


def _next_token(text: str, i: int, toks: list[_Tok]) -> tuple[_Tok, int]:
    """The token starting at text[i] and the index after it (``toks``: the ones before, for context)."""
    ch, n = text[i], len(text)
    if ch.isspace():
        j = i
        while j < n and text[j].isspace():
            j += 1
        return _Tok("ws", text[i:j]), j
    if text.startswith("//", i) or text.startswith("/*", i):
        return _comment(text, i)
    if ch in "'\"":
        j = i + 1
        while j < n and text[j] != ch:
            j += 2 if text[j] == "\\" else 1
        if j >= n:
            raise UnsafeCypherError("unterminated string literal")
        return _Tok("string", text[i : j + 1], _decode_string(text[i + 1 : j])), j + 1
    if ch == "`":
        return _quoted_name(text, i, toks)
    if ch == "$":
        m = _PARAM.match(text, i)
        if not m:
            raise UnsafeCypherError("invalid $parameter")
        return _Tok("param", m.group(), m.group()[1:].strip("`")), m.end()
    if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit() and not text.startswith("..", i)):
        m = _NUMBER.match(text, i)
        if not m:
            raise UnsafeCypherError(f"invalid number at {i}")
        return _Tok("number", m.group()), m.end()
    m = _IDENT.match(text, i)
    if m:
        word = m.group().translate(_HOMOGLYPHS)
        if not word.isascii():
            raise UnsafeCypherError(f"non-ASCII identifier {m.group()!r}")
        return _Tok("ident", word, word), m.end()
    for p in _PUNCT:
        if text.startswith(p, i):
            return _Tok("punct", p), i + len(p)
    raise UnsafeCypherError(f"unexpected character {ch!r} (U+{ord(ch):04X})")


def _comment(text: str, i: int) -> tuple[_Tok, int]:
    """A // line comment (to the end of the line) or a /* block */ comment, kept to be checked and dropped."""
    if text.startswith("//", i):
        j = len(text)
        for stop in ("\n", "\r"):
            k = text.find(stop, i)
            if k != -1:
                j = min(j, k)
        return _Tok("comment", text[i:j], text[i + 2 : j]), j
    j = text.find("*/", i + 2)
    if j == -1:
        raise UnsafeCypherError("unterminated /* comment")
    return _Tok("comment", text[i : j + 2], text[i + 2 : j]), j + 2


def _quoted_name(text: str, i: int, toks: list[_Tok]) -> tuple[_Tok, int]:
    """A `quoted name`; escaped backticks (two names side by side) are refused rather than interpreted."""
    j = text.find("`", i + 1)
    if j == -1:
        raise UnsafeCypherError("unterminated `quoted name`")
    name = text[i + 1 : j]
    if not name or any(c in name for c in "\n\r\\"):
        raise UnsafeCypherError("invalid `quoted name`")
    if toks and toks[-1].kind == "bident":
        raise UnsafeCypherError("adjacent `quoted names` (`` escapes) are not allowed")
    return _Tok("bident", text[i : j + 1], name), j + 1


def _words(text: str) -> set[str]:
    return {w.upper() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text.translate(_HOMOGLYPHS))}


def _dotted_name(sig: list[_Tok], start: int) -> tuple[str, int]:
    """A dotted name (a.b.c, `a`.`b`) starting at sig[start]; its lowercase text and end index."""
    parts, j = [], start
    while j < len(sig) and sig[j].kind in ("ident", "bident"):
        parts.append(str(sig[j].value))
        if j + 1 < len(sig) and sig[j + 1].text == "." and j + 2 < len(sig) and sig[j + 2].kind in ("ident", "bident"):
            j += 2
        else:
            j += 1
            break
    return ".".join(parts).lower(), j


def _int_literal(arg: list[_Tok]) -> int | None:
    """The value of an argument that is one integer literal, optionally negated; else None."""
    sign = 1
    if len(arg) == 2 and arg[0].text in ("-", "+"):
        sign, arg = (-1 if arg[0].text == "-" else 1), arg[1:]
    if len(arg) != 1 or arg[0].kind != "number":
        return None
    text = arg[0].text
    if text.isdigit():
        return sign * int(text)
    if text[:2].lower() == "0x":
        return sign * int(text, 16)
    return None


def _check_range(sig: list[_Tok], idx: int, query: str) -> None:
    """range(start, end[, step]) at sig[idx]: refuse unless it has integer literals and few items."""
    args: list[list[_Tok]] = [[]]
    depth, j = 0, idx + 2
    while j < len(sig):
        t = sig[j]
        if t.text in ("(", "[", "{"):
            depth += 1
        elif t.text in (")", "]", "}"):
            if depth == 0:
                break
            depth -= 1
        if depth == 0 and t.text == ",":
            args.append([])
        else:
            args[-1].append(t)
        j += 1
    values = [_int_literal(a) for a in args]
    if not 2 <= len(values) <= 3 or any(v is None for v in values):
        raise UnsafeCypherError("range() bounds must be integer literals (no parameters or expressions)", query)
    start, end, step = values[0], values[1], values[2] if len(values) == 3 else 1
    assert start is not None and end is not None and step is not None
    if step == 0:
        raise UnsafeCypherError("range() step must not be 0", query)
    items = max(0, (end - start) // step + 1)
    if items > MAX_RANGE_ITEMS:
        raise UnsafeCypherError(f"range() of {items} items is too large (at most {MAX_RANGE_ITEMS})", query)


def _check_tokens(sig: list[_Tok], query: str) -> None:
    for idx, tok in enumerate(sig):
        if (
            tok.kind in ("ident", "bident")
            and str(tok.value).lower() == "range"
            and idx + 1 < len(sig)
            and sig[idx + 1].text == "("
            and (idx == 0 or sig[idx - 1].text != ".")
        ):
            _check_range(sig, idx, query)
        if tok.kind == "ident" and tok.upper in FORBIDDEN_KEYWORDS:
            raise UnsafeCypherError(f"{tok.upper} is not allowed: the query must be read-only", query)
        if tok.kind == "punct" and tok.text == "+=":
            raise UnsafeCypherError("property update (+=) is not allowed", query)
        if tok.kind == "param" and str(tok.value).startswith(LITERAL_PREFIX):
            raise UnsafeCypherError(f"parameter names starting with {LITERAL_PREFIX} are reserved", query)
        if tok.kind == "ident" and tok.upper == "CALL":
            nxt = sig[idx + 1] if idx + 1 < len(sig) else None
            if nxt is None or nxt.kind not in ("ident", "bident"):
                raise UnsafeCypherError("CALL subqueries are not allowed; use MATCH/WITH", query)
            name, _ = _dotted_name(sig, idx + 1)
            if name not in READ_PROCEDURES:
                raise UnsafeCypherError(
                    f"procedure {name} is not allowed (read-only procedures: {', '.join(sorted(READ_PROCEDURES))})",
                    query,
                )
        # A dotted function call outside the built-ins (apoc.*, gds.*, user functions) may write.
        if tok.kind in ("ident", "bident") and (idx == 0 or sig[idx - 1].text != "."):
            prev_call = idx > 0 and sig[idx - 1].kind == "ident" and sig[idx - 1].upper == "CALL"
            name, end = _dotted_name(sig, idx)
            if "." in name and end < len(sig) and sig[end].text == "(" and not prev_call and name not in READ_FUNCTIONS:
                raise UnsafeCypherError(f"function {name}() is not allowed", query)


def _bound_hops(toks: list[_Tok], max_hops: int, changes: list[str]) -> None:
    """Give every variable-length relationship pattern an upper bound of at most max_hops."""
    sig = [i for i, t in enumerate(toks) if t.kind not in ("ws", "comment")]
    depth_rel: list[bool] = []
    k = 0
    while k < len(sig):
        t = toks[sig[k]]
        if t.text == "[":
            prev = toks[sig[k - 1]].text if k > 0 else ""
            depth_rel.append(prev in ("-", "<"))
        elif t.text == "]" and depth_rel:
            depth_rel.pop()
        elif t.text == "*" and depth_rel and depth_rel[-1]:
            # *, *n, *n.., *..m, *n..m
            j, lo, hi, dots = k + 1, None, None, False
            if j < len(sig) and toks[sig[j]].kind == "number":
                lo, j = toks[sig[j]].text, j + 1
            if j < len(sig) and toks[sig[j]].text == "..":
                dots, j = True, j + 1
                if j < len(sig) and toks[sig[j]].kind == "number":
                    hi, j = toks[sig[j]].text, j + 1
            elif lo is not None:
                hi = lo  # *n means exactly n
            follower = toks[sig[j]] if j < len(sig) else None
            if follower is not None and not (follower.text in ("]", "{") or follower.upper == "WHERE"):
                raise UnsafeCypherError(
                    "variable-length hop counts must be integer literals such as *1..3, "
                    f"not parameters or expressions ({follower.text!r})"
                )
            try:
                lo_i = int(lo) if lo is not None else 1
                hi_i = int(hi) if hi is not None else None
            except ValueError as exc:
                raise UnsafeCypherError("variable-length bounds must be integers") from exc
            if hi_i is None or hi_i > max_hops or lo_i > max_hops:
                new_hi = min(hi_i or max_hops, max_hops)
                new_lo = min(lo_i, new_hi)
                toks[sig[k]] = _Tok("punct", f"*{new_lo}..{new_hi}")
                for m in range(k + 1, j):
                    toks[sig[m]] = _Tok("punct", "")
                changes.append(f"variable-length pattern bounded to *{new_lo}..{new_hi}")
            del dots
            k = j
            continue
        k += 1


def _enforce_limit(
    toks: list[_Tok], params: Mapping[str, Any], limit: int, changes: list[str], query: str
) -> list[_Tok]:
    """Every UNION part must RETURN; its trailing LIMIT is capped at ``limit`` or appended."""
    parts, seps = _union_parts(toks)
    out: list[_Tok] = []
    for p_idx, part in enumerate(parts):
        out += _limit_part(part, params, limit, changes, query)
        if p_idx < len(seps):
            out += [_Tok("ws", " "), *seps[p_idx], _Tok("ws", " ")]
    return out


def _union_parts(toks: list[_Tok]) -> tuple[list[list[_Tok]], list[list[_Tok]]]:
    """The query's UNION parts, and the UNION [ALL] tokens between them (outside brackets only)."""
    parts: list[list[_Tok]] = [[]]
    seps: list[list[_Tok]] = []
    depth = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text in ("(", "[", "{"):
            depth += 1
        elif t.text in (")", "]", "}"):
            depth -= 1
        if depth == 0 and t.kind == "ident" and t.upper == "UNION":
            sep = [t]
            j = i + 1
            while j < len(toks) and toks[j].kind == "ws":
                j += 1
            if j < len(toks) and toks[j].upper == "ALL":
                sep = toks[i : j + 1]
                i = j
            seps.append(sep)
            parts.append([])
        else:
            parts[-1].append(t)
        i += 1
    return parts, seps


def _limit_part(part: list[_Tok], params: Mapping[str, Any], limit: int, changes: list[str], query: str) -> list[_Tok]:
    """One UNION part with its final LIMIT at most ``limit`` (appended when missing)."""
    sig, level = [], 0
    for k, t in enumerate(part):
        if t.text in (")", "]", "}"):
            level -= 1
        if t.kind != "ws" and level == 0:
            sig.append(k)
        if t.text in ("(", "[", "{"):
            level += 1
    returns = [k for k in sig if part[k].upper == "RETURN"]
    if not returns:
        raise UnsafeCypherError("a read query must end with RETURN", query)
    limits = [k for k in sig if part[k].upper == "LIMIT" and k > returns[-1]]
    if not limits:
        while part and part[-1].kind == "ws":
            part.pop()
        changes.append(f"LIMIT {limit} appended")
        return part + [_Tok("ws", " "), _Tok("ident", "LIMIT"), _Tok("ws", " "), _Tok("number", str(limit))]
    at = sig.index(limits[-1])
    tail = [t for t in part[limits[-1] + 1 :] if t.kind != "ws"]
    if len(tail) != 1:
        raise UnsafeCypherError("LIMIT must be followed by a single number or parameter", query)
    arg = tail[0]
    if arg.kind == "number" and arg.text.isdigit():
        current = int(arg.text)
    elif arg.kind == "param" and isinstance(params.get(str(arg.value)), int):
        current = int(params[str(arg.value)])
    else:
        raise UnsafeCypherError("LIMIT must be a whole number", query)
    if current > limit or arg.kind == "param":
        part[sig[at + 1]] = _Tok("number", str(min(current, limit)))  # the only token after LIMIT
        if current > limit:
            changes.append(f"LIMIT {current} capped to {limit}")
    return part


def validate_read_only(
    cypher: str,
    params: Mapping[str, Any] | None = None,
    *,
    limit: int = 100,
    max_hops: int = 4,
    timeout_ms: int = 5000,
) -> SafeCypher:
    """Check that ``cypher`` only reads, and return the query that will actually run.

    Raises :class:`UnsafeCypherError` with a one-line reason (suitable as repair feedback).
    """
    if not isinstance(cypher, str) or not cypher.strip():
        raise UnsafeCypherError("empty query")
    if len(cypher) > MAX_QUERY_CHARS:
        raise UnsafeCypherError(f"query longer than {MAX_QUERY_CHARS} characters")
    user_params = dict(params or {})
    toks = _lex(_normalise(cypher))
    _check_comments(toks, cypher)
    toks, sig = _one_statement([_Tok("ws", " ") if t.kind == "comment" else t for t in toks], cypher)
    _check_tokens(sig, cypher)
    try:  # what reading costs: parser time (nesting), memory and time of single expressions
        check_nesting(sig)
        check_values(sig, user_params)
    except CostError as exc:
        raise UnsafeCypherError(str(exc), cypher) from None
    run_params: dict[str, Any] = dict(user_params)
    toks = _literals_to_params(toks, run_params, cypher)
    changes: list[str] = []
    _bound_hops(toks, max_hops, changes)
    toks = _enforce_limit(toks, run_params, limit, changes, cypher)
    pieces: list[str] = []
    for t in toks:
        if t.kind == "ws":
            if pieces and pieces[-1] != " ":
                pieces.append(" ")
        elif t.text:
            pieces.append(t.text)
    query = "".join(pieces).strip()
    return SafeCypher(query=query, params=run_params, limit=limit, timeout_ms=timeout_ms, changes=tuple(changes))


def _check_comments(toks: list[_Tok], cypher: str) -> None:
    """Comments never run, but a write keyword in one, or one formed by deleting a comment, is an attack."""
    for t in toks:
        if t.kind == "comment" and _words(str(t.value)) & FORBIDDEN_KEYWORDS:
            raise UnsafeCypherError("comment containing a write keyword", cypher)
    squashed = "".join(" " if t.kind in ("string", "bident") else t.text for t in toks if t.kind != "comment")
    hidden = _words(squashed) & FORBIDDEN_KEYWORDS
    if hidden:
        raise UnsafeCypherError(f"{sorted(hidden)[0]} is not allowed: the query must be read-only", cypher)


def _one_statement(toks: list[_Tok], cypher: str) -> tuple[list[_Tok], list[_Tok]]:
    """The tokens without a final ';' (any other ';' is refused), and the same without whitespace."""
    sig = [t for t in toks if t.kind != "ws"]
    semis = [k for k, t in enumerate(sig) if t.text == ";"]
    if semis and semis != [len(sig) - 1]:
        raise UnsafeCypherError("only one statement is allowed", cypher)
    if semis:
        last = max(k for k, t in enumerate(toks) if t.text == ";")
        return toks[:last], sig[:-1]
    return toks, sig


def _literals_to_params(toks: list[_Tok], run_params: dict[str, Any], cypher: str) -> list[_Tok]:
    """Every string literal becomes a parameter, so the database never parses quoted text; a literal that
    looks like it escapes its quotes to smuggle a clause is refused."""
    rebuilt: list[_Tok] = []
    for t in toks:
        if t.kind != "string":
            rebuilt.append(t)
            continue
        body = t.text[1:-1]
        if _QUOTE_LIKE.search(body) and _words(body) & FORBIDDEN_KEYWORDS:
            raise UnsafeCypherError("string literal that tries to break out of its quotes", cypher)
        name = f"{LITERAL_PREFIX}{sum(1 for k in run_params if k.startswith(LITERAL_PREFIX))}"
        run_params[name] = t.value
        rebuilt += [_Tok("ws", " "), _Tok("param", f"${name}", name), _Tok("ws", " ")]
    return rebuilt


def run_read_only(
    store: Any,
    cypher: str,
    params: Mapping[str, Any] | None = None,
    *,
    limit: int = 100,
    max_hops: int = 4,
    timeout_ms: int = 5000,
) -> list[dict]:
    """Validate, then run on the store's read-only path with the row limit and timeout."""
    safe = validate_read_only(cypher, params, limit=limit, max_hops=max_hops, timeout_ms=timeout_ms)
    return store.query(safe.query, safe.params, read_only=True, timeout_ms=safe.timeout_ms, limit=safe.limit)
