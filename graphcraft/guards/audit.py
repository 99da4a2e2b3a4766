"""The audit trail: one hash-chained line per graph run in ``<store>/audit.jsonl``.

Every run that `graphcraft.api.ask` makes on an existing store appends an entry: when, who
(user id), which graph, the sha256 of the question (never the question itself, so the log holds
no user text), the sources used, the decision path, LLM calls, tokens, cost, action and stop reason.

Why a hash chain: each entry carries ``seq`` (1, 2, ...), ``prev`` (the previous entry's hash,
`GENESIS` for the first) and ``hash`` (sha256 of its own canonical JSON without ``hash``). Editing
a line breaks its hash, re-hashing an edited line breaks the next line's ``prev``, and removing or
reordering lines breaks ``seq``/``prev``. A chain alone cannot show that its LAST line was removed,
so the head (last seq and hash) is also kept in ``audit.head``, written under the same lock.

Erasure without breaking the chain (format 2, ``"v": 2``): an entry's hash covers a digest of
each field (sha256 of the field's name and value), not the values themselves. `redact` replaces a
field that names an erased subject with the tombstone ``"[erased]"`` and keeps that field's digest
in the entry's ``erased`` map, so the entry's hash, the next entry's ``prev`` and ``audit.head``
are unchanged and `verify` still checks every other field. Each redaction is claimed by a later
``"event": "erasure"`` entry (which never holds the subject): a tombstone no erasure entry claims
is reported as an edit. Entries written before format 2 (a hash over the whole body) stay
verifiable as they were; when one of them is redacted, the erasure entry records its hash and the
digests of all its fields, and `verify` checks the redacted entry against those.

Limit: the chain has no secret key. Someone who can rewrite both files can recompute a consistent
chain; the trail shows accidental damage and edits by tools or people that do not recompute it.
Copy ``audit.head`` elsewhere (or sign it) when that matters.

Appends are serialised across threads and processes by an exclusive ``flock`` on ``audit.lock``;
the previous entry's hash is read under that lock, so two runs never chain onto the same entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphcraft.errors import GraphcraftError

LOG_NAME = "audit.jsonl"
HEAD_NAME = "audit.head"
LOCK_NAME = "audit.lock"
GENESIS = "0" * 64
"""The ``prev`` of the first entry: a fixed value, so a log that lost its first lines is detectable."""

_TAIL_BLOCK = 65536
FORMAT = 2
TOMBSTONE = "[erased]"
CHAIN_KEYS = frozenset({"seq", "prev", "hash", "v", "erased"})
"""Keys the chain itself uses; every other key of an entry is a field with its own digest."""


class AuditError(GraphcraftError):
    """An audit entry could not be written: the run fails rather than go unrecorded."""


@dataclass(frozen=True)
class BadEntry:
    """The first entry `verify` rejects: its 1-based line number, its seq (None if unreadable), why."""

    line: int
    seq: int | None
    why: str

    def describe(self) -> str:
        """The one line `graphcraft audit verify` prints."""
        seq = "?" if self.seq is None else str(self.seq)
        return f"bad entry at line {self.line} (seq {seq}): {self.why}"

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` output."""
        return asdict(self)


def question_hash(question: str) -> str:
    """sha256 of the question's UTF-8 bytes: lets an auditor match a known question without storing any."""
    return hashlib.sha256(question.encode("utf-8")).hexdigest()


def _canonical_sha256(value: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces): depends on the content, not on key order."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def field_digest(name: str, value: Any) -> str:
    """The digest of one field, which a format-2 entry's hash covers in place of its value."""
    return _canonical_sha256([name, value])


