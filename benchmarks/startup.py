"""Start-up benchmark: how long the command line takes before it does any work, as ratios.

Every command runs in a fresh process, N times, interleaved with its baseline (the order
rotates each round) so both see the same machine load; each figure is the median wall time,
with the median CPU time (user + system of the child) beside it, which a busy machine
disturbs less. Three ratios, each with its target:

1. ask      cold `graphcraft ask` / `python -c "import langgraph.graph, langchain_core.documents,
            faiss, numpy"` (the imports no answer can avoid)                         target <= 2
2. help     `graphcraft --help` / `python -c "import typer"`                         target <= 4
3. ingest   `graphcraft ingest` with nothing changed / cold `graphcraft ask`          target <= 2

It also shows `graphcraft ask` with GRAPHCRAFT_QUERY_EMBEDDER=torch (what the ONNX query
embedder saves) and which heavy libraries (torch, sentence-transformers, transformers, spaCy)
each command imports: `--help`, `graphs`, `graph stats`, `remove`, `feedback`, a query-only
`ask` and an ingest with nothing to do should import none of them.

The store is built in a temporary directory from samples/corpus by `graphcraft ingest` (its
time is printed: the first ingest also exports the embedding model to ONNX), with a temporary
user cache directory so the run starts from nothing, unless --user-cache is given.

    python benchmarks/startup.py [--repeats 5] [--user-cache] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "samples" / "corpus"
QUESTION = "When is the Lantern Festival held?"
HEAVY = ("torch", "sentence_transformers", "transformers", "spacy")
TARGETS = {"ask": 2.0, "help": 4.0, "ingest": 2.0}
CLI = [sys.executable, "-m", "graphcraft.cli"]
LABELS = {"ask": "cold ask / unavoidable imports", "help": "--help / import typer", "ingest": "no-op ingest / cold ask"}


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process; a failing command stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(argv: list[str], env: dict[str, str]) -> list[str]:
    """Which of HEAVY a command imports (from `python -X importtime`)."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True, check=False
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return [name for name in HEAVY if name in names]


def environment(work: Path, user_cache: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCRAFT_")}
    env["GRAPHCRAFT_STORE"] = str(work / "store")
    if not user_cache:
        env["XDG_CACHE_HOME"] = str(work / "cache")
    return env


def commands(work: Path, env: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Name -> (argv, environment) of everything timed."""
    store = str(work / "store")
    torch_env = {**env, "GRAPHCRAFT_QUERY_EMBEDDER": "torch"}
    return {
        "imports": ([sys.executable, "-c", "import langgraph.graph, langchain_core.documents, faiss, numpy"], env),
        "ask": ([*CLI, "ask", QUESTION, "--store", store], env),
        "ask_torch": ([*CLI, "ask", QUESTION, "--store", store], torch_env),
        "typer": ([sys.executable, "-c", "import typer"], env),
        "help": ([*CLI, "--help"], env),
        "ingest_noop": ([*CLI, "ingest", str(work / "corpus"), "--store", store], env),
    }


def measure(timed: dict[str, tuple[list[str], dict[str, str]]], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds per command over `repeats` interleaved rounds (after one warm-up)."""
    names = list(timed)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up: file caches, .pyc files
        run(*timed[name])
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = run(*timed[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
        print(f"round {round_ + 1}/{repeats} done", file=sys.stderr, flush=True)
    return {n: {"wall_s": statistics.median(walls[n]), "cpu_s": statistics.median(cpus[n])} for n in names}


def ratios(figures: dict[str, dict[str, float]]) -> dict[str, dict[str, float | bool]]:
    pairs = {"ask": ("ask", "imports"), "help": ("help", "typer"), "ingest": ("ingest_noop", "ask")}
    out: dict[str, dict[str, float | bool]] = {}
    for key, (top, bottom) in pairs.items():
        wall = figures[top]["wall_s"] / figures[bottom]["wall_s"]
        cpu = figures[top]["cpu_s"] / figures[bottom]["cpu_s"]
        out[key] = {"wall": round(wall, 2), "cpu": round(cpu, 2), "target": TARGETS[key], "met": wall <= TARGETS[key]}
    return out


def import_checks(work: Path, env: dict[str, str]) -> dict[str, list[str]]:
    store = str(work / "store")
    checked = {
        "--help": [*CLI, "--help"],
        "graphs": [*CLI, "graphs"],
        "graph stats": [*CLI, "graph", "stats", "--store", store],
        "remove": [*CLI, "remove", str(work / "corpus" / "not_stored.txt"), "--store", store],
        "feedback": [*CLI, "feedback", "--insights", "--store", store],
        "ask": [*CLI, "ask", QUESTION, "--store", store],
        "ingest (nothing changed)": [*CLI, "ingest", str(work / "corpus"), "--store", store],
    }
    return {name: heavy_imports(argv, env) for name, argv in checked.items()}


def report(setup_s: float, figures: dict[str, dict[str, float]], heavy: dict[str, list[str]]) -> dict:
    result = {"first_ingest_s": round(setup_s, 2), "figures": figures, "ratios": ratios(figures), "heavy": heavy}
    print(f"first ingest of {CORPUS.name} (embeds with torch, exports ONNX): {setup_s:.1f} s")
    print(f"{'command':<14}{'wall s':>9}{'cpu s':>9}")
    for name, fig in figures.items():
        print(f"{name:<14}{fig['wall_s']:>9.2f}{fig['cpu_s']:>9.2f}")
    print(f"{'ratio':<34}{'wall':>7}{'cpu':>7}{'target':>8}  met")
    for key, r in result["ratios"].items():
        print(f"{LABELS[key]:<34}{r['wall']:>7.2f}{r['cpu']:>7.2f}{r['target']:>8.1f}  {'yes' if r['met'] else 'NO'}")
    for name, modules in heavy.items():
        print(f"{name:<26} imports {', '.join(modules) if modules else 'none of ' + '/'.join(HEAVY)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--user-cache", action="store_true", help="use the real user cache directory (ONNX export)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graphcraft-startup-") as tmp:
        work = Path(tmp)
        shutil.copytree(CORPUS, work / "corpus")
        env = environment(work, args.user_cache)
        setup_s, _ = run([*CLI, "ingest", str(work / "corpus"), "--store", str(work / "store")], env)
        figures = measure(commands(work, env), max(1, args.repeats))
        result = report(setup_s, figures, import_checks(work, env))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
