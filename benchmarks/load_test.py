"""Load test on loopback: N concurrent LangGraph SDK clients against `langgraph dev` for a fixed time.

Serves this repository's langgraph.json with `langgraph dev`, ingests a real public corpus
(benchmarks/data/<corpus>, Debian's documentation) into a temporary store, and runs one offline
graph (CRAG by default) from N client threads at once, each asking the corpus's questions in turn
for --seconds. Prints throughput, latency percentiles and errors, and, side by side, the same
graph answering in-process through `graphcraft.ask` one question at a time, as a ratio: what the
server, its HTTP hops and its queue add on this machine (a shared, noisy machine: read ratios,
not absolute seconds).

    python benchmarks/load_test.py [--clients 4] [--seconds 60] [--graph crag] [--corpus git_docs]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_clients(url: str, graph: str, store: Path, questions: list[str], clients: int, seconds: float) -> dict:
    """Each client asks questions in turn (starting at a different one) until time is up; every call's latency."""
    from langgraph_sdk import get_sync_client

    latencies: list[float] = []
    errors: list[str] = []
    answers: dict[str, str] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        sdk = get_sync_client(url=url, timeout=300)
        i = offset
        while time.monotonic() < stop_at:
            question = questions[i % len(questions)]
            i += 1
            started = time.perf_counter()
            try:
                out = sdk.runs.wait(
                    None, graph, input={"question": question}, config={"configurable": {"store": str(store)}}
                )
                ok = isinstance(out, dict) and bool(out.get("answer"))
                problem = "" if ok else f"unexpected reply {str(out)[:120]}"
                if ok:
                    answers.setdefault(question, out["answer"])
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown, none ends the test
                problem = f"{type(exc).__name__}: {str(exc)[:120]}"
            elapsed = time.perf_counter() - started
            with lock:
                (errors.append(problem) if problem else latencies.append(elapsed))

    threads = [threading.Thread(target=client, args=(n * 7,)) for n in range(clients)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "answers": answers, "wall_s": time.perf_counter() - wall}


def in_process(graph: str, store: Path, questions: list[str], count: int) -> dict[str, Any]:
    """The same graph in this process, one question at a time (after a warm-up): compiled once and reused,
    as the server does, and through `graphcraft.ask`, which builds the graph and opens the store per call.
    Also each question's answer from the reused graph, to check that the server answers the same."""
    import graphcraft
    from graphcraft.api import build_graph

    compiled = build_graph(graph, store=store)
    compiled.invoke({"question": questions[0]})
    reused, per_call, answers = [], [], {}
    for i in range(count):
        question = questions[i % len(questions)]
        started = time.perf_counter()
        answers[question] = compiled.invoke({"question": question})["answer"]
        reused.append(time.perf_counter() - started)
        started = time.perf_counter()
        graphcraft.ask(question, graph=graph, store=store)
        per_call.append(time.perf_counter() - started)
    return {"reused": reused, "ask": per_call, "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--graph", default="crag")
    parser.add_argument("--corpus", default="git_docs")
    args = parser.parse_args()
    if shutil.which("langgraph") is None:
        sys.exit("langgraph-cli is not installed: pip install 'graphcraft[server]'")

    import graphcraft
    from graphcraft.eval.corpora import load_corpus
    from graphcraft.testing import langgraph_dev

    corpus = load_corpus(args.corpus)
    questions = [q.question for q in corpus.questions()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = work / "store"
        graphcraft.ingest(corpus.materialize(work / "docs"), store=store)
        baseline = in_process(args.graph, store, questions, count=min(10, len(questions)))
        (work / "server").mkdir()
        with langgraph_dev(work / "server") as url:  # this repository's langgraph.json; SIGTERM when done
            run_clients(url, args.graph, store, questions[:1], clients=1, seconds=0.1)  # warm the server's graph
            result = run_clients(url, args.graph, store, questions, args.clients, args.seconds)
    report(args, result, baseline)


def report(args: argparse.Namespace, result: dict, baseline: dict[str, Any]) -> None:
    lat, errors = result["latencies"], result["errors"]
    done = len(lat)
    reused_p50, ask_p50 = statistics.median(baseline["reused"]), statistics.median(baseline["ask"])
    print(f"load test: {args.clients} clients x {args.seconds:.0f} s, graph {args.graph}, corpus {args.corpus}")
    print(f"  requests ok {done}, errors {len(errors)} ({len(errors) / max(1, done + len(errors)):.1%})")
    print(f"  throughput  {done / result['wall_s']:.2f} answers/s")
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        print(f"  latency {name} {_percentile(lat, q):7.3f} s")
    print(
        f"  in-process, one at a time: compiled graph reused p50 {reused_p50:.3f} s; graphcraft.ask p50 {ask_p50:.3f} s"
    )
    if lat:
        served_p50 = _percentile(lat, 0.5)
        print(
            f"  ratio served p50 / reused-graph p50 = {served_p50 / reused_p50:.2f} ({args.clients} concurrent clients)"
        )
        print(f"  ratio wall time per served answer / reused-graph p50 = {result['wall_s'] / done / reused_p50:.2f}")
    shared = [q for q in baseline["answers"] if q in result["answers"]]
    same = sum(baseline["answers"][q] == result["answers"][q] for q in shared)
    print(f"  served answers identical to in-process answers: {same}/{len(shared)}")
    for problem in sorted(set(errors))[:5]:
        print(f"  error: {problem}")


if __name__ == "__main__":
    main()
