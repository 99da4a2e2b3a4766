"""Answer quality on public corpora: every RAG graph against the retriever it wraps.

For each corpus (benchmarks/data/*/corpus.json: Debian's Python and PostgreSQL manuals) the
pages are ingested once (incrementally, into benchmarks/out/stores/), then the bare hybrid
retriever and each graph answer the corpus' questions. Printed per corpus and per half
(`tune`: even ids, used to choose thresholds and heuristics; `heldout`: odd ids, only reported):

    retr      answerable questions whose keywords are in the retriever's top 5 chunks
    cont      ... in the graph's answer or the sources it cites (and it did not abstain)
    ratio     cont / retr (target >= 1.0)
    text|r    answer text holds the keywords, among questions the retriever can answer (CRAG >= 0.75)
    fabst     false abstention on answerable questions (<= 0.10)
    2hop      two-hop containment: retriever, graph, ratio (multihop >= 1.5)
    uabst     abstention on unanswerable questions (>= 0.50)
    calls, tok, s/q   LLM calls, tokens and seconds per question

    python benchmarks/answer_quality.py                           # every corpus, offline, held-out half
    python benchmarks/answer_quality.py --half tune --graphs crag  # while tuning
    python benchmarks/answer_quality.py --llm                      # with GRAPHCRAFT_CHAT_MODEL (e.g. local)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"

RAG_GRAPHS = ["crag", "self_rag", "adaptive_rag", "router", "multihop", "hierarchical_rag", "graph_rag"]
COLUMNS = [
    ("retr", "retriever"),
    ("cont", "contains"),
    ("ratio", "ratio"),
    ("text|r", "answer_text_given_retrieved"),
    ("fabst", "false_abstention"),
    ("2h.r", "two_hop_retriever"),
    ("2h.g", "two_hop_contains"),
    ("2h.x", "two_hop_ratio"),
    ("uabst", "unanswerable_abstention"),
    ("calls", "llm_calls"),
    ("tok", "tokens"),
    ("s/q", "seconds"),
    ("fb", "fallbacks"),
]


def corpus_pages(name: str) -> tuple[list[Path], list]:
    """(files to ingest, questions) of a corpus; 'samples' is the shipped demo corpus."""
    from graphcraft.eval import SAMPLE_CORPUS, load_questions
    from graphcraft.eval.corpora import load_corpus

    if name == "samples":
        return [SAMPLE_CORPUS], load_questions()
    corpus = load_corpus(name)
    return corpus.materialize(OUT / "corpora" / name), corpus.questions()


def select(questions: list, half: str, limit: int) -> list:
    from graphcraft.eval import split_by_id

    tune, heldout = split_by_id(questions)
    chosen = {"tune": tune, "heldout": heldout, "all": questions}[half]
    if limit:
        per_kind: dict[str, int] = {}
        kept = []
        for q in chosen:
            per_kind[q.type] = per_kind.get(q.type, 0) + 1
            if per_kind[q.type] <= limit:
                kept.append(q)
        chosen = kept
    return chosen


def run_corpus(name: str, graphs: list[str], half: str, limit: int, llm: bool) -> list:
    import graphcraft
    from graphcraft.api import build_graph
    from graphcraft.eval.quality import evaluate_graph, summarize_quality
    from graphcraft.models import get_chat_model
    from graphcraft.retrievers import make_retriever
    from graphcraft.stores.vector import open_store

    files, questions = corpus_pages(name)
    store = OUT / "stores" / name
    start = time.perf_counter()
    report = graphcraft.ingest(files, store=store)
    print(
        f"[{name}] ingest: {report['added']} chunks added, {report['skipped']} files unchanged, "
        f"{len(report['failed'])} failed ({time.perf_counter() - start:.0f} s)",
        file=sys.stderr,
    )
    questions = select(questions, half, limit)
    chunk_store = open_store(store, create=False)
    retriever = make_retriever("hybrid", chunk_store, 5)
    retrieved = {q.id: [d.page_content for d in retriever.search(q.question)] for q in questions}
    model = get_chat_model() if llm else None
    if llm and model is None:
        raise SystemExit("--llm needs GRAPHCRAFT_CHAT_MODEL (for example 'local')")
    summaries = []
    for graph in graphs:
        if graph == "graph_rag":
            from graphcraft.graph_index.api import build as build_entity_graph

            build_entity_graph(store, model=model)
        compiled = build_graph(
            graph, model=model, store=store, **({"log_runs": False} if graph == "adaptive_rag" else {})
        )
        ask = lambda question, g=compiled: g.invoke({"question": question})  # noqa: E731
        start = time.perf_counter()
        rows = evaluate_graph(graph, ask, questions, retrieved)
        errors = [r for r in rows if r["error"]]
        for r in errors[:3]:
            print(f"[{name}] {graph} {r['id']}: {r['error']}", file=sys.stderr)
        summary = summarize_quality(graph, rows)
        summaries.append((summary, rows))
        print(
            f"[{name}] {graph}: {len(rows)} questions in {time.perf_counter() - start:.0f} s, {len(errors)} errors",
            file=sys.stderr,
        )
    return summaries


def table(name: str, half: str, summaries: list) -> str:
    if not summaries:
        return ""
    n = summaries[0][0].n
    head = (
        f"\n{name} ({half} half: {n['answerable']} answerable, {n['two_hop']} two-hop, "
        f"{n['unanswerable']} unanswerable; retriever = hybrid top 5)\n"
    )
    lines = [f"{'graph':<17}" + "".join(f"{c:>7}" for c, _ in COLUMNS)]
    for s, _ in summaries:
        d = s.as_dict()
        cells = []
        for _, key in COLUMNS:
            v = d[key]
            cells.append(f"{'-':>7}" if v is None else f"{v:>7.0f}" if key in ("tokens", "fallbacks") else f"{v:>7.2f}")
        lines.append(f"{s.graph:<17}" + "".join(cells))
    return head + "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Retriever vs graph containment and abstention on unanswerable, per corpus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (name, summaries) in zip(axes[0], results.items(), strict=False):
        graphs = [s["graph"] for s in summaries]
        x = range(len(graphs))
        ax.bar([i - 0.27 for i in x], [s["retriever"] for s in summaries], 0.27, label="retriever top 5")
        ax.bar(list(x), [s["contains"] for s in summaries], 0.27, label="graph: answer or cited sources")
        ax.bar(
            [i + 0.27 for i in x],
            [s["unanswerable_abstention"] for s in summaries],
            0.27,
            label="abstains on unanswerable",
        )
        ax.set_xticks(list(x), graphs, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(name)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    from graphcraft.eval.corpora import available_corpora

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--corpus", default="", help="comma-separated corpora (default: every public corpus; 'samples' = demo)"
    )
    parser.add_argument("--graphs", default=",".join(RAG_GRAPHS), help="comma-separated graphs")
    parser.add_argument("--half", choices=["tune", "heldout", "all"], default="heldout")
    parser.add_argument("--limit", type=int, default=0, help="questions per type (0 = all)")
    parser.add_argument("--llm", action="store_true", help="use the configured chat model")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    corpora = args.corpus.split(",") if args.corpus else available_corpora()
    results = {}
    for name in corpora:
        summaries = run_corpus(name, args.graphs.split(","), args.half, args.limit, args.llm)
        print(table(name, args.half, summaries), flush=True)
        results[name] = [s.as_dict() for s, _ in summaries]
        tag = f"{name}_{args.half}{'_llm' if args.llm else ''}"
        (OUT / f"answer_quality_{tag}.json").write_text(
            json.dumps({"summary": results[name], "rows": [r for _, rows in summaries for r in rows]}, indent=1),
            encoding="utf-8",
        )
    if results:
        path = OUT / f"answer_quality_{args.half}{'_llm' if args.llm else ''}.png"
        plot(results, path)
        print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
