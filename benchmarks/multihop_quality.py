"""Two-hop questions: the multihop graph against its own retriever, per half of the question set.

For each `multi_hop` question, keyword containment (graphcraft.eval.grading.is_correct) of
- the bare hybrid retriever: the text of its top 5 chunks;
- the multihop graph: its answer plus the text of the sources it cites (and, as a diagnostic,
  the text of every chunk any hop retrieved: what better answers could have drawn on).
The question set is split by id (graphcraft.eval.datasets.split_by_id): tune on the first half
(even ids), report the second (odd ids).

    python benchmarks/multihop_quality.py benchmarks/data/python_docs      # corpus.json + questions.jsonl
    python benchmarks/multihop_quality.py samples                          # samples/corpus + samples/questions.jsonl
    python benchmarks/multihop_quality.py benchmarks/data/postgres_docs --half tuning --show
    python benchmarks/multihop_quality.py samples --llm                    # with GRAPHCRAFT_CHAT_MODEL

A data folder holds questions.jsonl and either corpus.json (pages of an installed Debian
documentation package, see graphcraft.eval.corpora) or a corpus/ folder; the files are copied
to a temporary folder and ingested there. Offline the graph answers extractively; --llm uses
the configured chat model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphcraft.eval.datasets import Question, load_questions, split_by_id  # noqa: E402
from graphcraft.eval.grading import is_correct  # noqa: E402

HALVES = ("tuning", "held_out")


def prepare_store(data: Path, workdir: Path) -> Path:
    """Copy the corpus to `workdir` (corpus.json's pages via graphcraft.eval.corpora, or corpus/) and ingest it."""
    from graphcraft import ingest
    from graphcraft.eval.corpora import load_corpus

    if (data / "corpus.json").is_file():
        files = load_corpus(data).materialize(workdir / "corpus")
    else:
        files = [Path(shutil.copytree(data / "corpus", workdir / "corpus", dirs_exist_ok=True))]
    store = workdir / "store"
    started = time.perf_counter()
    report = ingest(files, store=store)
    print(
        f"ingested {report['files']} files, {report['added']} chunks in {time.perf_counter() - started:.0f} s"
        + (f", {len(report['failed'])} failed" if report["failed"] else ""),
        file=sys.stderr,
    )
    return store


def cited_text(state: dict) -> str:
    """The graph's answer followed by the text of every source it cites."""
    return "\n".join([state.get("answer", "")] + [s.get("text", "") for s in state.get("sources", [])])


def retrieved_text(state: dict, chunk_store: Any) -> str:
    """Every chunk any hop retrieved (cited or not): what the answers could have drawn on."""
    ids = list(dict.fromkeys(cid for hop in state["trace"]["hops"] for cid in hop.get("retrieved", [])))
    return "\n".join(d.page_content for d in chunk_store.get(ids))


def evaluate(questions: list[Question], store: Path, model: Any, show: bool) -> list[dict]:
    """One row per question: whether the retriever's top 5 and the graph's answer+sources hold the keywords."""
    from graphcraft.config import get_settings
    from graphcraft.graphs.multihop import build
    from graphcraft.retrievers import make_retriever
    from graphcraft.stores.vector import open_store

    settings = get_settings(store=store)
    chunk_store = open_store(store, settings, create=False)
    retriever = make_retriever("hybrid", chunk_store, 5)
    graph = build(model=model, settings=settings)
    rows = []
    for q in questions:
        chunks = retriever.search(q.question)
        started = time.perf_counter()
        state = graph.invoke({"question": q.question})
        row = {
            "id": q.id,
            "retriever": is_correct("\n".join(d.page_content for d in chunks), q.answer_keywords),
            "multihop": is_correct(cited_text(state), q.answer_keywords),
            "answer_only": is_correct(state.get("answer", ""), q.answer_keywords),
            "hops_retrieved": is_correct(retrieved_text(state, chunk_store), q.answer_keywords),
            "seconds": time.perf_counter() - started,
            "llm_calls": state["trace"].get("llm_calls", 0),
        }
        rows.append(row)
        if show:
            hops = " | ".join(f"{h['id']}: {h['question']} -> {h['bridge'] or '-'}" for h in state["trace"]["hops"])
            print(
                f"{q.id} retr={row['retriever']:d} graph={row['multihop']:d} ans={row['answer_only']:d} "
                f"pool={row['hops_retrieved']:d}  {q.question}\n"
                f"    plan={state['trace']['decomposition']['strategy']}  {hops}",
                file=sys.stderr,
            )
    return rows


def summary(name: str, rows: list[dict]) -> str:
    n = len(rows) or 1
    retr, graph, answer, pool = (
        sum(r[k] for r in rows) for k in ("retriever", "multihop", "answer_only", "hops_retrieved")
    )
    ratio = f"{graph / retr:.2f}x" if retr else "n/a"
    return (
        f"{name:<9} n={len(rows):<3} retriever top5 {retr:>2} ({retr / n:.0%})   multihop answer+sources {graph:>2} "
        f"({graph / n:.0%}, answer alone {answer}, any hop's retrieved chunks {pool})   ratio {ratio}   "
        f"{sum(r['seconds'] for r in rows) / n:.1f} s/q, "
        f"{sum(r['llm_calls'] for r in rows) / n:.1f} LLM calls/q"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="folder with questions.jsonl and corpus.json or corpus/")
    parser.add_argument("--half", choices=[*HALVES, "both"], default="both")
    parser.add_argument("--limit", type=int, default=0, help="at most this many questions per half (0: all)")
    parser.add_argument("--llm", action="store_true", help="use the configured chat model (GRAPHCRAFT_CHAT_MODEL)")
    parser.add_argument(
        "--workdir", type=Path, help="keep the copied corpus and store here (re-runs skip unchanged files)"
    )
    parser.add_argument("--show", action="store_true", help="print each question's plan and hops")
    args = parser.parse_args()
    model = None
    if args.llm:
        from graphcraft.models import get_chat_model

        model = get_chat_model()
    questions = load_questions(args.data / "questions.jsonl", types={"multi_hop"})
    halves = dict(zip(HALVES, split_by_id(questions), strict=False))
    with tempfile.TemporaryDirectory(prefix="multihop-quality-") as tmp:
        store = prepare_store(args.data, args.workdir or Path(tmp))
        for name in HALVES if args.half == "both" else (args.half,):
            chosen = halves[name][: args.limit or None]
            print(summary(name, evaluate(chosen, store, model, args.show)), flush=True)


if __name__ == "__main__":
    main()
