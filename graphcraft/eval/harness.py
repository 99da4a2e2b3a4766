"""The evaluation harness behind `graphcraft eval`: datasets as JSON Lines, graphs run through `ask`.

A dataset line is one object: ``question``, ``answer`` (the reference), ``sources`` (paths of the
supporting files, may be empty), ``kind`` (``answerable`` / ``multihop`` / ``unanswerable``), and
optionally ``id``, ``keywords`` (groups of alternatives that a correct answer contains, the
grading rule of samples/README.md) and ``split`` (``tune`` or ``heldout``). The sets built for
answer quality ship in graphcraft/eval/datasets/ and are named without the folder
(``python_docs``, ``postgres_docs``, ``git_docs``, ``samples``).

Every question goes through `graphcraft.api.ask`, exactly as a user's run would (audited under
the user id ``eval``, so the spend ledger shows what an evaluation cost), and is scored by
graphcraft.eval.metrics; `summarize` turns the rows into one line per graph.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphcraft.errors import EmptyStoreError, GraphcraftError, NoChatModelError, SettingsError
from graphcraft.eval.datasets import DatasetError, Question, as_groups
from graphcraft.eval.quality import kind_of

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
KINDS = ("answerable", "multihop", "unanswerable")
SPLITS = ("tune", "heldout")
EVAL_USER = "eval"
QUALITY_METRICS = (
    "answer_containment",
    "recall_at_k",
    "mrr",
    "token_f1",
    "citation_precision",
    "faithfulness",
    "abstention",
    "false_abstention",
    "judge_correct",
    "judge_grounded",
)

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class EvalItem:
    """One dataset line."""

    question: str
    answer: str
    kind: str
    sources: list[str] = field(default_factory=list)
    keywords: list[list[str]] = field(default_factory=list)
    id: str = ""
    split: str = ""


def shipped_datasets() -> list[str]:
    """Names of the datasets that ship with graphcraft."""
    return sorted(p.stem for p in DATASETS_DIR.glob("*.jsonl"))


def dataset_path(name_or_path: str | Path) -> Path:
    """A JSONL file given by path, or a shipped dataset given by name; DatasetError when neither exists."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = DATASETS_DIR / f"{name_or_path}.jsonl"
    if shipped.is_file():
        return shipped
    raise DatasetError(f"no dataset {str(name_or_path)!r}: give a JSONL file or one of {', '.join(shipped_datasets())}")


def _item(obj: Any, where: str, lineno: int) -> EvalItem:
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    missing = [key for key in ("question", "answer", "kind") if key not in obj]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}")
    if obj["kind"] not in KINDS:
        raise DatasetError(f"{where}: unknown kind {obj['kind']!r} (expected one of {', '.join(KINDS)})")
    if obj.get("split", "") not in ("", *SPLITS):
        raise DatasetError(f"{where}: unknown split {obj['split']!r} (expected one of {', '.join(SPLITS)})")
    sources, keywords = obj.get("sources") or [], obj.get("keywords") or []
    if not isinstance(sources, list) or not isinstance(keywords, list):
        raise DatasetError(f"{where}: sources and keywords must be lists")
    if not str(obj["question"]).strip():
        raise DatasetError(f"{where}: empty question")
    return EvalItem(
        question=str(obj["question"]),
        answer=str(obj["answer"]),
        kind=obj["kind"],
        sources=[str(s) for s in sources],
        keywords=as_groups(keywords),
        id=str(obj.get("id") or f"line{lineno}"),
        split=str(obj.get("split", "")),
    )