def field_digests(entry: Mapping[str, Any]) -> dict[str, str]:
    """Each field's digest: computed from its value, or the one kept when the value was erased."""
    kept = entry.get("erased")
    erased: Mapping[str, Any] = kept if isinstance(kept, Mapping) else {}
    return {
        k: str(erased[k]) if v == TOMBSTONE and k in erased else field_digest(k, v)
        for k, v in entry.items()
        if k not in CHAIN_KEYS
    }


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry: format 2 over seq, prev and its field digests; older entries over the whole body."""
    if entry.get("v") == FORMAT:
        return _canonical_sha256(
            {"v": FORMAT, "seq": entry.get("seq"), "prev": entry.get("prev"), "fields": field_digests(entry)}
        )
    return _canonical_sha256({k: v for k, v in entry.items() if k != "hash"})


def run_entry(question: str, result: Mapping[str, Any], user_id: str | None = None) -> dict[str, Any]:
    """The audit record of one `ask` result, before chaining (no seq/prev/hash yet).

    ``decisions`` is the trace's path of step names only: step details can carry text derived from
    the question (a rewritten search query), which the log must not hold.
    """
    trace = result.get("trace") or {}
    sources, seen = [], set()
    for source in result.get("sources") or []:
        key = (str(source.get("source", "")), str(source.get("chunk_id", "")))
        if key not in seen:
            seen.add(key)
            sources.append({"source": key[0], "chunk_id": key[1]})
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user_id": user_id,
        "graph": trace.get("graph"),
        "input_sha256": question_hash(question),
        "sources": sources,
        "decisions": [str(s.get("step")) for s in trace.get("steps") or [] if isinstance(s, Mapping)],
        "action": trace.get("action"),
        "stop_reason": trace.get("stop_reason"),
        "llm_calls": int(trace.get("llm_calls") or 0),
        "tokens": {
            "prompt": int(trace.get("prompt_tokens") or 0),
            "completion": int(trace.get("completion_tokens") or 0),
        },
        "cost": float(trace.get("cost") or 0.0),
    }


@contextlib.contextmanager
def _locked(store: Path, mode: int) -> Iterator[None]:
    """Hold ``flock(mode)`` on the store's audit lock file; a fresh descriptor per call, so threads queue too."""
    fd = os.open(store / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _last_line(path: Path) -> bytes | None:
    """The file's last line (without its newline), read from the end so a long log costs no full read."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return None
        data, pos = b"", end
        while pos > 0:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            if data.count(b"\n") >= 2:
                break
    if not data.endswith(b"\n"):
        raise AuditError(f"audit log {path} ends with an incomplete line: run `graphcraft audit verify`")
    return data[:-1].rsplit(b"\n", 1)[-1]


def _chain_tail(store: Path) -> tuple[int, str]:
    """(seq, hash) of the last entry, or (0, GENESIS) for an empty log. Call under the lock.

    The tail must agree with audit.head: otherwise the next entry would chain onto a log whose
    last line was removed (or forged) and the head would then hide it. Refusing is fail-closed;
    the message sends the operator to `graphcraft audit verify`.
    """
    line = _last_line(store / LOG_NAME)
    try:
        last: dict[str, Any] = json.loads(line) if line is not None else {"seq": 0, "hash": GENESIS}
        tail = int(last["seq"]), str(last["hash"])
        head_path = store / HEAD_NAME
        head = json.loads(head_path.read_text(encoding="utf-8")) if head_path.exists() else None
        recorded = (0, GENESIS) if head is None else (int(head["seq"]), str(head["hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"the audit log in {store} is damaged: run `graphcraft audit verify`") from exc
    if tail != recorded:
        raise AuditError(f"the audit log in {store} does not end where {HEAD_NAME} says: run `graphcraft audit verify`")
    return tail


def _write_head(store: Path, seq: int, digest: str) -> None:
    """Replace audit.head atomically (write a temporary file, fsync, rename)."""
    tmp = store / f"{HEAD_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"seq": seq, "hash": digest}) + "\n", encoding="utf-8")
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, store / HEAD_NAME)


def append(store: str | Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """Chain `record` onto the store's audit log and return the written entry (with seq, prev, hash).

    The line is written with one ``write`` on an O_APPEND descriptor and fsynced before the head moves,
    so a crash leaves at worst one entry the head does not know yet, which `verify` reports.
    Raises AuditError (one line) when anything cannot be written.
    """
    store = Path(store)
    try:
        with _locked(store, fcntl.LOCK_EX):
            return _append_locked(store, record)
    except OSError as exc:
        raise AuditError(f"cannot write the audit log in {store}: {exc.strerror or exc}") from exc


def _append_locked(store: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """`append`'s work, for a caller holding the exclusive lock."""
    seq, prev = _chain_tail(store)
    fields = {k: v for k, v in record.items() if k not in CHAIN_KEYS}
    entry: dict[str, Any] = {**fields, "seq": seq + 1, "prev": prev, "v": FORMAT}
    entry["hash"] = entry_hash(entry)
    line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
    fd = os.open(store / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    _write_head(store, entry["seq"], entry["hash"])
    return entry


def append_run(
    store: str | Path, question: str, result: Mapping[str, Any], user_id: str | None = None
) -> dict[str, Any]:
    """Record one `ask` run in the store's audit log (see `run_entry` for what is kept)."""
    return append(store, run_entry(question, result, user_id))


def _check_line(
    number: int, raw: bytes, seq: int, prev: str, claims: Mapping[int, Mapping[str, Any]] | None = None
) -> tuple[dict[str, Any] | None, BadEntry | None]:
    """One line against the chain so far: the parsed entry, or why it is bad (edit first, then order)."""
    if not raw.endswith(b"\n"):
        return None, BadEntry(number, None, "truncated (the line has no end)")
    try:
        entry = json.loads(raw)
    except ValueError:
        return None, BadEntry(number, None, "truncated or not JSON")
    if not isinstance(entry, dict) or not {"seq", "prev", "hash"} <= set(entry):
        return None, BadEntry(number, None, "not an audit entry (no seq/prev/hash)")
    found = entry["seq"] if isinstance(entry["seq"], int) else None
    problem = _erasure_problem(entry, (claims or {}).get(found) if found is not None else None)
    if problem:
        return None, BadEntry(number, found, problem)
    if entry.get("v") == FORMAT or "erased" not in entry:  # a redacted older entry is checked by its claim
        if entry["hash"] != entry_hash(entry):
            return None, BadEntry(number, found, "edited (its hash does not match its content)")
    if found != seq + 1:
        return None, BadEntry(number, found, f"removed or reordered (expected seq {seq + 1})")
    if entry["prev"] != prev:
        return None, BadEntry(number, found, "removed or reordered (prev is not the previous entry's hash)")
    return entry, None


def _erasure_problem(entry: Mapping[str, Any], claim: Mapping[str, Any] | None) -> str | None:
    """Why an entry's erased fields are not a recorded erasure (None when it has none, or they are)."""
    erased = entry.get("erased")
    if erased is None:
        return None
    if not isinstance(erased, Mapping) or any(entry.get(k) != TOMBSTONE for k in erased):
        return "edited (its erased fields are not tombstones)"
    if claim is None or int(claim.get("by", 0)) <= int(entry["seq"]):
        return "edited (a field was erased but no later erasure entry records it)"
    if not set(erased) <= set(claim.get("fields") or []):
        return "edited (its erased fields differ from its erasure entry's)"
    if entry.get("v") == FORMAT:
        return None
    if claim.get("hash") != entry.get("hash") or claim.get("digests") != field_digests(entry):
        return "edited (its content does not match what its erasure entry recorded)"
    return None


def _claims(log: Path) -> dict[int, dict[str, Any]]:
    """The redactions that erasure entries record, by the seq of the entry redacted (first pass of verify).

    Read before the chain is checked; the chain check then proves the erasure entries themselves."""
    claims: dict[int, dict[str, Any]] = {}
    if not log.exists():
        return claims
    with log.open("rb") as stream:
        for raw in stream:
            if b'"erasure"' not in raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # reported by the chain check
            if not isinstance(entry, dict) or entry.get("event") != "erasure" or not isinstance(entry.get("seq"), int):
                continue
            for item in entry.get("redacted") or []:
                if isinstance(item, dict) and isinstance(item.get("seq"), int):
                    claims[item["seq"]] = {**item, "by": entry["seq"]}
    return claims


def _check_head(store: Path, lines: int, seq: int, digest: str) -> BadEntry | None:
    """The chain's end against audit.head: catches a removed last line and lines appended by hand."""
    head_path = store / HEAD_NAME
    if not head_path.exists():
        return None if lines == 0 else BadEntry(lines, seq, f"{HEAD_NAME} is missing, so the end cannot be checked")
    try:
        head = json.loads(head_path.read_text(encoding="utf-8"))
        head_seq, head_hash = int(head["seq"]), str(head["hash"])
    except (ValueError, KeyError, TypeError):
        return BadEntry(lines, seq, f"{HEAD_NAME} is damaged")
    if seq < head_seq:
        return BadEntry(lines + 1, seq + 1, f"removed (the log ends at seq {seq}, {HEAD_NAME} records {head_seq})")
    if seq > head_seq:
        line = lines - (seq - head_seq) + 1
        return BadEntry(line, head_seq + 1, f"not recorded in {HEAD_NAME} (appended outside graphcraft)")
    if digest != head_hash:
        return BadEntry(lines, seq, f"edited (hash differs from the one {HEAD_NAME} records)")
    return None


def verify(store: str | Path) -> BadEntry | None:
    """The first bad entry of the store's audit log, or None when the whole chain and its head hold.

    Reads under a shared lock, so an append in progress is never seen half-written.
    """
    store = Path(store)
    log = store / LOG_NAME
    if not log.exists() and not (store / HEAD_NAME).exists():
        return None
    with _locked(store, fcntl.LOCK_SH):
        seq, prev, lines = 0, GENESIS, 0
        claims = _claims(log)
        with contextlib.ExitStack() as stack:
            stream = stack.enter_context(log.open("rb")) if log.exists() else iter(())
            for lines, raw in enumerate(stream, start=1):
                entry, bad = _check_line(lines, raw, seq, prev, claims)
                if bad is not None:
                    return bad
                assert entry is not None
                seq, prev = entry["seq"], entry["hash"]
        return _check_head(store, lines, seq, prev)


def count(store: str | Path) -> int:
    """How many entries the store's audit log holds (lines; meaningful after `verify` returned None)."""
    log = Path(store) / LOG_NAME
    if not log.exists():
        return 0
    with log.open("rb") as f:
        return sum(1 for _ in f)


# ------------------------------------------------------------------------------ erasure


@dataclass
class Redaction:
    """What `redact` did: entries and fields tombstoned, and the erasure entry that records them."""

    entries: int = 0
    fields: int = 0
    erasure_seq: int | None = None


def _redacted(entry: dict[str, Any], names_subject: Callable[[str], bool]) -> tuple[dict[str, Any], list[str]]:
    """The entry with every field that names the subject tombstoned, and those fields' names."""
    hits = [
        k
        for k, v in entry.items()
        if k not in CHAIN_KEYS and v != TOMBSTONE and names_subject(json.dumps(v, ensure_ascii=False))
    ]
    if not hits:
        return entry, []
    erased = dict(entry.get("erased") or {})
    erased.update({k: field_digest(k, entry[k]) for k in hits})
    return {**entry, **{k: TOMBSTONE for k in hits}, "erased": erased}, hits


def redact(store: str | Path, names_subject: Callable[[str], bool], dry_run: bool = False) -> Redaction:
    """Tombstone every field of every audit entry in which `names_subject` finds the subject.

    Under the exclusive lock: first an erasure entry recording which fields of which entries are
    erased (never the subject itself) is appended, then the log is rewritten atomically with the
    tombstones. A crash between the two leaves a claim with nothing erased yet (run again), never a
    tombstone without its claim. The hashes, `prev` links and audit.head do not change.
    """
    store = Path(store)
    log = store / LOG_NAME
    report = Redaction()
    if not log.exists():
        return report
    with _locked(store, fcntl.LOCK_EX):
        lines = log.read_bytes().splitlines(keepends=True)
        out, items = _redact_lines(lines, names_subject)
        report.entries, report.fields = len(items), sum(len(i["fields"]) for i in items)
        if dry_run or not items:
            return report
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": "erasure"}
        report.erasure_seq = _append_locked(store, {**record, "redacted": items})["seq"]
        tail = log.read_bytes()[sum(len(line) for line in lines) :]  # the erasure entry just appended
        tmp = store / f"{LOG_NAME}.{os.getpid()}.tmp"
        with tmp.open("wb") as f:
            f.write(b"".join(out) + tail)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, log)
    return report


def _redact_lines(lines: list[bytes], names_subject: Callable[[str], bool]) -> tuple[list[bytes], list[dict]]:
    """The log's lines with the subject tombstoned, and one erasure record item per entry changed."""
    out: list[bytes] = []
    items: list[dict[str, Any]] = []
    for raw in lines:
        try:
            entry = json.loads(raw)
        except ValueError:
            out.append(raw)  # a damaged line stays as it is: verify reports it
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int):
            out.append(raw)
            continue
        new, hits = _redacted(entry, names_subject)
        if not hits:
            out.append(raw)
            continue
        item: dict[str, Any] = {"seq": entry["seq"], "fields": sorted(set(hits) | set(entry.get("erased") or {}))}
        if new.get("v") != FORMAT:  # an older entry: its hash covered the values; record what it was
            item["hash"] = entry.get("hash")
            item["digests"] = field_digests(new)
        items.append(item)
        out.append((json.dumps(new, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
    return out, items
