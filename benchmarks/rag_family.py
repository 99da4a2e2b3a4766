"""The RAG family side by side on samples/questions.jsonl.

For each graph (crag, self_rag, adaptive_rag, router, multihop, hierarchical_rag, when present)
and the bare hybrid retriever: answer hit rate (samples/README.md keyword grading; abstention
for unanswerable questions), retrieval recall@5 (gold source files among the first five distinct
sources cited, or retrieved for the bare retriever), LLM calls and tokens per question, seconds
per question; overall and per question type.

    python benchmarks/rag_family.py                 # offline, 2 questions per type (~2-3 min on 2 busy cores)
    python benchmarks/rag_family.py --limit 0       # every question
    python benchmarks/rag_family.py --llm           # with the configured GRAPHCRAFT_CHAT_MODEL

The bare retriever has no answer: its "hit" is whether the keywords occur in its top five
chunks, an upper bound for any answer built on them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRAPHS = ["crag", "self_rag", "adaptive_rag", "router", "multihop", "hierarchical_rag"]
ABSTENTIONS = ("not found in the sources", "needs a chat model", "i don't know", "needs the model's own knowledge")


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("*", "")).strip().lower()


def is_hit(answer: str, question: dict) -> bool:
    if question["type"] == "unanswerable":
        return any(a in normalize(answer) for a in ABSTENTIONS)
    groups = [[g] if isinstance(g, str) else g for g in question["answer_keywords"]]
    text = normalize(answer)
    return all(any(normalize(alt) in text for alt in group) for group in groups)


def recall_at_5(sources: list[str], gold: list[str]) -> float | None:
    if not gold:
        return None
    names = list(dict.fromkeys(Path(s).name for s in sources))[:5]
    return sum(g in names for g in gold) / len(gold)


def load_questions(limit: int, types: set[str] | None) -> list[dict]:
    questions = [json.loads(line) for line in (ROOT / "samples" / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    if types:
        questions = [q for q in questions if q["type"] in types]
    if limit > 0:
        per_type: dict[str, int] = defaultdict(int)
        kept = []
        for q in questions:
            if per_type[q["type"]] < limit:
                per_type[q["type"]] += 1
                kept.append(q)
        questions = kept
    return questions


def prepare_store(store: Path) -> None:
    from graphcraft.api import ingest

    report = ingest([ROOT / "samples" / "corpus"], store=store)
    print(f"store {store}: {report['added']} chunks added, {report['skipped']} files unchanged", file=sys.stderr)


def run(args: argparse.Namespace) -> dict[str, list[dict]]:
    from graphcraft.api import build_graph
    from graphcraft.graphs import available_graphs
    from graphcraft.models import get_chat_model
    from graphcraft.retrievers import HybridRetriever
    from graphcraft.stores.vector import open_store

    model = get_chat_model() if args.llm else None
    if args.llm and model is None:
        raise SystemExit("--llm needs GRAPHCRAFT_CHAT_MODEL (and GRAPHCRAFT_BASE_URL for a local server)")
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="rag_family_")) / "store"
    prepare_store(store)
    external = ROOT / "samples" / "external"
    ext_store = store.parent / "external_store"
    from graphcraft.api import ingest

    ingest([external], store=ext_store)
    questions = load_questions(args.limit, set(args.types.split(",")) if args.types else None)
    names = [g for g in (args.graphs.split(",") if args.graphs else GRAPHS) if g in available_graphs()]
    results: dict[str, list[dict]] = defaultdict(list)

    chunk_store = open_store(store, create=False)
    retriever = HybridRetriever(store=chunk_store, k=5)
    retriever.search("warm-up")
    for q in questions:
        start = time.perf_counter()
        docs = retriever.search(q["question"])
        results["hybrid retriever"].append({"type": q["type"], "hit": is_hit(" ".join(d.page_content for d in docs), q),
                                            "recall": recall_at_5([d.metadata["source"] for d in docs], q["gold_sources"]),
                                            "llm_calls": 0, "tokens": 0, "seconds": time.perf_counter() - start})
    for name in names:
        options = {"external_store": ext_store} if name == "crag" else {}
        if name == "adaptive_rag":
            options["log_runs"] = False
        graph = build_graph(name, model=model, store=store, **options)
        graph.invoke({"question": "warm-up: what is this collection about?"})  # loads models and indexes, untimed
        chunk_store.embeddings._query_cache.clear()  # each graph pays for embedding its own queries
        for i, q in enumerate(questions):
            start = time.perf_counter()
            try:
                out = graph.invoke({"question": q["question"]})
                answer, trace = out.get("answer", ""), out.get("trace", {})
                sources = [s.get("source", "") for s in out.get("sources", [])]
            except Exception as exc:  # noqa: BLE001 - a failing graph is a result, not a crash of the benchmark
                answer, trace, sources = f"error: {exc}", {}, []
                print(f"\n{name} failed on {q['id']}: {exc}", file=sys.stderr)
            results[name].append({"type": q["type"], "hit": is_hit(answer, q), "recall": recall_at_5(sources, q["gold_sources"]),
                                  "llm_calls": trace.get("llm_calls", 0), "tokens": trace.get("prompt_tokens", 0) + trace.get("completion_tokens", 0),
                                  "seconds": time.perf_counter() - start, "strategy": trace.get("strategy") or trace.get("route")})
        print(f"{name}: {len(questions)} questions done", file=sys.stderr)
    return results


def summarize(rows: list[dict]) -> dict[str, float]:
    recalls = [r["recall"] for r in rows if r["recall"] is not None]
    n = max(1, len(rows))
    return {"hit": sum(r["hit"] for r in rows) / n, "recall@5": sum(recalls) / len(recalls) if recalls else float("nan"),
            "llm_calls": sum(r["llm_calls"] for r in rows) / n, "tokens": sum(r["tokens"] for r in rows) / n,
            "seconds": sum(r["seconds"] for r in rows) / n}


def report(results: dict[str, list[dict]]) -> str:
    types = sorted({r["type"] for rows in results.values() for r in rows})
    lines = [f"{'graph':<18}{'hit':>6}{'rec@5':>7}{'calls':>7}{'tokens':>8}{'s/q':>7}  " + " ".join(f"{t[:9]:>9}" for t in types)]
    for name, rows in results.items():
        s = summarize(rows)
        per_type = []
        for t in types:
            sub = [r for r in rows if r["type"] == t]
            per_type.append(f"{sum(r['hit'] for r in sub):>4}/{len(sub):<4}" if sub else f"{'-':>9}")
        lines.append(f"{name:<18}{s['hit']:>6.2f}{s['recall@5']:>7.2f}{s['llm_calls']:>7.1f}{s['tokens']:>8.0f}{s['seconds']:>7.2f}  "
                     + " ".join(per_type))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2, help="questions per type (0 = all)")
    parser.add_argument("--types", default="", help="comma-separated question types (default: all)")
    parser.add_argument("--graphs", default="", help="comma-separated graphs (default: the RAG family)")
    parser.add_argument("--store", default="", help="store directory (default: a fresh temporary one)")
    parser.add_argument("--llm", action="store_true", help="use the configured chat model")
    parser.add_argument("--json", default="", help="also write per-question rows to this JSON file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(args)
    print(report(results))
    print(f"\n{len(next(iter(results.values())))} questions, {time.perf_counter() - start:.0f} s total; hit = keyword grading "
          "(abstention for unanswerable), rec@5 = gold files among the first 5 distinct sources")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
