"""Per-strategy quality and cost statistics for adaptive RAG, kept in the store directory.

Every adaptive_rag run is logged (run id, question, query class, strategy, LLM calls, tokens,
seconds); feedback (`graphcraft feedback RUN_ID_OR_QUESTION --score 0.8`, or `record(...)`)
attaches a quality score in [0, 1] to a run. `stats()` aggregates both per (query class,
strategy): the "performance insights" the CLI prints and the notebook plots, and what the
adaptive router's Bayesian choice reads. SQLite (standard library) so concurrent runs and a
CLI call can write at the same time safely.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, cast

from graphcraft.errors import GraphcraftError

FEEDBACK_FILE = "feedback.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, ts REAL, question TEXT, query_class TEXT, strategy TEXT,
                                 llm_calls INTEGER, tokens INTEGER, seconds REAL);
CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, run_id TEXT, question TEXT,
                                     query_class TEXT, strategy TEXT, score REAL);
CREATE INDEX IF NOT EXISTS runs_question ON runs(question);
"""


class FeedbackError(GraphcraftError):
    """Feedback that cannot be recorded (unknown run, score out of range)."""


class FeedbackStore:
    """The feedback database of one store directory (created on first write)."""

    def __init__(self, store_dir: str | Path) -> None:
        self.path = Path(store_dir) / FEEDBACK_FILE

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.executescript(_SCHEMA)
        return conn

    def log_run(
        self, run_id: str, question: str, query_class: str, strategy: str, llm_calls: int, tokens: int, seconds: float
    ) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                (run_id, time.time(), question, query_class, strategy, int(llm_calls), int(tokens), float(seconds)),
            )

    def find_run(self, key: str) -> dict[str, Any] | None:
        """The run with this id, else the latest run of this exact question."""
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            row = (
                conn.execute("SELECT * FROM runs WHERE run_id = ?", (key,)).fetchone()
                or conn.execute("SELECT * FROM runs WHERE question = ? ORDER BY ts DESC LIMIT 1", (key,)).fetchone()
            )
            return dict(row) if row else None

    def record(
        self, key: str, score: float, *, strategy: str | None = None, query_class: str | None = None
    ) -> dict[str, Any]:
        """Attach `score` (0..1) to the run `key` (run id or question).

        The strategy is given explicitly if no run is logged.
        """
        if not 0.0 <= float(score) <= 1.0:
            raise FeedbackError(f"score must be between 0 and 1, got {score}")
        run = self.find_run(key)
        if run is None and strategy is None:
            raise FeedbackError(
                f"no adaptive_rag run {key!r} in {self.path.parent}: give a run id or question from "
                "`graphcraft ask --graph adaptive_rag`, or name the strategy"
            )
        entry = {
            "run_id": run["run_id"] if run else None,
            "question": run["question"] if run else key,
            "query_class": (run or {}).get("query_class") or query_class or "single_hop",
            # Without a strategy there is a run: the check above raised otherwise.
            "strategy": strategy or cast(dict[str, Any], run)["strategy"],
            "score": float(score),
        }
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT INTO feedback (ts, run_id, question, query_class, strategy, score) VALUES (?,?,?,?,?,?)",
                (
                    time.time(),
                    entry["run_id"],
                    entry["question"],
                    entry["query_class"],
                    entry["strategy"],
                    entry["score"],
                ),
            )
        return entry

    def stats(self) -> list[dict[str, Any]]:
        """Per (query_class, strategy): runs, mean cost, and feedback count / mean / sum of scores."""
        if not self.path.exists():
            return []
        with closing(self._connect()) as conn:
            cost = {
                (c, s): (n, calls, tokens, secs)
                for c, s, n, calls, tokens, secs in conn.execute(
                    "SELECT query_class, strategy, COUNT(*), AVG(llm_calls), AVG(tokens), AVG(seconds) "
                    "FROM runs GROUP BY 1, 2"
                )
            }
            quality = {
                (c, s): (n, total)
                for c, s, n, total in conn.execute(
                    "SELECT query_class, strategy, COUNT(*), SUM(score) FROM feedback GROUP BY 1, 2"
                )
            }
        rows = []
        for key in sorted(set(cost) | set(quality)):
            runs, calls, tokens, secs = cost.get(key, (0, 0.0, 0.0, 0.0))
            n, total = quality.get(key, (0, 0.0))
            rows.append(
                {
                    "query_class": key[0],
                    "strategy": key[1],
                    "runs": runs,
                    "mean_llm_calls": round(calls or 0.0, 2),
                    "mean_tokens": round(tokens or 0.0, 1),
                    "mean_seconds": round(secs or 0.0, 3),
                    "feedback": n,
                    "score_sum": round(total or 0.0, 4),
                    "mean_score": round(total / n, 3) if n else None,
                }
            )
        return rows


def record(key: str, score: float, store: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Record feedback for an adaptive_rag run (by run id or question) in `store` (default: Settings.store)."""
    return FeedbackStore(_store_dir(store)).record(key, score, **kwargs)


def stats(store: str | Path | None = None) -> list[dict[str, Any]]:
    """Per-strategy statistics of `store` (see FeedbackStore.stats)."""
    return FeedbackStore(_store_dir(store)).stats()


def _store_dir(store: str | Path | None) -> Path:
    if store is not None:
        return Path(store)
    from graphcraft.config import get_settings

    return Path(get_settings().store)
