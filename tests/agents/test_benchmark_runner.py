"""The agents benchmark's runner on the shipped task set, with zero latency (fast)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "benchmarks" / "agents.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_agents", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_variant_solves_every_shipped_task(bench):
    for task in bench.load_tasks():
        rows = {v: bench.run_once(task, v, 0.0) for v in bench.VARIANTS}
        assert all(r["reached_expected"] for r in rows.values()), (task["id"], rows)
        tool_steps = sum(1 for s in task["steps"] if s.get("tool"))
        assert rows["react"]["llm_calls"] == tool_steps + 1  # one call per tool call + the answer
        assert rows["plan_execute"]["action"] == "completed" and rows["plan_execute"]["stop_reason"] is None


def test_plan_execute_waves_overlap_independent_steps(bench):
    task = bench.load_tasks(["quarterly_total"])[0]
    row = bench.run_once(task, "plan_execute", 0.0)
    assert row["rounds"] == 3 and row["llm_calls"] == 3  # reads in one wave, then sum, then save
