"""A long plan-and-execute run for the durability test, run in its own process.

    python durable_agent.py start|resume POSTGRES_URI THREAD LOG STORE [LATENCY]

The scripted model appends one line to LOG for every call it answers (analyze, plan, each step
s1..s6, finalize), so the test can count what ran; `start` runs the task on THREAD, `resume`
continues THREAD from its checkpoint (graphcraft.api.resume). The result is printed as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from graphcraft import api
from graphcraft.testing import ScriptCall, ScriptedChatModel

TASK = "Write six facts about owls, each building on the previous one."
STEPS = [f"s{i}" for i in range(1, 7)]


def plan_reply() -> dict:
    """Six steps in a chain: each depends on the one before, so they run one per wave."""
    return {
        "steps": [
            {"id": sid, "description": f"fact {sid}", "depends_on": [STEPS[i - 1]] if i else []}
            for i, sid in enumerate(STEPS)
        ]
    }


def counting_model(log: Path, latency: float = 0.0) -> ScriptedChatModel:
    """A deterministic model that records every call it answers in `log`."""

    def respond(call: ScriptCall) -> str | dict:
        if call.schema == "Plan":
            name, reply = "plan", plan_reply()
        elif "Step results" in call.last:
            name, reply = (
                "finalize",
                "Owl facts: "
                + " / ".join(line.split(": ", 1)[1] for line in call.last.split("Step results:\n")[1].splitlines()),
            )
        elif "Your step: " in call.last:
            sid = call.last.split("Your step: fact ")[1].strip()
            name, reply = sid, f"{sid} done after {call.last.count('Result of')} earlier results"
        else:
            name, reply = "analyze", "six dependent steps"
        with log.open("a") as f:
            f.write(name + "\n")
        time.sleep(latency if name in STEPS else 0.0)
        return reply

    return ScriptedChatModel(script=respond)


def main(argv: list[str]) -> None:
    mode, uri, thread, log, store = argv[:5]
    latency = float(argv[5]) if len(argv) > 5 else 0.0
    options = {"store": store, "model": counting_model(Path(log), latency), "postgres_uri": uri, "analyze": True}
    if mode == "start":
        result = api.ask(TASK, graph="plan_execute", thread_id=thread, **options)
    else:
        result = api.resume("plan_execute", thread, **options)
    print(json.dumps({"answer": result["answer"], "trace": result["trace"]}, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
