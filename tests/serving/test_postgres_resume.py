"""Durable runs on PostgreSQL: a run killed midway (SIGKILL, its own process) resumes from its checkpoint.

No step that finished before the kill runs again, and the answer is the one an uninterrupted run gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from graphcraft.config import Settings
from graphcraft.graphs import plan_execute
from graphcraft.memory.checkpoints import CheckpointStoreError, open_checkpointer, thread_config
from tests.serving.durable_agent import STEPS

HELPER = Path(__file__).with_name("durable_agent.py")
ROOT = Path(__file__).parents[2]
KILL_AFTER = 3  # steps checkpointed before the process is killed


def agent(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(HELPER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )


def finished(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, f"exit {proc.returncode}: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def checkpointed_steps(reader: Any, thread: str) -> set[str]:
    """The plan steps whose results the thread's latest checkpoint holds (read through LangGraph)."""
    state = reader.get_state(thread_config(thread))
    return {k for k, v in state.values.get("results", {}).items() if v.get("ok")}


def test_a_killed_run_resumes_without_redoing_finished_steps(postgres_uri: str, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    reference = finished(agent("start", postgres_uri, "reference", str(tmp_path / "reference.log"), store))
    assert Counter((tmp_path / "reference.log").read_text().split()) == Counter(["analyze", "plan", *STEPS, "finalize"])

    log = tmp_path / "killed.log"
    with open_checkpointer(settings=Settings(postgres_uri=postgres_uri)) as saver:
        reader = plan_execute.build(checkpointer=saver)  # one connection, polled every 0.1 s
        proc = agent("start", postgres_uri, "durable", str(log), store, "0.5")
        deadline = time.time() + 90
        while len(checkpointed_steps(reader, "durable")) < KILL_AFTER:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "the run did not checkpoint its steps within 90 s"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        done = checkpointed_steps(reader, "durable")  # what the dead process had saved
    ran_before = log.read_text().split()
    assert KILL_AFTER <= len(done) < len(STEPS) and "finalize" not in ran_before, (done, ran_before)

    resumed = finished(agent("resume", postgres_uri, "durable", str(log), store))
    calls = Counter(log.read_text().split())
    assert all(calls[sid] == 1 for sid in done), calls  # no finished step ran again
    assert calls["plan"] == calls["analyze"] == calls["finalize"] == 1
    assert set(calls) == {"analyze", "plan", *STEPS, "finalize"}
    assert sum(calls[s] for s in STEPS) <= len(STEPS) + 1  # at most the step cut off by the kill ran twice
    assert resumed["answer"] == reference["answer"] and resumed["answer"].count(" done after ") == len(STEPS)
    assert resumed["trace"]["action"] == "completed" and resumed["trace"]["waves"] == [[s] for s in STEPS]


def test_resume_refuses_a_thread_with_nothing_to_continue(postgres_uri: str, tmp_path: Path) -> None:
    from graphcraft import api

    with pytest.raises(api.ResumeError, match="no paused or unfinished plan_execute run"):
        api.resume("plan_execute", "never-started", store=tmp_path, postgres_uri=postgres_uri)


def test_an_unreachable_database_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    from graphcraft.testing import free_port

    uri = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(CheckpointStoreError) as caught:
        with open_checkpointer(settings=Settings(postgres_uri=uri)):
            pass
    message = str(caught.value)
    assert "GRAPHCRAFT_POSTGRES_URI" in message and "\n" not in message and "secret" not in message


def test_a_pause_for_approval_is_kept_in_postgres_and_resumed_by_another_process(
    postgres_uri: str, tmp_path: Path
) -> None:
    """Approval across processes: one asks and exits, the decision arrives later from another."""
    from graphcraft import api
    from tests.serving.test_hitl import TWO_STEPS, plan_execute_model

    options = {"store": tmp_path, "postgres_uri": postgres_uri, "approve_plan": True}
    paused = api.ask("Count the owls.", graph="plan_execute", model=plan_execute_model(TWO_STEPS), **options)
    assert paused["interrupt"]["kind"] == "plan" and not (tmp_path / "checkpoints.sqlite").exists()
    code = (
        "import json, sys; from graphcraft import api; "
        "from tests.serving.test_hitl import TWO_STEPS, plan_execute_model; "
        "r = api.resume('plan_execute', sys.argv[1], 'approve', model=plan_execute_model(TWO_STEPS), "
        "store=sys.argv[2], postgres_uri=sys.argv[3], approve_plan=True); print(json.dumps(r['answer']))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, paused["thread_id"], str(tmp_path), postgres_uri],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == "Done: did find owls | did count owls"