def load_dataset(name_or_path: str | Path, split: str | None = None, limit: int | None = None) -> list[EvalItem]:
    """The items of a dataset (blank lines skipped), optionally one split and the first `limit` only.

    A malformed line is a one-line DatasetError naming the file and line; a dataset with no
    question left is one too, since every figure of an empty evaluation would be meaningless.
    """
    if split and split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    path = dataset_path(name_or_path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from exc
    items = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
        items.append(_item(obj, f"{path}:{lineno}", lineno))
    if split:
        items = [item for item in items if item.split == split]
    if limit:
        items = items[:limit]
    if not items:
        raise DatasetError(f"dataset {path} has no questions" + (f" in split {split!r}" if split else ""))
    return items


def from_question(question: Question, source_paths: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A benchmark question (graphcraft.eval.datasets.Question) as a dataset line.

    `source_paths` maps gold file names to their paths in the corpus, where they are known.
    The split follows `split_by_id`: even-numbered ids tune, odd-numbered ids are held out.
    An unanswerable line lists no sources: questions of type `external` name files outside the
    corpus, which a store built from the corpus cannot retrieve.
    """
    paths = source_paths or {}
    kind = {"answerable": "answerable", "two_hop": "multihop", "unanswerable": "unanswerable"}[kind_of(question)]
    gold = question.gold_sources if kind != "unanswerable" else []
    return {
        "id": question.id,
        "question": question.question,
        "answer": question.answer,
        "sources": [paths.get(s, s) for s in gold],
        "kind": kind,
        "keywords": question.answer_keywords,
        "split": "tune" if question.number % 2 == 0 else "heldout",
    }


def write_dataset(items: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write dataset lines as JSONL (one object a line, UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dict(item), ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return path


def check_store(store: str | Path | None) -> Path:
    """The store's path; EmptyStoreError (one line, says how to ingest) when nothing was ingested there."""
    from graphcraft.api import settings_for
    from graphcraft.stores.generations import was_ingested

    path = Path(settings_for(store).store)
    if not was_ingested(path):
        raise EmptyStoreError(path)
    return path


def check_graphs(graphs: Sequence[str]) -> list[str]:
    """The graph names, each checked (UnknownGraphError lists the valid ones); an empty list is an error."""
    from graphcraft.graphs import load_graph_module

    names = [g.strip() for g in graphs if g.strip()]
    if not names:
        raise GraphcraftError("no graph to evaluate: give --graphs, e.g. crag,self_rag")
    for name in names:
        load_graph_module(name)
    return names


def _run_one(
    item: EvalItem, graph: str, store: Path, model: Any, options: Mapping[str, Any]
) -> tuple[dict[str, Any], float, str]:
    """(result, seconds, error) of one question; configuration errors propagate, a crash is a graded failure."""
    from graphcraft.api import ask
    from graphcraft.eval.spend import SpendLimitError
    from graphcraft.guards.audit import AuditError

    start = time.perf_counter()
    try:
        result = ask(item.question, graph=graph, store=store, model=model, user_id=EVAL_USER, **options)
        error = ""
    except (NoChatModelError, SettingsError, EmptyStoreError, SpendLimitError, AuditError):
        raise  # the same on every question: stop at once with its one-line message
    except Exception as exc:  # noqa: BLE001 - a failing question is a result of the evaluation
        result, error = {"answer": "", "sources": [], "trace": {"abstained": False}}, f"{type(exc).__name__}: {exc}"
    return result, time.perf_counter() - start, " ".join(error.split())[:300]


def evaluate(
    items: Sequence[EvalItem],
    graphs: Sequence[str],
    store: str | Path | None = None,
    *,
    k: int = 5,
    model: Any = None,
    judge_model: Any = None,
    options: Mapping[str, Any] | None = None,
    on_progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run every graph on every item through `ask`; one scored row per (graph, question).

    options: Settings fields and graph options for every run (what an A/B variant changes).
    judge_model: a chat model for the LLM-judged metrics (none: offline metrics only).
    """
    from graphcraft.eval.metrics import score_result
    from graphcraft.models import get_embeddings

    names, path = check_graphs(graphs), check_store(store)
    embeddings = get_embeddings()
    rows: list[dict[str, Any]] = []
    total = len(names) * len(items)
    for graph in names:
        for item in items:
            if on_progress is not None:
                on_progress(len(rows), total, f"{graph}: {item.id}")
            result, seconds, error = _run_one(item, graph, path, model, options or {})
            row = score_result(item, result, k, embeddings, judge_model)
            row.update(graph=graph, latency_s=seconds, error=error)
            rows.append(row)
    if on_progress is not None:
        on_progress(total, total, "done")
    return rows


def _mean(values: Iterable[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (numpy's linear interpolation), 0.0 for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if values else 0.0


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per graph (in first-seen order): mean quality metrics, total LLM calls, tokens and cost,
    latency percentiles, and how many questions failed."""
    summaries = []
    for graph in dict.fromkeys(r["graph"] for r in rows):
        mine = [r for r in rows if r["graph"] == graph]
        summary: dict[str, Any] = {"graph": graph, "n": len(mine)}
        for metric in QUALITY_METRICS:
            if any(metric in r for r in mine):
                summary[metric] = _mean(r.get(metric) for r in mine)
        latencies = [float(r["latency_s"]) for r in mine]
        summary.update(
            llm_calls=sum(int(r["llm_calls"]) for r in mine),
            tokens=sum(int(r["tokens"]) for r in mine),
            cost=sum(float(r["cost"]) for r in mine),
            latency_p50_s=_percentile(latencies, 50),
            latency_p95_s=_percentile(latencies, 95),
            errors=sum(bool(r.get("error")) for r in mine),
        )
        summaries.append(summary)
    return summaries


def _cost_axis(summaries: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(key, label) of the x axis: cost in USD; offline runs cost nothing, so then tokens, then latency."""
    for key, label in (("cost", "cost (USD)"), ("tokens", "tokens"), ("llm_calls", "LLM calls")):
        if any(float(s.get(key) or 0) > 0 for s in summaries):
            return key, label
    return "latency_p50_s", "latency p50 (s) - no run used a chat model"


def plot_quality_cost(
    summaries: Sequence[Mapping[str, Any]], path: str | Path, quality: str = "answer_containment", title: str = ""
) -> Path:
    """A PNG with one labelled point per summary row: quality (y) against cost (x), matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers and in CI
    import matplotlib.pyplot as plt

    key, label = _cost_axis(summaries)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for s in summaries:
        x, y = float(s.get(key) or 0.0), float(s.get(quality) or 0.0)
        ax.scatter([x], [y], s=40, zorder=3)
        ax.annotate(str(s.get("label") or s["graph"]), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel(quality.replace("_", " "))
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"{title + ': ' if title else ''}{quality.replace('_', ' ')} against {key.replace('_', ' ')}")
    ax.margins(x=0.2)  # room for the labels of the outermost points
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
