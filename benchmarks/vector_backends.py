"""FAISS vs Milvus (Milvus Lite) on the same real corpus: ingest time, query latency, identical results.

One public corpus (benchmarks/data/<name>/, see graphcraft.eval.corpora) is ingested into a
fresh store per backend; then, on its evaluation questions:

* vector search   store.search_by_vector for the question's (pre-computed) embedding, the two
                  backends interleaved question by question, order alternating per repeat;
                  per question the median over repeats, then p50/p95 over questions.
* hybrid top-k    the hybrid (BM25 + vector, RRF) retriever's top-k chunk ids on both stores.
* answers         offline CRAG through graphcraft.api.ask on both stores (local evaluator,
                  extractive answers): answer text, action and cited chunk ids compared, and
                  the ask latency p50/p95.

Ratios are Milvus / FAISS. Milvus Lite runs inside this process; a Milvus server is reached
over the network, so its latencies would add a round trip per search.

    python benchmarks/vector_backends.py [--corpus git_docs] [--questions 0] [--repeats 5] [--k 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from graphcraft import api
from graphcraft.config import get_settings
from graphcraft.eval.corpora import load_corpus
from graphcraft.eval.report import print_table
from graphcraft.models import get_embeddings
from graphcraft.retrievers import make_retriever
from graphcraft.stores.vector import ChunkStore, open_store

BACKENDS = ("faiss", "milvus")


def progress(message: str, started: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between order statistics."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def clear_query_cache() -> None:
    """Forget memoised query vectors (calibration and CRAG embed queries): neither backend gets the other's."""
    cache = getattr(get_embeddings(), "_query_cache", None)
    if cache is not None:
        cache.clear()


def ingest_all(files: list[str | Path], root: Path, rounds: int) -> tuple[dict[str, ChunkStore], dict[str, float]]:
    """Ingest the corpus into fresh stores, backends alternating first; the last stores and the median seconds."""
    seconds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    stores = {}
    for round_ in range(rounds):
        for backend in BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]:
            clear_query_cache()
            folder = root / f"{backend}-{round_}"
            start = time.perf_counter()
            report = api.ingest(files, store=folder, vector_backend=backend)
            seconds[backend].append(time.perf_counter() - start)
            stores[backend] = folder
            took = seconds[backend][-1]
            progress(f"{backend}: {report['added']} chunks from {report['files']} files in {took:.1f} s")
    opened = {b: open_store(stores[b], get_settings(vector_backend=b), create=False) for b in BACKENDS}
    return opened, {b: statistics.median(seconds[b]) for b in BACKENDS}


def search_latency(stores: dict[str, ChunkStore], vectors: list[list[float]], k: int, repeats: int) -> dict:
    """Per-question median search time (ms) per backend, interleaved, after one warm-up pass."""
    for backend in BACKENDS:
        for vector in vectors:
            stores[backend].search_by_vector(vector, k)
    times: dict[str, list[list[float]]] = {b: [[] for _ in vectors] for b in BACKENDS}
    for repeat in range(repeats):
        order = BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]
        for i, vector in enumerate(vectors):
            for backend in order:
                start = time.perf_counter()
                stores[backend].search_by_vector(vector, k)
                times[backend][i].append((time.perf_counter() - start) * 1000)
    return {b: [statistics.median(t) for t in times[b]] for b in BACKENDS}


def same_top_k(stores: dict[str, ChunkStore], questions: list[str], vectors: list[list[float]], k: int) -> dict:
    """How many questions get the same vector and hybrid top-k ids on both backends, and the largest score gap."""
    vector_same = hybrid_same = 0
    gap = 0.0
    hybrids = {b: make_retriever("hybrid", stores[b], k=k) for b in BACKENDS}
    for question, vector in zip(questions, vectors, strict=True):
        hits = {b: stores[b].search_by_vector(vector, k) for b in BACKENDS}
        ids = {b: [d.id for d, _ in hits[b]] for b in BACKENDS}
        vector_same += ids["faiss"] == ids["milvus"]
        if ids["faiss"] == ids["milvus"]:
            gap = max([gap, *(abs(a[1] - b[1]) for a, b in zip(hits["faiss"], hits["milvus"], strict=True))])
        fused = {b: [d.metadata.get("chunk_id") for d in hybrids[b].invoke(question)] for b in BACKENDS}
        hybrid_same += fused["faiss"] == fused["milvus"]
    return {"vector": vector_same, "hybrid": hybrid_same, "score_gap": gap}


