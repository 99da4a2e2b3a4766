"""Graph RAG benchmark: indexing speed and cost, and two-hop retrieval vs the vector-only retriever.

    python benchmarks/graph_rag.py [--store DIR] [--corpus samples/corpus] [--k 5] [--json]

Ingests the Lindqvar sample corpus (skipped when the store already has it), builds the entity
graph from scratch (offline: spaCy + extractive summaries), and prints side by side:

- indexing: chunks, chunks per second, LLM calls per chunk (0 offline), entities, relations,
  communities and levels;
- retrieval on the multi-hop questions of samples/questions.jsonl: the answer hit rate
  (every answer keyword group found in the top-k chunks) and the gold-source recall (share of
  the questions' gold documents among the top-k chunks) for the vector-only retriever, the
  hybrid (vector + BM25) retriever and graph local search fused with each of them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("*", "")).strip().lower()


def answer_hit(docs: list, groups: list) -> bool:
    text = normalise(" ".join(d.page_content for d in docs))
    groups = [[g] if isinstance(g, str) else g for g in groups]
    return all(any(normalise(alt) in text for alt in group) for group in groups)


def source_recall(docs: list, gold: list[str]) -> float:
    found = {Path(str(d.metadata.get("source", ""))).name for d in docs}
    return sum(g in found for g in gold) / len(gold) if gold else 0.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="store directory (default: a temporary one)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "samples" / "corpus")
    parser.add_argument("--questions", type=Path, default=ROOT / "samples" / "questions.jsonl")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10], help="top-k values to evaluate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from graphcraft import api
    from graphcraft.graph_index import api as graph_api
    from graphcraft.retrievers import make_retriever
    from graphcraft.retrievers.graph import GraphRetriever
    from graphcraft.stores.vector import open_store

    temp = None
    store = args.store
    if store is None:
        temp = Path(tempfile.mkdtemp(prefix="graphcraft-bench-"))
        store = temp / "store"
    try:
        t0 = time.perf_counter()
        ingest = api.ingest([str(args.corpus)], store=store)
        ingest_s = time.perf_counter() - t0
        shutil.rmtree(Path(store) / "graph", ignore_errors=True)  # measure extraction too, not the cache
        report = graph_api.build(store, force=True)
        # a second build on unchanged chunks: must write nothing
        again = graph_api.build(store)

        chunk_store = open_store(store, create=False)
        graph_store = graph_api.open_graph(store)
        questions = [
            json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        multi = [q for q in questions if q["type"] == "multi_hop"]

        def systems(k: int) -> dict:
            return {
                "vector": make_retriever("vector", chunk_store, k),
                "hybrid": make_retriever("hybrid", chunk_store, k),
                "graph+vector": GraphRetriever(
                    graph_store=graph_store,
                    chunk_store=chunk_store,
                    embeddings=chunk_store.embeddings,
                    k=k,
                    base="vector",
                ),
                "graph+hybrid": GraphRetriever(
                    graph_store=graph_store,
                    chunk_store=chunk_store,
                    embeddings=chunk_store.embeddings,
                    k=k,
                    base="hybrid",
                ),
            }

        results: dict[str, dict] = {}
        per_question: list[dict] = [{"id": q["id"], "question": q["question"]} for q in multi]
        for k in args.k:
            for name, retriever in systems(k).items():
                hits, recall, seconds = 0, 0.0, 0.0
                for i, q in enumerate(multi):
                    start = time.perf_counter()
                    docs = retriever.search(q["question"], k)
                    seconds += time.perf_counter() - start
                    hit = answer_hit(docs, q["answer_keywords"])
                    hits += hit
                    recall += source_recall(docs, q["gold_sources"])
                    per_question[i][f"{name}@{k}"] = hit
                results.setdefault(name, {})[f"top{k}"] = {
                    "answer_hit_rate": round(hits / len(multi), 3),
                    "gold_source_recall": round(recall / len(multi), 3),
                    "ms_per_query": round(1000 * seconds / len(multi), 1),
                }
        graph_store.close()
        out = {
            "corpus": str(args.corpus),
            "k": args.k,
            "ingest": {"chunks": ingest["added"], "seconds": round(ingest_s, 1)},
            "indexing": {
                "chunks": report.chunks,
                "seconds": round(report.seconds, 2),
                "chunks_per_second": round(report.chunks / report.seconds, 2) if report.seconds else 0.0,
                "llm_calls": report.llm_calls,
                "llm_calls_per_chunk": round(report.llm_calls / report.chunks, 3) if report.chunks else 0.0,
                "entities": report.entities,
                "relations": report.relations,
                "communities": report.communities,
                "levels": report.levels,
                "rebuild_unchanged": again.unchanged,
                "rebuild_seconds": round(again.seconds, 3),
            },
            "two_hop": {"questions": len(multi), **results},
            "per_question": per_question,
        }
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)

    if args.json:
        print(json.dumps(out, indent=1))
        return out
    ix = out["indexing"]
    print(
        f"indexing  {ix['chunks']} chunks in {ix['seconds']} s = {ix['chunks_per_second']} chunks/s, "
        f"LLM calls per chunk {ix['llm_calls_per_chunk']} ({ix['llm_calls']} calls)"
    )
    print(
        f"          {ix['entities']} entities, {ix['relations']} relations, {ix['communities']} communities on "
        f"{ix['levels']} levels; rebuild unchanged: {ix['rebuild_unchanged']} ({ix['rebuild_seconds']} s)"
    )
    print(
        f"\ntwo-hop questions: {len(multi)} (answer hit = every answer keyword group in the top-k chunks; "
        f"recall = share of gold documents in the top-k)"
    )
    header = "".join(f"{f'hit@{k}':>9}{f'recall@{k}':>11}" for k in args.k)
    print(f"{'retriever':<14}{header}{'ms/query':>10}")
    for name, by_k in results.items():
        cells = "".join(
            f"{by_k[f'top{k}']['answer_hit_rate']:>9.3f}{by_k[f'top{k}']['gold_source_recall']:>11.3f}" for k in args.k
        )
        print(f"{name:<14}{cells}{by_k[f'top{args.k[0]}']['ms_per_query']:>10.1f}")
    return out


if __name__ == "__main__":
    main()
