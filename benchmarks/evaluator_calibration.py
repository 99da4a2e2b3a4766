"""Calibrate CRAG's local retrieval evaluator: does its score separate answerable questions
from questions the corpus cannot answer, and where should the thresholds sit?

For every question of the sample set whose answer is in the corpus (single, paraphrase,
multi_hop) and every one whose answer is not (unanswerable, external), the hybrid retriever's
top-k chunks are scored exactly as `graphcraft.chains.grade.LocalEvaluator` does, and the
question-level signal is the best document's (CRAG's rule looks at the maximum: Correct if any
score > upper, Incorrect if all < lower). Signals:

    strip     best knowledge-strip score (0.75 cosine + 0.25 term overlap, as the evaluator)
    strip_cos best strip cosine alone (diagnostic)
    chunk     query-chunk cosine
    coverage  weighted keyword coverage of the question's terms
    combined  w_strip*strip + w_chunk*chunk + w_cov*coverage (the evaluator's score)

The questions are split by id (even numbers calibrate, odd numbers report), so the weights and
thresholds chosen on one half are reported on the other. Printed: ROC AUC per signal (with a
bootstrap interval on the held-out half), the weight grid's best combination, and the
trade-off "answerable kept" vs "unanswerable abstained" for a sweep of thresholds; a PNG of the
trade-off goes to benchmarks/out/.

Offline CRAG without an external source abstains when every score is below `lower`
(Incorrect), or when refinement keeps no strip. The recommended lower threshold is the one
maximising balanced accuracy on the calibration half; the upper threshold is the lowest one
that at most 10% of calibration unanswerable questions exceed (Correct should rarely fire on a
question the corpus cannot answer, so those still reach external search). Finally the real
graph is run on the held-out half with the current and the recommended thresholds.

    python benchmarks/evaluator_calibration.py [--k 5]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphcraft.api import ingest
from graphcraft.chains.grade import LocalEvaluator
from graphcraft.chains.terms import content_terms, coverage, salient_terms
from graphcraft.config import get_settings
from graphcraft.eval import (
    SAMPLE_CORPUS,
    SAMPLE_EXTERNAL,
    Question,
    grade_result,
    load_questions,
    print_table,
    save_curve_plot,
    split_by_id,
)
from graphcraft.retrievers import make_retriever
from graphcraft.retrievers.external import StoreSearch
from graphcraft.stores.vector import open_store

OUT = Path(__file__).resolve().parent / "out"
ANSWERABLE = ("single", "paraphrase", "multi_hop")
NOT_IN_CORPUS = ("unanswerable", "external")
SIGNALS = ("strip", "strip_cos", "chunk", "coverage", "names")
MAX_UNANSWERABLE_ABOVE_UPPER = 0.10
GRID_STEP = 0.1
BOOTSTRAP = 2000
CURRENT_WEIGHTS = (0.5, 0.2, 0.3)  # LocalEvaluator's default


@dataclass
class QuestionSignals:
    question: Question
    positive: bool  # the corpus answers it
    docs: np.ndarray  # (k, len(SIGNALS)) per retrieved document

    def best(self, signal: str) -> float:
        return float(self.docs[:, SIGNALS.index(signal)].max()) if len(self.docs) else 0.0

    def combined(self, weights: Sequence[float]) -> float:
        """The evaluator's score of the best document (clipped to [0, 1] as it is).

        Three weights: (strip, chunk, coverage) as in LocalEvaluator; a fourth weights the
        candidate `names` signal.
        """
        if not len(self.docs):
            return 0.0
        cols = [SIGNALS.index(c) for c in ("strip", "chunk", "coverage", "names")[: len(weights)]]
        scores = self.docs[:, cols] @ np.asarray(weights, dtype=np.float64)
        return float(np.clip(scores, 0.0, 1.0).max())


# ----------------------------------------------------------------------------- measuring


def names_coverage(question: str, text: str) -> float:
    """Candidate signal: weighted share of the question's names and numbers found in the chunk (1 if it has none).

    Near-miss questions often ask about a name or year the corpus lacks (K5, 2019, Line 3).
    """
    names = {t: w for t, w in salient_terms(question).items() if w >= 2}
    return coverage(names, set(content_terms(text))) if names else 1.0


def collect(store, questions: list[Question], k: int) -> list[QuestionSignals]:  # type: ignore[no-untyped-def]
    """Retrieve like CRAG does and record the evaluator's signals per document."""
    evaluator = LocalEvaluator(store, store.embeddings)
    retriever = make_retriever("hybrid", store, k)
    out = []
    for q in questions:
        docs = retriever.search(q.question)
        qv = evaluator.query_vector(q.question)
        grading = evaluator.evaluate(q.question, docs, qv)
        rows = []
        for doc, parts in zip(docs, grading.details.get("signals", []), strict=False):
            _, strip_vecs = store.strips(doc)
            strip_cos = float((strip_vecs @ qv).max()) if strip_vecs is not None and len(strip_vecs) else parts["chunk"]
            rows.append(
                (
                    parts["strip"],
                    strip_cos,
                    parts["chunk"],
                    parts["coverage"],
                    names_coverage(q.question, doc.page_content),
                )
            )
        signals = QuestionSignals(q, q.type in ANSWERABLE, np.array(rows, dtype=np.float64).reshape(-1, len(SIGNALS)))
        # Guard: the recomputed combined score must match the evaluator's own (signals are rounded to 3 digits).
        if grading.scores and abs(signals.combined(evaluator.weights) - max(grading.scores)) > 2e-3:
            raise AssertionError(
                f"{q.id}: recomputed score {signals.combined(evaluator.weights)} != {max(grading.scores)}"
            )
        out.append(signals)
    return out