def answers(stores: dict[str, ChunkStore], questions: list[str]) -> dict:
    """Offline CRAG on both stores: identical answers (text, action, cited chunks) and ask latency (ms)."""
    same, latency, differ = 0, {b: [] for b in BACKENDS}, []  # type: ignore[var-annotated]
    for backend in BACKENDS:  # warm-up: the first run of a graph builds it
        api.ask(questions[0], graph="crag", store=stores[backend].path, vector_backend=backend)
    for question in questions:
        result: dict[str, Any] = {}
        for backend in BACKENDS:
            clear_query_cache()
            start = time.perf_counter()
            out = api.ask(question, graph="crag", store=stores[backend].path, vector_backend=backend)
            latency[backend].append((time.perf_counter() - start) * 1000)
            result[backend] = (out["answer"], out["trace"].get("action"), [s["chunk_id"] for s in out["sources"]])
        if result["faiss"] == result["milvus"]:
            same += 1
        else:
            differ.append(question)
    return {"same": same, "latency": latency, "differ": differ}


def latency_row(name: str, ms: dict[str, list[float]]) -> dict:
    p50 = {b: percentile(ms[b], 0.5) for b in BACKENDS}
    p95 = {b: percentile(ms[b], 0.95) for b in BACKENDS}
    return {
        "measure": name,
        "faiss p50 ms": p50["faiss"],
        "milvus p50 ms": p50["milvus"],
        "ratio p50": p50["milvus"] / p50["faiss"],
        "faiss p95 ms": p95["faiss"],
        "milvus p95 ms": p95["milvus"],
        "ratio p95": p95["milvus"] / p95["faiss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="git_docs", help="a corpus under benchmarks/data/")
    parser.add_argument("--questions", type=int, default=0, help="use only the first N questions (0 = all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--ingest-rounds", type=int, default=2, help="fresh ingests per backend (median)")
    args = parser.parse_args()

    corpus = load_corpus(args.corpus)
    questions = [q.question for q in corpus.questions()]
    questions = questions[: args.questions] if args.questions else questions
    embeddings = get_embeddings()
    with tempfile.TemporaryDirectory(prefix="vector-backends-") as tmp:
        root = Path(tmp)
        files: list[str | Path] = list(corpus.materialize(root / "corpus"))
        progress("warm-up: loading the models with one file into a throw-away store")
        api.ingest(files[:1], store=root / "warm-up")
        stores, ingest_s = ingest_all(files, root, args.ingest_rounds)
        vectors = [list(map(float, embeddings.embed_query(q))) for q in questions]
        progress(f"searching {len(questions)} questions x {args.repeats} repeats")
        search_ms = search_latency(stores, vectors, args.k, args.repeats)
        parity = same_top_k(stores, questions, vectors, args.k)
        progress("asking CRAG on both stores")
        asked = answers(stores, questions)
    n = len(questions)
    print(f"\ncorpus {corpus.name}: {len(files)} files, {len(stores['faiss'])} chunks, {n} questions, k={args.k}")
    print_table(
        [
            {
                "measure": "ingest s",
                "faiss": ingest_s["faiss"],
                "milvus": ingest_s["milvus"],
                "ratio": ingest_s["milvus"] / ingest_s["faiss"],
            }
        ],  # fmt: skip
        title=f"Ingest (fresh store, includes calibration; median of {args.ingest_rounds})",
    )
    print_table([latency_row("vector search", search_ms), latency_row("crag ask", asked["latency"])],
                title="Query latency (Milvus / FAISS)")  # fmt: skip
    print_table(
        [
            {"compared": f"vector top-{args.k} ids", "identical": f"{parity['vector']}/{n}"},
            {"compared": f"hybrid top-{args.k} ids", "identical": f"{parity['hybrid']}/{n}"},
            {"compared": "crag answers (text, action, cited chunks)", "identical": f"{asked['same']}/{n}"},
            {"compared": "largest score difference", "identical": f"{parity['score_gap']:.2e}"},
        ],
        title="Same results on both backends",
    )
    for question in asked["differ"]:
        print(f"answers differ: {question}")


if __name__ == "__main__":
    main()
