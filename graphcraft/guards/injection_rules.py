"""The pattern rules of the prompt-injection guard, and the normalisation and decoding they run on.

Every rule is one compiled regular expression over *normalised* text: NFKC (full-width and
mathematical letters become ASCII), invisible format characters removed (zero-width spaces and
joiners, bidi overrides, the BOM), then look-alike letters folded to ASCII and case removed with
`decancer_py` (Unicode's confusable skeletons: Cyrillic "і", Greek "ο", small capitals ...).

Regexes are written so that no input can make them backtrack catastrophically: no nested
unbounded quantifiers, only bounded gaps (``[^.\\n]{0,40}``) between the words of a phrase.
The text a rule sees is bounded too (see :func:`bounded`).

Imperative phrasing is what separates an injection from a text *about* injections: "ignore the
previous instructions" fires when it starts a clause (start of a line or sentence, after a quote
or a colon, after "please"/"now"/"and"), not in "attackers make the model ignore its
instructions". A quoted attack string in a security article therefore still fires: once it is in
the model's context it can work whatever quotes surround it.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import decancer_py

HEAD_CHARS = 20_000  # characters scanned from the start of a text ...
TAIL_CHARS = 5_000  # ... and from its end (an instruction appended to a long page)
MAX_PAYLOADS = 16  # encoded runs decoded per text
MAX_PAYLOAD_CHARS = 4_096  # characters of one encoded run that are decoded
MAX_DECODE_DEPTH = 2  # base64 inside base64 ...
MAX_CANDIDATES = 64  # matches of one rule examined for a clause start


@dataclass(frozen=True)
class Rule:
    """One pattern: `family` groups rules in reports, `weight` is its contribution to the score."""

    name: str
    family: str
    weight: float
    pattern: re.Pattern[str]
    clause_start: bool = False  # the match must start a clause (an imperative, not a description)

    def search(self, text: str) -> re.Match[str] | None:
        """The first match (that starts a clause, when the rule asks for one)."""
        if not self.clause_start:
            return self.pattern.search(text)
        for count, match in enumerate(self.pattern.finditer(text)):
            at = match.start()
            if (at <= 16 and not text[:at].strip()) or _CLAUSE_START.search(text, max(0, at - 16), at):
                return match
            if count >= MAX_CANDIDATES:
                return None
        return None


# A clause start: what may precede an imperative (start, punctuation, a quote, "please", "now" ...).
# Checked on a few characters before a match rather than as a look-behind: a pattern that starts
# with its verb is several times faster to search than one that starts with a dozen look-behinds.
_CLAUSE_START = re.compile(
    r"(?:[.!?:;,>\"'`*(\[\n-]|\b(?:please|now|and|then|just|also|simply|kindly|so|dear|hey|hello|attention|reading))\s*\Z"
)
_VERB = r"(?:ignore|disregard|forget|overlook|skip|override|bypass|discard|drop|abandon|neglect|set\s+aside)"
_BEFORE = (
    r"(?:previous|prior|preceding|above|earlier|foregoing|former|original|initial|old|system|developer|"
    r"all|any|every|your)"
)
_ORDERS = (
    r"(?:instructions?|directions?|directives?|prompts?|guidelines?|commands?|orders?|guidance|rules|"
    r"constraints|restrictions|programming|safety\s+(?:rules|guidelines|policies))"
)
_GAP = r"[^.\n]{0,40}?"
_AI = (
    r"(?:ai|a\.i\.|artificial\s+intelligence|llms?|language\s+models?|chat\s*bots?|bots?|assistants?|agents?|"
    r"gpt|chatgpt|claude|gemini|copilot|summari[sz]ers?|machine\s+readers?|reader\s+bots?|"
    r"automated\s+(?:agents?|readers?|systems?|tools?))"
)


# The same in French, Spanish, German, Italian and Portuguese (either word order).
_EARLIER = r"(?:pr[eé]c[eé]dentes|anteriores|vorherigen|bisherigen|precedenti|previas|pr[eé]vias)"
_ORDERS_OTHER = r"(?:instructions|instrucciones|anweisungen|istruzioni|instru[cç][oõ]es|consignes|regeln|reglas)"


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE)


RULES: tuple[Rule, ...] = (
    # Instruction override
    Rule("override_instructions", "override", 0.9, _rx(rf"\b{_VERB}\b{_GAP}\b{_BEFORE}\b{_GAP}\b{_ORDERS}\b"), True),
    Rule("new_instructions", "override", 0.7, _rx(
        r"\b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?instructions?\s*:"
    )),
    Rule("from_now_on", "override", 0.6, _rx(r"\bfrom\s+now\s+on\s*,?\s+(?:you|your|the\s+(?:assistant|model|ai))\b")),
    Rule("override_other_languages", "override", 0.8, _rx(
        rf"\b(?:ignor\w*|olvid\w*|vergiss\w*|oubli\w*|dimentic\w*|esque\w*)\b[^.\n]{{0,30}}?"
        rf"(?:\b{_EARLIER}\b[^.\n]{{0,20}}?\b{_ORDERS_OTHER}\b|\b{_ORDERS_OTHER}\b[^.\n]{{0,20}}?\b{_EARLIER}\b)"
    )),
    Rule("instead_do", "override", 0.6, _rx(
        rf"\b(?:do\s+not|don'?t|never)\s+(?:follow|obey|listen\s+to)\b{_GAP}\b{_ORDERS}\b"
    ), True),
    # Role hijack
    Rule("you_are_now", "role_hijack", 0.7, _rx(
        r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+|the\s+|my\s+|in\s+)?"
        r"(?:dan\b|unrestricted|unfiltered|uncensored|jailbroken|free\b|evil|developer\s+mode|god\s+mode|"
        r"an?\s+ai\b|in\s+\w+\s+mode|bound\b|restricted|required\s+to|going\s+to|acting|playing|called|named|\w+gpt)"
    )),
    Rule("act_as_persona", "role_hijack", 0.8, _rx(
        r"\b(?:act|behave|respond|roleplay|role-play)\s+as\s+(?:an?\s+)?"
        r"(?:dan\b|unrestricted|unfiltered|uncensored|jailbroken|evil|an?\s+ai\s+without|.{0,30}\bwithout\s+(?:any\s+)?(?:restrictions|filters|rules))"
    )),
    Rule("jailbreak_mode", "role_hijack", 0.8, _rx(
        r"\b(?:dan\s+mode|developer\s+mode\s+(?:enabled|on|activated)|jailbreak(?:\s+mode)?\s+(?:enabled|on|activated)|"
        r"do\s+anything\s+now|god\s+mode\s+(?:enabled|on|activated))\b"
    )),
    Rule("pretend_unrestricted", "role_hijack", 0.7, _rx(
        rf"\bpretend\s+(?:to\s+be|you\s+are|that\s+you){_GAP}(?:no|without|any)\s+(?:restrictions|limits|filters|rules|guidelines)"
    ), True),
    Rule("role_line", "role_hijack", 0.6, _rx(
        r"^[ \t>#*\[]*(?:system|assistant|developer)\s*(?:message|prompt)?\s*[\]:]\s*\S"
    )),
    Rule("chat_template_token", "role_hijack", 0.9, _rx(
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|start_header_id|end_header_id|eot_id)\|>|"
        r"\[/?inst\]|<</?sys>>|<start_of_turn>|<end_of_turn>"
    )),
    # System-prompt extraction
    Rule("reveal_system_prompt", "extraction", 0.85, _rx(
        r"\b(?:print|reveal|show|display|output|repeat|recite|leak|dump|tell\s+me|give\s+me|share|write\s+out|what\s+(?:is|are|was|were))\b"
        r"[^.\n?]{0,30}?\b(?:your|the)\s+(?:\w+\s+){0,2}?(?:system\s+prompt|system\s+message|initial\s+(?:instructions|prompt)|"
        r"hidden\s+(?:instructions|prompt)|original\s+(?:instructions|prompt)|pre-?prompt|instructions\s+(?:above|you\s+were\s+given))"
    )),
    Rule("repeat_above", "extraction", 0.8, _rx(
        r"\b(?:repeat|print|output|copy)\s+(?:all\s+|everything\s+|the\s+)?(?:text|words|content|everything|lines)?\s*"
        r"(?:above|before\s+this|preceding)\b[^.\n]{0,40}?(?:verbatim|starting\s+with|word\s+for\s+word|including)"
    ), True),
    # Delimiter tricks
    Rule("fake_end_marker", "delimiter", 0.6, _rx(
        r"^[ \t]*(?:#{2,}|={3,}|-{3,}|\*{3,}|\[)\s*end\s+(?:of\s+)?(?:the\s+)?(?:document|context|text|input|data|"
        r"retrieved\s+\w+|user\s+input|system\s+prompt|instructions|conversation|article|page|source)s?\b"
    )),
    Rule("closing_context_tag", "delimiter", 0.6, _rx(
        r"</\s*(?:context|document|documents|system|instructions?|retrieved|source|user_input|untrusted)\s*>"
    )),
    Rule("dashed_end", "delimiter", 0.6, _rx(
        r"-{5}\s*end\s+(?:of\s+)?(?:document|context|input|prompt|instructions|system|user|data|text)"
    )),
    # Hidden instructions aimed at the model
    Rule("ai_reader_directive", "hidden", 0.8, _rx(
        rf"\b{_AI}\s+(?:\w+\s+){{0,2}}?(?:reading|processing|summari[sz]ing|parsing|indexing|visiting|handling|who\s+reads?|that\s+reads?|"
        r"that\s+process(?:es)?|scanning|answering)\b[^.\n]{0,60}?\b(?:must|should|shall|are\s+(?:required|instructed)|"
        r"need\s+to|have\s+to|will\s+now)\b"
    )),
    Rule("note_to_ai", "hidden", 0.8, _rx(
        r"\b(?:note|message|instruction|attention|notice|important|disclaimer|reminder|step|hidden)\s+(?:to|for)\s+"
        rf"(?:the\s+|any\s+|all\s+)?{_AI}\b|"
        rf"\bif\s+you\s+are\s+(?:an?\s+|the\s+)?{_AI}\b"
    )),
    Rule("when_asked_answer", "hidden", 0.8, _rx(
        r"\b(?:when|if|whenever)\s+(?:you\s+are\s+|you're\s+)?(?:asked|questioned|queried|prompted)\b[^.\n]{0,80}?,?\s*"
        r"(?:always\s+|only\s+)?(?:answer|respond|reply|say|state|claim|tell\s+(?:them|the\s+user))\b"
    )),
    Rule("address_the_ai", "hidden", 0.6, _rx(
        rf"\b{_AI}\s*[:,]"
        r"[^\n]{0,60}?\b(?:you|your|please|ignore|forget|disregard|do\s+not|don'?t|always|never|append|send|tell|say|"
        r"reply|respond|answer|include|give|treat|run|call|delete|drop|print|reveal|skip)\b"
    ), True),
    Rule("any_ai_must", "hidden", 0.7, _rx(
        rf"\b(?:(?:any|all|every|each)\s+)?(?:\w+\s+)?{_AI}\s+(?:\w+\s+){{0,3}}?(?:must|should|shall|are\s+(?:expected|required|instructed)\s+to|"
        r"is\s+(?:expected|required|instructed)\s+to)\s+(?:\w+\s+){0,2}?(?:answer|say|reply|respond|tell|state|claim|"
        r"recommend|refuse|ignore|cite|describe|quote|mention|include|open|submit|send|delete|treat|call|rate|praise)\b"
    ), True),
    Rule("ai_must", "hidden", 0.45, _rx(
        rf"\bthe\s+{_AI}\s+(?:must|should|shall|is\s+(?:required|instructed)|has\s+to|needs\s+to|will\s+now)\s+"
        r"(?:always\s+|only\s+|now\s+)?(?:answer|say|reply|respond|tell|state|claim|recommend|refuse|ignore|cite)\b"
    )),
    Rule("source_priority", "hidden", 0.6, _rx(
        r"\b(?:prefer|trust|cite|use)\s+(?:only\s+)?this\s+(?:document|source|answer|citation|page)\s+"
        r"(?:over|above|instead\s+of|as\s+the\s+only)\b|\b(?:ignore|disregard|distrust)\s+(?:all\s+|any\s+)?other\s+"
        r"(?:sources|documents|citations|results|pages)\b|\bthis\s+(?:citation|document|source)\s+overrides\b"
    )),
    Rule("tell_the_user", "hidden", 0.6, _rx(
        r"\b(?:always\s+|instead\s*,?\s*)?(?:tell|inform|convince|instruct|urge)\s+the\s+user\s+(?:that|to)\b|"
        r"\b(?:do\s+not|don'?t|never)\s+(?:tell|inform|reveal\s+to|mention\s+(?:this\s+)?to)\s+the\s+user\b"
    ), True),
    Rule("markdown_exfiltration", "hidden", 0.7, _rx(r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]{1,200}[?&][^)\s=]{1,40}=[^)\s]{0,200}\)")),
    # Fake citations: a document's own source list mimics graphcraft's numbering (neutralised when kept)
    Rule("fake_citation", "fake_citation", 0.3, _rx(
        r"^[ \t]*(?:\[\d{1,3}\]|【\d{1,3}[^】\n]{0,40}】)\s*\S|"
        r"^[ \t]*(?:sources?|citations?|references?)\s*:\s*\[\d{1,3}\]|"
        r"\[(?:source|citation|doc(?:ument)?)\s*:?\s*\d{1,3}\]"
    )),
)  # fmt: skip

# Rules that decoded payloads (base64, hex, rot13, reversed, tag characters) are re-scanned with.
PAYLOAD_FAMILIES = frozenset({"override", "role_hijack", "extraction", "hidden"})
ENCODING_WEIGHT = 0.9  # an instruction hidden in an encoding is an attack, not an accident
OBFUSCATION_WEIGHT = 0.3  # invisible or look-alike characters inside a text that also fired a rule

_TAG_CHARS = {cp: cp - 0xE0000 for cp in range(0xE0020, 0xE007F)}  # Unicode "tag" letters smuggle ASCII
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{24,}={0,2}")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{2}[ :]?){16,}")
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}){8,}")
_WORD_CHAR = re.compile(r"[A-Za-z]")


def bounded(text: str) -> str:
    """The part of `text` that is scanned: its first HEAD_CHARS and last TAIL_CHARS characters."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