def roc_auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(score of an answerable question > score of an unanswerable one), ties count half."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def auc_interval(pos: Sequence[float], neg: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval (questions resampled within each class)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.asarray(pos), np.asarray(neg)
    values = [roc_auc(rng.choice(pos, pos.size), rng.choice(neg, neg.size)) for _ in range(BOOTSTRAP)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def tradeoff(pos: Sequence[float], neg: Sequence[float], thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(share of unanswerable abstained, share of answerable kept) when abstaining below each threshold."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    kept = np.array([(pos >= t).mean() for t in thresholds])
    abstained = np.array([(neg < t).mean() for t in thresholds])
    return abstained, kept


def best_lower(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Threshold maximising balanced accuracy (kept + abstained) / 2, midway between the scores it separates."""
    values = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    abstained, kept = tradeoff(pos, neg, cuts)
    balanced = (abstained + kept) / 2
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    return float(cuts[best[len(best) // 2]])


def upper_for(neg: Sequence[float], share: float = MAX_UNANSWERABLE_ABOVE_UPPER) -> float:
    """Lowest threshold that at most `share` of unanswerable questions score above."""
    neg = np.sort(np.asarray(neg))
    allowed = int(np.floor(share * neg.size))
    return round(float(neg[neg.size - allowed - 1]) + 1e-3, 3) if neg.size else 1.0


def weight_grid(n_weights: int = 3, step: float = GRID_STEP) -> list[tuple[float, ...]]:
    """All weight vectors on the simplex with the given step."""
    n = round(1 / step)
    return [
        tuple(round(c * step, 10) for c in combo) + (round(1 - sum(combo) * step, 10),)
        for combo in itertools.product(range(n + 1), repeat=n_weights - 1)
        if sum(combo) <= n
    ]


def split_scores(items: list[QuestionSignals], fn) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    return [fn(s) for s in items if s.positive], [fn(s) for s in items if not s.positive]


def at_threshold(pos: Sequence[float], neg: Sequence[float], t: float) -> dict:
    abstained, kept = tradeoff(pos, neg, [t])
    return {"kept": float(kept[0]), "abstained": float(abstained[0]), "balanced": float((kept[0] + abstained[0]) / 2)}


def fmt_w(w: Sequence[float]) -> str:
    return "/".join(f"{x:.1f}" for x in w)


# ----------------------------------------------------------------------------- end to end


def run_graph(store, external, questions: list[Question], upper: float, lower: float, strip: float) -> dict:  # type: ignore[no-untyped-def]
    """Offline CRAG on the questions; external questions count as answerable when an external store is given."""
    from graphcraft.graphs.crag import build

    settings = get_settings(
        store=store.path, upper_threshold=upper, lower_threshold=lower, strip_threshold=strip, chat_model=""
    )
    graph = build(settings=settings, store=store, external=external)
    rows = []
    for q in questions:
        state = graph.invoke({"question": q.question})
        expect = q.type == "unanswerable" or (q.type == "external" and external is None)
        rows.append(
            grade_result(
                q,
                {"answer": state["answer"], "sources": state["sources"], "trace": state["trace"]},
                expect_abstention=expect,
            )
            | {"action": state["trace"].get("action")}
        )

    def rate(sel, key="correct"):  # type: ignore[no-untyped-def]
        chosen = [r for r in rows if sel(r)]
        return sum(bool(r[key]) for r in chosen) / len(chosen) if chosen else None

    return {
        "corpus answer hit": rate(lambda r: r["type"] in ANSWERABLE),
        "corpus answers abstained": rate(lambda r: r["type"] in ANSWERABLE, "abstained"),
        "external hit" if external is not None else "external abstained": rate(lambda r: r["type"] == "external"),
        "unanswerable abstained": rate(lambda r: r["type"] == "unanswerable"),
        "Correct / Ambiguous / Incorrect": "/".join(
            str(sum(r["action"] == a for r in rows)) for a in ("correct", "ambiguous", "incorrect")
        ),
    }


# ----------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=get_settings().top_k, help="documents retrieved per question")
    args = parser.parse_args(argv)
    settings = get_settings()
    current_w = CURRENT_WEIGHTS
    current = (settings.upper_threshold, settings.lower_threshold, settings.strip_threshold)
    started = time.perf_counter()

    questions = load_questions(types=ANSWERABLE + NOT_IN_CORPUS)
    calibration, held_out = split_by_id(questions)
    with tempfile.TemporaryDirectory(prefix="gc-calib-") as tmp:
        report = ingest([SAMPLE_CORPUS], store=Path(tmp) / "corpus")
        ingest([SAMPLE_EXTERNAL], store=Path(tmp) / "external")
        store = open_store(Path(tmp) / "corpus", settings, create=False)
        cal, hold = collect(store, calibration, args.k), collect(store, held_out, args.k)
        print(
            f"corpus: {report['files']} files, {report['added']} chunks; questions: calibration {len(cal)} "
            f"({sum(s.positive for s in cal)} answerable / {sum(not s.positive for s in cal)} not in corpus), "
            f"held-out {len(hold)} "
            f"({sum(s.positive for s in hold)} / {sum(not s.positive for s in hold)}); "
            f"top-{args.k} hybrid documents each; "
            f"signal = best document's"
        )

        def auc_row(name: str, fn) -> dict:  # type: ignore[no-untyped-def]
            cp, cn = split_scores(cal, fn)
            hp, hn = split_scores(hold, fn)
            lo, hi = auc_interval(hp, hn)
            return {
                "signal": name,
                "AUC calib": roc_auc(cp, cn),
                "AUC held-out": roc_auc(hp, hn),
                "held-out 95% CI": f"{lo:.2f}-{hi:.2f}",
                "answerable (held-out)": f"{min(hp):.2f}-{max(hp):.2f}",
                "not in corpus (held-out)": f"{min(hn):.2f}-{max(hn):.2f}",
            }

        # 1. the weight grids, chosen on the calibration half only
        grids = {}
        for n_weights, label in ((3, "strip/chunk/cov"), (4, "strip/chunk/cov/names")):
            ranked = []
            for w in weight_grid(n_weights):
                cp, cn = split_scores(cal, lambda s, w=w: s.combined(w))
                ranked.append(
                    (roc_auc(cp, cn), -sum(abs(a - b) for a, b in zip(w, current_w + (0.0,), strict=False)), w)
                )
            ranked.sort(reverse=True)
            grids[label] = ranked
        best3, best4 = grids["strip/chunk/cov"][0][2], grids["strip/chunk/cov/names"][0][2]

        # 2. each signal alone, the current combination and the grid winners
        rows = [auc_row(name, lambda s, name=name: s.best(name)) for name in SIGNALS]
        rows[SIGNALS.index("names")]["signal"] = "names (candidate)"
        rows.append(auc_row(f"combined, current {fmt_w(current_w)}", lambda s: s.combined(current_w)))
        rows.append(auc_row(f"combined, grid best {fmt_w(best3)}", lambda s: s.combined(best3)))
        rows.append(auc_row(f"combined+names, grid best {fmt_w(best4)}", lambda s: s.combined(best4)))
        print_table(rows, title="Separation of answerable vs not-in-corpus questions (ROC AUC; 0.5 = none)")
        grid_rows = []
        for label, ranked in grids.items():
            for i, (auc, _, w) in enumerate(ranked[:3]):
                grid_rows.append(
                    {
                        "grid": label if i == 0 else "",
                        "rank": i + 1,
                        "weights": fmt_w(w),
                        "AUC calib": auc,
                        "AUC held-out": roc_auc(*split_scores(hold, lambda s, w=w: s.combined(w))),
                    }
                )
        rank_cur = next(i + 1 for i, g in enumerate(grids["strip/chunk/cov"]) if g[2] == current_w)
        grid_rows.append(
            {
                "grid": "strip/chunk/cov",
                "rank": rank_cur,
                "weights": f"{fmt_w(current_w)} (current)",
                "AUC calib": roc_auc(*split_scores(cal, lambda s: s.combined(current_w))),
                "AUC held-out": roc_auc(*split_scores(hold, lambda s: s.combined(current_w))),
            }
        )
        print_table(
            grid_rows,
            title=f"Weight grids (step {GRID_STEP}; {len(grids['strip/chunk/cov'])} and "
            f"{len(grids['strip/chunk/cov/names'])} combinations), ranked on the calibration half",
        )

        # 3. verdict on weights: a grid winner replaces the current weights only if the held-out half confirms it
        cur_hold = roc_auc(*split_scores(hold, lambda s: s.combined(current_w)))
        rec_w: tuple[float, ...] = current_w
        for w in (best3, best4):
            hp, hn = split_scores(hold, lambda s, w=w: s.combined(w))
            if (
                roc_auc(hp, hn) >= cur_hold + 0.05
                and auc_interval(hp, hn)[0] > 0.5
                and roc_auc(hp, hn) > roc_auc(*split_scores(hold, lambda s: s.combined(rec_w)))  # noqa: B023 - used at once
            ):
                rec_w = w
        confirmed = rec_w != current_w
        print(
            "weights: grid winner confirmed on the held-out half"
            if confirmed
            else "weights: no grid winner is confirmed on the held-out half "
            "(AUC gain < 0.05 or interval reaching 0.5): keep the current weights"
        )

        # 4. thresholds for the recommended weights: chosen on calibration, reported on held-out
        cp, cn = split_scores(cal, lambda s: s.combined(rec_w))
        hp, hn = split_scores(hold, lambda s: s.combined(rec_w))
        rec_low, rec_up = best_lower(cp, cn), upper_for(cn)
        trows = []
        for name, t in (
            (f"current lower {current[1]:.3f}", current[1]),
            (f"current upper {current[0]:.3f}", current[0]),
            (f"balanced-accuracy lower {rec_low:.3f}", rec_low),
            (f"10%-rule upper {rec_up:.3f}", rec_up),
        ):
            c, h = at_threshold(cp, cn, t), at_threshold(hp, hn, t)
            trows.append(
                {
                    "threshold": name,
                    "calib kept": c["kept"],
                    "calib abstained": c["abstained"],
                    "held-out kept": h["kept"],
                    "held-out abstained": h["abstained"],
                    "held-out balanced": h["balanced"],
                }
            )
        print_table(
            trows,
            title=f"Weights {fmt_w(rec_w)}: answerable questions at/above the threshold (kept) vs "
            "not-in-corpus questions below it (abstained, or not Correct for `upper`)",
        )
        per_type = []
        for t in ANSWERABLE + NOT_IN_CORPUS:
            vals = [s.combined(rec_w) for s in hold if s.question.type == t]
            per_type.append(
                {
                    "type": t,
                    "n": len(vals),
                    "median score": float(np.median(vals)),
                    "min": min(vals),
                    "max": max(vals),
                    f"> upper {current[0]:.2f}": float(np.mean([v > current[0] for v in vals])),
                    f"> upper {rec_up:.3f}": float(np.mean([v > rec_up for v in vals])),
                    f"< lower {current[1]:.2f}": float(np.mean([v < current[1] for v in vals])),
                }
            )
        print_table(
            per_type,
            title=f"Held-out half per type, weights {fmt_w(rec_w)}: share Correct (> upper) and Incorrect (< lower)",
        )

        # 5. the trade-off plot (held-out half)
        sweep = np.linspace(0.0, 1.0, 201)
        curves = {}
        for name, fn in [(n, lambda s, n=n: s.best(n)) for n in ("strip", "chunk", "coverage", "names")] + [
            (f"combined {fmt_w(current_w)} (current)", lambda s: s.combined(current_w)),
            (f"combined+names {fmt_w(best4)}", lambda s: s.combined(best4)),
        ]:
            php, phn = split_scores(hold, fn)
            x, y = tradeoff(php, phn, sweep)
            curves[f"{name}, AUC {roc_auc(php, phn):.2f}"] = (x.tolist(), y.tolist())
        cur, rec = at_threshold(hp, hn, current[1]), at_threshold(hp, hn, rec_low)
        png = save_curve_plot(
            curves,
            OUT / "evaluator_calibration.png",
            title="Local evaluator, held-out half: threshold sweep",
            xlabel="not-in-corpus questions abstained (share)",
            ylabel="answerable questions kept (share)",
            points={
                f"lower {current[1]:.2f} (current)": (cur["abstained"], cur["kept"]),
                f"lower {rec_low:.3f} (calibrated)": (rec["abstained"], rec["kept"]),
            },
            diagonal=True,
        )

        # 6. the real graph on the held-out half (the graph uses the current weights)
        external = StoreSearch(Path(tmp) / "external", settings)
        # `upper` only matters with an external source (offline, Correct and Ambiguous use the same knowledge).
        runs = [
            ("current", current, None),
            ("current", current, external),
            (f"upper {rec_up:.3f}", (max(rec_up, current[1]), current[1], current[2]), external),
        ]
        if not confirmed and abs(rec_low - current[1]) > 0.01:
            runs.append((f"lower {rec_low:.3f}", (max(current[0], rec_low), rec_low, current[2]), None))
        e2e = []
        for name, (up, low, strip), ext in runs:
            e2e.append(
                {
                    "thresholds (upper/lower/strip)": f"{name}: {up:.3f}/{low:.3f}/{strip:.2f}",
                    "external": "samples/external" if ext else "none",
                    **run_graph(store, ext, held_out, up, low, strip),
                }
            )
        print_table(e2e, title="Offline CRAG on the held-out half (extractive answers; current weights)")
        print(f"plot: {png}   total time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
