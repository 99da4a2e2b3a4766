"""Consensus: LLM calls and wall time per round for 3, 5 and 9 agents with a fixed-latency model.

Every agent's chat model is a scripted model that sleeps a fixed latency per call and never
changes its stance (a deadlock), so every run goes to the round limit. If positions within a
round run in parallel (LangGraph Send fan-out), a round takes about one call's latency whatever
the number of agents; run sequentially it would take N x latency.

    python benchmarks/consensus.py [--latency 0.2] [--rounds 2] [--agents 3 5 9]
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from graphcraft.chains.negotiate import AgentSpec
from graphcraft.graphs import consensus
from graphcraft.testing import ScriptedChatModel


def deadlocked_team(n: int, latency_s: float) -> list[AgentSpec]:
    """n agents split between two stances that nobody gives up."""
    return [
        AgentSpec(
            name=f"agent{i + 1}",
            model=ScriptedChatModel(
                script=[{"stance": "yes" if i % 2 else "no", "confidence": 0.7, "rationale": f"argument {i + 1}"}],
                repeat_last=True,
                latency_s=latency_s,
            ),
        )
        for i in range(n)
    ]


def measure(n: int, latency_s: float, rounds: int) -> list[dict]:
    """One row per round: calls made, wall time, and the time the same calls would take in sequence."""
    graph = consensus.build(agents=deadlocked_team(n, latency_s), rounds=rounds)
    rows: list[dict] = []
    calls = 0
    start = last = time.perf_counter()
    for update in graph.stream({"question": "Should the team adopt the proposal?"}, stream_mode="updates"):
        for node, value in update.items():
            if node in ("propose", "revise"):
                calls += int((value or {}).get("usage", {}).get("llm_calls", 0))
            elif node == "tally":
                now = time.perf_counter()
                summary = value["rounds"][0]
                rows.append(
                    {
                        "agents": n,
                        "round": summary["round"],
                        "calls": calls,
                        "seconds": now - last,
                        "sequential": calls * latency_s,
                        "agreement": summary["agreement"],
                    }
                )
                calls, last = 0, now
    rows.append(
        {
            "agents": n,
            "round": "total",
            "calls": sum(r["calls"] for r in rows),
            "seconds": time.perf_counter() - start,
            "sequential": sum(r["sequential"] for r in rows),
            "agreement": None,
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per model call")
    parser.add_argument("--rounds", type=int, default=2, help="negotiation rounds after round 0")
    parser.add_argument("--agents", type=int, nargs="+", default=[3, 5, 9])
    args = parser.parse_args()

    measure(2, 0.0, 0)  # warm-up: imports, token counter, thread pool; not timed
    table = Table(title=f"consensus: {args.latency:.2f} s per call, round 0 + {args.rounds} negotiation rounds")
    for column in ("agents", "round", "LLM calls", "wall s", "sequential s", "speed-up", "wall / latency"):
        table.add_column(column, justify="right")
    for n in args.agents:
        for row in measure(n, args.latency, args.rounds):
            speedup = row["sequential"] / row["seconds"] if row["seconds"] else 0.0
            table.add_row(
                str(n),
                str(row["round"]),
                str(row["calls"]),
                f"{row['seconds']:.3f}",
                f"{row['sequential']:.2f}",
                f"{speedup:.1f}x",
                f"{row['seconds'] / args.latency:.2f}" if row["round"] != "total" else "",
            )
        table.add_section()
    Console().print(table)


if __name__ == "__main__":
    main()