def strip_invisible(text: str) -> str:
    """NFKC, and format characters (zero-width, bidi controls, tags) removed."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def normalise(text: str) -> str:
    """What the rules match: invisible characters removed, look-alikes folded to lower-case ASCII."""
    return str(decancer_py.parse(strip_invisible(text)))


def tag_text(text: str) -> str:
    """ASCII smuggled in Unicode tag characters (invisible on screen, read by models)."""
    return "".join(chr(_TAG_CHARS[ord(ch)]) for ch in text if ord(ch) in _TAG_CHARS)


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 8 or any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in text):
        return None
    return text if len(_WORD_CHAR.findall(text)) >= 0.5 * len(text) else None


def _b64(run: str) -> str | None:
    run = run.rstrip("=")
    raw = run.replace("-", "+").replace("_", "/")
    try:
        return _printable(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True))
    except (binascii.Error, ValueError):
        return None


def _hex(run: str) -> str | None:
    digits = re.sub(r"[^0-9a-fA-F]", "", run.replace("\\x", ""))
    try:
        return _printable(bytes.fromhex(digits[: len(digits) // 2 * 2]))
    except ValueError:
        return None


def decoded_payloads(text: str) -> Iterator[tuple[str, str]]:
    """(encoding, decoded text) for encoded runs in `text` that decode to readable text, bounded."""
    found = 0
    for encoding, pattern, decode in (("base64", _BASE64, _b64), ("hex", _HEX, _hex), ("hex", _HEX_ESCAPES, _hex)):
        for match in pattern.finditer(text):
            if found >= MAX_PAYLOADS:
                return
            found += 1
            decoded = decode(match.group()[:MAX_PAYLOAD_CHARS])
            if decoded:
                yield encoding, decoded


def transformed(text: str) -> Iterator[tuple[str, str]]:
    """Cheap whole-text transforms an attacker uses to hide words from filters: rot13, reversal."""
    yield "rot13", codecs.decode(text, "rot13")
    yield "reversed", text[::-1]


_IN_WORD_INVISIBLE = re.compile(r"[A-Za-z][\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u202a-\u202e\u2066-\u2069]+[A-Za-z]")
_LOOKALIKE = r"[\u0370-\u03ff\u0400-\u04ff\u1d00-\u1d7f]"  # Greek, Cyrillic, phonetic small capitals
_MIXED_SCRIPT = re.compile(rf"[A-Za-z]{_LOOKALIKE}|{_LOOKALIKE}[A-Za-z]")
_STYLED_LETTERS = re.compile(r"[\uff21-\uff3a\uff41-\uff5a\U0001d400-\U0001d7ff]{3,}")


def obfuscated(text: str) -> bool:
    """Invisible characters inside a word, Latin mixed with look-alike letters, or styled letters."""
    return bool(_IN_WORD_INVISIBLE.search(text) or _MIXED_SCRIPT.search(text) or _STYLED_LETTERS.search(text))
