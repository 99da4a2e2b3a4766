"""A/B comparison of two settings variants on the same questions, with a paired significance test.

Variants are written as ``"top_k=3"`` or ``"top_k=3,max_llm_calls=4"``: Settings fields (validated
like GRAPHCRAFT_* variables) and the graph's own build options.

The test is a paired sign-flip permutation test of the mean per-question difference
(`scipy.stats.permutation_test`, ``permutation_type="samples"``). Why not Wilcoxon's signed-rank
test: most metrics here are 0/1 or take a handful of values, so the per-question differences are
mostly zeros and ties, which Wilcoxon drops or corrects approximately; the permutation test uses
them as they are, assumes no distribution, and is exact (all 2^n sign patterns) up to n = 13
questions, with a seeded Monte Carlo of 9,999 resamples beyond.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graphcraft.errors import GraphcraftError

EXACT_RESAMPLES = 9999
SEED = 20240601


RESERVED = frozenset({"store", "graph", "model", "config", "settings", "thread_id", "user_id", "question"})
"""What `ask` takes itself, not as an option: a variant that changed them would not be a paired comparison."""


class VariantError(GraphcraftError):
    """An A/B variant is not a list of name=value settings."""


_PAIR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _value(text: str) -> Any:
    """A JSON value where the text is one (3, 0.5, true), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_variant(text: str) -> dict[str, Any]:
    """``"top_k=3, evaluator=llm"`` as {"top_k": 3, "evaluator": "llm"} (checked by `check_variant`)."""
    options: dict[str, Any] = {}
    for part in (p for p in re.split(r"[,;]", text) if p.strip()):
        match = _PAIR.match(part)
        if match is None:
            raise VariantError(f"A/B variant {text!r}: expected name=value pairs separated by commas, got {part!r}")
        options[match.group(1)] = _value(match.group(2))
    if not options:
        raise VariantError(f"A/B variant {text!r} sets nothing: give name=value, e.g. top_k=3")
    return options


def check_variant(options: Mapping[str, Any], graphs: Sequence[str], store: Any) -> dict[str, Any]:
    """The variant's options, each a Settings field or a build option of every graph; values validated.

    `ask` leaves out options a graph's build() does not name, so an unchecked typo would silently
    compare a setting with itself.
    """
    from graphcraft.api import settings_for
    from graphcraft.config import Settings
    from graphcraft.graphs import load_graph_module

    for name in options:
        if name in RESERVED:
            raise VariantError(f"A/B option {name!r} cannot vary: both variants run on the same {name}")
        if name in Settings.model_fields:
            continue
        for graph in graphs:
            if name not in inspect.signature(load_graph_module(graph).build).parameters:
                raise VariantError(f"A/B option {name!r} is neither a setting nor an option of graph {graph!r}")
    settings_for(store, **{k: v for k, v in options.items() if k in Settings.model_fields})  # SettingsError if bad
    return dict(options)


def check_variants(variants: Sequence[str], graphs: Sequence[str], store: Any) -> list[dict[str, Any]]:
    """Each variant string parsed and checked (`parse_variant`, `check_variant`): one-line errors before any run."""
    return [check_variant(parse_variant(v), graphs, store) for v in variants]


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value that the mean of b - a is zero (paired sign-flip permutation test, see module)."""
    import numpy as np
    from scipy.stats import permutation_test

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or np.allclose(x, y):  # one pair: both signs are as extreme, so p = 1 exactly
        return 1.0

    def mean_difference(u: Any, v: Any, axis: int) -> Any:
        return np.mean(v - u, axis=axis)

    result = permutation_test(
        (x, y),
        mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=EXACT_RESAMPLES,
        alternative="two-sided",
        rng=np.random.default_rng(SEED),
    )
    return float(min(1.0, result.pvalue))


def compare(
    rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Per graph and metric: means of A and B over the questions where both have a value, B - A, p-value."""
    by_key = {(r["graph"], r["id"]): r for r in rows_b}
    out = []
    for graph in dict.fromkeys(r["graph"] for r in rows_a):
        pairs = [(r, by_key.get((graph, r["id"]))) for r in rows_a if r["graph"] == graph]
        for metric in metrics:
            both = [
                (float(ra[metric]), float(rb[metric]))
                for ra, rb in pairs
                if rb is not None and ra.get(metric) is not None and rb.get(metric) is not None
            ]
            if not both:
                continue
            a, b = [p[0] for p in both], [p[1] for p in both]
            mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
            out.append(
                {
                    "graph": graph,
                    "metric": metric,
                    "n": len(both),
                    "a": mean_a,
                    "b": mean_b,
                    "difference": mean_b - mean_a,
                    "p_value": paired_p_value(a, b),
                }
            )
    return out


TEST_NAME = "paired sign-flip permutation test of the mean difference (scipy.stats.permutation_test), two-sided"
COST_METRICS = ("llm_calls", "tokens", "cost", "latency_s")


def ab_test(
    items: Sequence[Any],
    graphs: Sequence[str],
    store: Any,
    variants: tuple[str, str],
    *,
    k: int = 5,
    judge_model: Any = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Run both variants (``"top_k=3"``-style strings) on the same items; summaries labelled A and B and,
    per graph and metric, the paired comparison. Progress counts both variants' runs."""
    from graphcraft.eval.harness import QUALITY_METRICS, evaluate, summarize

    options = check_variants(variants, graphs, store)
    per_question, rows = [], []
    for index, (name, text, opts) in enumerate(zip("AB", variants, options, strict=True)):

        def advance(done: int, total: int, current: str, index: int = index, name: str = name) -> None:
            if on_progress is not None:
                on_progress(done + index * total, 2 * total, f"{name}: {current}")

        scored = evaluate(items, graphs, store, k=k, judge_model=judge_model, options=opts, on_progress=advance)
        per_question.append(scored)
        for summary in summarize(scored):
            rows.append({**summary, "variant": name, "settings": text, "label": f"{summary['graph']} {name}"})
    return {
        "rows": rows,
        "ab": compare(per_question[0], per_question[1], [*QUALITY_METRICS, *COST_METRICS]),
        "variants": {"A": variants[0], "B": variants[1]},
        "test": TEST_NAME,
    }
