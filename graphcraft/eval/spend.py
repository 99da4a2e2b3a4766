"""Spend per user, graph and day, read from the audit trail (the one ledger of what runs cost).

Every run `graphcraft.api.ask` makes on a store is one line of ``<store>/audit.jsonl`` with its
time, user id, graph, LLM calls, tokens and cost (graphcraft/guards/audit.py); spend is a sum
over those lines, so there is no second ledger to keep in step. A run without a user id is
counted under ``-``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from graphcraft.errors import GraphcraftError

GROUPS = ("user_id", "graph", "day")
ALIASES = {"user": "user_id", "users": "user_id", "graph": "graph", "graphs": "graph", "day": "day", "days": "day"}
NO_USER = "-"
NEAR_SHARE = 0.8
"""A user's spend today at or above this share of the daily limit is flagged "near" before it is refused."""


class SpendLimitError(GraphcraftError):
    """The user's spend today reached the daily spend limit: the run is refused."""


class LedgerError(GraphcraftError):
    """The audit trail cannot be read as a spend ledger."""


def _entries(store: Path) -> Iterator[dict[str, Any]]:
    """The store's run entries, oldest first (none when the store has no audit log).

    Entries with an ``event`` (the erasure records of graphcraft/guards/audit.py) are not runs and
    are skipped; a run whose user id was erased keeps its cost under the tombstone.
    """
    from graphcraft.guards.audit import LOG_NAME

    log = store / LOG_NAME
    if not log.exists():
        return
    try:
        with log.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LedgerError(
                        f"{log}:{number} is not JSON: run `graphcraft audit verify --store {store}`"
                    ) from exc
                if isinstance(entry, dict) and "event" not in entry:
                    yield entry
    except OSError as exc:
        raise LedgerError(f"cannot read the audit log {log}: {exc.strerror or exc}") from exc


def _day(entry: Mapping[str, Any]) -> str:
    """The UTC day (YYYY-MM-DD) of an entry's ISO time."""
    return datetime.fromisoformat(str(entry["time"])).astimezone(UTC).date().isoformat()


def parse_since(text: str | None) -> date | None:
    """A YYYY-MM-DD day (or None); anything else is a one-line error."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise GraphcraftError(f"--since {text!r}: expected a day as YYYY-MM-DD") from exc


def group_names(by: Sequence[str] | str) -> tuple[str, ...]:
    """Grouping keys from names such as "user", "graph,day" or ("user_id", "day")."""
    parts = [p.strip() for item in ([by] if isinstance(by, str) else by) for p in item.split(",") if p.strip()]
    names = []
    for part in parts:
        name = ALIASES.get(part, part)
        if name not in GROUPS:
            raise GraphcraftError(f"cannot group spend by {part!r}: use user, graph or day")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _key(entry: Mapping[str, Any], by: Sequence[str]) -> tuple[str, ...]:
    values = {"user_id": str(entry.get("user_id") or NO_USER), "graph": str(entry.get("graph") or "-")}
    values["day"] = _day(entry)
    return tuple(values[name] for name in by)


def spend(
    store: str | Path, since: date | str | None = None, by: Sequence[str] | str = ("user_id", "graph", "day")
) -> list[dict[str, Any]]:
    """Runs, LLM calls, tokens and cost per group (sorted by the group keys), from `since` (a day) on."""
    start = parse_since(since) if isinstance(since, str) else since
    keys = group_names(by)
    totals: dict[tuple[str, ...], dict[str, Any]] = {}
    for entry in _entries(Path(store)):
        if "time" not in entry or (start is not None and _day(entry) < start.isoformat()):
            continue
        key = _key(entry, keys)
        row = totals.setdefault(
            key, {**dict(zip(keys, key, strict=True)), "runs": 0, "llm_calls": 0, "tokens": 0, "cost": 0.0}
        )
        tokens = entry.get("tokens") or {}
        row["runs"] += 1
        row["llm_calls"] += int(entry.get("llm_calls") or 0)
        row["tokens"] += int(tokens.get("prompt") or 0) + int(tokens.get("completion") or 0)
        row["cost"] += float(entry.get("cost") or 0.0)
    return [totals[key] for key in sorted(totals)]


def spent_today(store: str | Path, user_id: str | None) -> float:
    """What `user_id` (None: runs without one) spent today, UTC, in USD."""
    today = datetime.now(UTC).date()
    rows = spend(store, since=today, by=("user_id", "day"))
    who = user_id or NO_USER
    return sum(r["cost"] for r in rows if r["user_id"] == who and r["day"] == today.isoformat())


def check_spend_limit(store: str | Path, user_id: str | None, limit_usd: float | None = None) -> None:
    """Refuse (SpendLimitError) when the user's spend today is at or over the limit.

    limit_usd defaults to Settings.spend_limit_usd; 0 means no limit. Call before a run starts.
    """
    if limit_usd is None:
        from graphcraft.config import get_settings

        limit_usd = get_settings().spend_limit_usd
    if not limit_usd or limit_usd <= 0 or not Path(store).is_dir():
        return
    used = spent_today(store, user_id)
    if used >= limit_usd:
        who = user_id or "runs without a user id"
        raise SpendLimitError(
            f"spend limit reached for {who}: ${used:.4f} today of ${limit_usd:.4f} "
            "(GRAPHCRAFT_SPEND_LIMIT_USD; resets at 00:00 UTC)"
        )


def warnings(rows: Sequence[dict[str, Any]], store: str | Path, limit_usd: float) -> list[str]:
    """The threshold column for `spend` rows: "over" / "near" the daily limit, else "".

    The limit is per user per day: a row grouped by user and day is judged on its own cost; a row
    grouped by user only, on that user's spend today; rows not split by user have no warning.
    """
    if limit_usd <= 0:
        return ["" for _ in rows]
    today = datetime.now(UTC).date()
    by_user = {r["user_id"]: r["cost"] for r in spend(store, since=today, by=("user_id",))}
    out = []
    for row in rows:
        if "user_id" not in row:
            out.append("")
            continue
        used = row["cost"] if "day" in row else by_user.get(row["user_id"], 0.0)
        out.append("over" if used >= limit_usd else "near" if used >= NEAR_SHARE * limit_usd else "")
    return out
