"""Human in the loop through the Python API: each interrupt kind approved, edited and rejected.

The chat models are scripted; everything else is real (SQLite checkpointer in the store folder,
sandboxed file tools). Each test checks what the graph did after the decision: the plan that ran,
whether the file was written, the answer given.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphcraft import api
from graphcraft.chains.approval import ApprovalError, parse_decision
from graphcraft.cli import app
from graphcraft.testing import ScriptCall, ScriptedChatModel, tool_call

TWO_STEPS = [{"id": "s1", "description": "find owls"}, {"id": "s2", "description": "count owls", "depends_on": ["s1"]}]


def plan_execute_model(steps: list[dict]) -> ScriptedChatModel:
    """Plans `steps`; a reasoning step answers "did <description>"; the final answer lists the step results."""

    def respond(call: ScriptCall) -> str | dict:
        if call.schema == "Plan":
            return {"steps": steps}
        if "Step results" in call.last:
            return "Done: " + " | ".join(
                line.split(": ", 1)[1] for line in call.last.split("Step results:\n")[1].splitlines()
            )
        if "Your step: " in call.last:
            return "did " + call.last.split("Your step: ")[1].strip()
        return "analysis"

    return ScriptedChatModel(script=respond)


def executed(model: ScriptedChatModel) -> list[str]:
    return [c.last.split("Your step: ")[1].strip() for c in model.calls if "Your step: " in c.last]


def test_plan_execute_pauses_for_the_plan_and_runs_it_when_approved(tmp_path: Path) -> None:
    model = plan_execute_model(TWO_STEPS)
    paused = api.ask("Count the owls.", graph="plan_execute", store=tmp_path, model=model, approve_plan=True)
    assert set(paused) == {"question", "answer", "sources", "trace", "interrupt", "thread_id"}
    assert paused["trace"]["action"] == "interrupted" and paused["answer"] == "" and paused["thread_id"]
    payload = paused["interrupt"]
    assert payload["kind"] == "plan" and [s["id"] for s in payload["plan"]] == ["s1", "s2"]
    assert payload["choices"] == ["approve", "edit", "reject"] and payload["edits_left"] == 3
    assert executed(model) == []  # nothing ran before the person decided

    done = api.resume("plan_execute", paused["thread_id"], "approve", store=tmp_path, model=model, approve_plan=True)
    assert done["answer"] == "Done: did find owls | did count owls" and done["question"] == "Count the owls."
    assert done["trace"]["action"] == "completed" and done["trace"]["approval"] == [
        {"kind": "plan", "decision": "approve"}
    ]
    assert "interrupt" not in done


def test_plan_execute_runs_the_edited_plan_and_asks_again(tmp_path: Path) -> None:
    model = plan_execute_model(TWO_STEPS)
    options = {"graph": "plan_execute", "store": tmp_path, "model": model, "approve_plan": True}
    paused = api.ask("Count the owls.", **options)
    thread = paused["thread_id"]
    edited = [
        {"id": "e1", "description": "ask the owl society"},
        {"id": "e2", "description": "add 2", "tool": "calculator", "args": {"expression": "40 + 2"}},
    ]
    again = api.resume(
        "plan_execute", thread, {"action": "edit", "plan": edited}, store=tmp_path, model=model, approve_plan=True
    )
    assert again["interrupt"]["kind"] == "plan" and again["interrupt"]["edits_left"] == 2
    assert [s["description"] for s in again["interrupt"]["plan"]] == ["ask the owl society", "add 2"]
    done = api.resume("plan_execute", thread, "approve", store=tmp_path, model=model, approve_plan=True)
    assert executed(model) == ["ask the owl society"]  # the edited plan ran, not the planner's
    assert done["answer"] == "Done: did ask the owl society | 42"
    assert [s["id"] for s in done["trace"]["plan"]] == ["e1", "e2"]
    assert [a["decision"] for a in done["trace"]["approval"]] == ["edit", "approve"]


def test_plan_edits_are_bounded_by_max_iterations(tmp_path: Path) -> None:
    model = plan_execute_model(TWO_STEPS)
    options = {"store": tmp_path, "model": model, "approve_plan": True, "max_iterations": 1}
    paused = api.ask("Count the owls.", graph="plan_execute", **options)
    edit = {"action": "edit", "value": [{"id": "x", "description": "only this"}]}
    done = api.resume("plan_execute", paused["thread_id"], edit, **options)
    assert "interrupt" not in done and executed(model) == ["only this"]  # no more reviews after the last edit


def test_plan_execute_rejected_plan_ends_the_run_without_running_a_step(tmp_path: Path) -> None:
    model = plan_execute_model(TWO_STEPS)
    paused = api.ask("Count the owls.", graph="plan_execute", store=tmp_path, model=model, approve_plan=True)
    done = api.resume(
        "plan_execute", paused["thread_id"], "reject: owls are private", store=tmp_path, model=model, approve_plan=True
    )
    assert done["answer"] == "Stopped: the reviewer rejected the plan (owls are private)."
    assert done["trace"]["action"] == "rejected" and executed(model) == []
    assert done["trace"]["approval"] == [{"kind": "plan", "decision": "reject", "reason": "owls are private"}]


def planning_model() -> ScriptedChatModel:
    def respond(call: ScriptCall) -> str | dict:
        if call.schema == "PhasedPlan":
            steps = [{"id": "a", "description": "draft", "success_criterion": "a draft exists"}]
            return {"phases": [{"name": "write", "steps": steps}]}
        if call.schema == "Verdict":
            return {"passed": True, "reason": "ok"}
        if "Step (" in call.last:
            return "result of " + call.last.split("): ")[1].split("\n")[0]
        return "Report: " + call.last.split("Steps:\n")[1]

    return ScriptedChatModel(script=respond)


@pytest.mark.parametrize("decision", ["approve", "edit", "reject"])
def test_planning_plan_review(tmp_path: Path, decision: str) -> None:
    model = planning_model()
    paused = api.ask("Write a poem.", graph="planning", store=tmp_path, model=model, approve_plan=True)
    assert paused["interrupt"]["kind"] == "plan" and paused["interrupt"]["plan"][0]["phase"] == "write"
    sent = {
        "approve": "approve",
        "edit": {"action": "edit", "value": [{"id": "b", "phase": "polish", "description": "rhyme it"}]},
        "reject": {"action": "reject", "reason": "no poems"},
    }[decision]
    done = api.resume("planning", paused["thread_id"], sent, store=tmp_path, model=model, max_iterations=0)
    ran = [c.last.split("): ")[1].split("\n")[0] for c in model.calls if "Step (" in c.last]
    if decision == "reject":
        assert done["trace"]["action"] == "rejected" and ran == []
        assert done["answer"] == "Stopped: the reviewer rejected the plan (no poems)."
    else:
        assert ran == (["draft"] if decision == "approve" else ["rhyme it"])
        assert done["trace"]["action"] == "completed"
        assert done["trace"]["phases"][0]["name"] == ("write" if decision == "approve" else "polish")


def tool_agent_model(content: str = "hoot") -> ScriptedChatModel:
    """Computes first (not reviewed), then writes a file (reviewed), then answers."""
    return ScriptedChatModel(
        script=[
            tool_call("calculator", expression="6 * 7"),
            tool_call("write_file", path="owl.txt", content=content),
            "I wrote the file.",
        ]
    )


@pytest.mark.parametrize("decision", ["approve", "edit", "reject"])
def test_tool_agent_sensitive_call_review(tmp_path: Path, decision: str) -> None:
    workspace, model = tmp_path / "ws", tool_agent_model()
    options = {"store": tmp_path, "model": model, "workspace": workspace, "approve_tools": "sensitive"}
    paused = api.ask("Save an owl sound.", graph="tool_agent", **options)
    payload = paused["interrupt"]
    assert payload["kind"] == "tool_call" and payload["tool"] == "write_file"
    assert payload["args"] == {"path": "owl.txt", "content": "hoot"} and not (workspace / "owl.txt").exists()
    sent = {"approve": "approve", "edit": {"action": "edit", "args": {"path": "owl.txt", "content": "screech"}}}
    done = api.resume("tool_agent", paused["thread_id"], sent.get(decision, "reject: no files"), **options)
    trace = done["trace"]
    assert [c["tool"] for c in trace["tool_calls"]][0] == "calculator"  # an unlisted tool ran without asking
    if decision == "reject":
        assert not (workspace / "owl.txt").exists() and trace["action"] == "rejected"
        assert done["answer"] == "Stopped: the reviewer rejected the call to write_file (no files)."
        assert [c["tool"] for c in trace["tool_calls"]] == ["calculator"] and model.call_count == 2
    else:
        assert (workspace / "owl.txt").read_text() == ("hoot" if decision == "approve" else "screech")
        assert done["answer"] == "I wrote the file." and trace["action"] == "answered"
        assert trace["approval"][0]["decision"] == decision


def team(writer_text: str = "Owls hoot at night.") -> dict:
    boss = ScriptedChatModel(
        script=[{"next": "writer", "task": "write it", "reason": "ready"}, {"next": "FINISH", "reason": "done"}]
    )
    return {"model": boss, "agents": {"writer": ScriptedChatModel(script=[writer_text])}}


@pytest.mark.parametrize("decision", ["approve", "edit", "reject"])
def test_supervisor_final_answer_review(tmp_path: Path, decision: str) -> None:
    options = {"store": tmp_path, "approve_final": True, **team()}
    paused = api.ask("When do owls hoot?", graph="supervisor", **options)
    payload = paused["interrupt"]
    assert (
        payload["kind"] == "final" and payload["answer"] == "Owls hoot at night." and payload["answered_by"] == "writer"
    )
    sent = {
        "approve": "approve",
        "edit": {"action": "edit", "answer": "Owls hoot mostly at night."},
        "reject": "reject: unsourced",
    }
    done = api.resume("supervisor", paused["thread_id"], sent[decision], **options)
    expected = {
        "approve": ("Owls hoot at night.", "answered"),
        "edit": ("Owls hoot mostly at night.", "answered"),
        "reject": ("Stopped: the reviewer rejected the team's final answer (unsourced).", "rejected"),
    }[decision]
    assert (done["answer"], done["trace"]["action"]) == expected
    assert done["trace"]["approval"][0]["decision"] == decision


def test_without_the_option_nothing_pauses(tmp_path: Path) -> None:
    done = api.ask("Count the owls.", graph="plan_execute", store=tmp_path, model=plan_execute_model(TWO_STEPS))
    assert "interrupt" not in done and done["trace"]["approval"] == []


def test_stream_ends_with_the_paused_result(tmp_path: Path) -> None:
    model = plan_execute_model(TWO_STEPS)
    events = list(api.stream("Count the owls.", graph="plan_execute", store=tmp_path, model=model, approve_plan=True))
    result = events[-1]["result"]
    assert result["interrupt"]["kind"] == "plan" and result["trace"]["action"] == "interrupted"
    assert [e["node"] for e in events if e["type"] == "node"] == ["analyze", "plan"]


def test_bad_decisions_and_wrong_resumes_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ApprovalError, match="unknown decision 'maybe'"):
        parse_decision("maybe")
    model = plan_execute_model(TWO_STEPS)
    paused = api.ask("Count the owls.", graph="plan_execute", store=tmp_path, model=model, approve_plan=True)
    with pytest.raises(ApprovalError):
        api.resume("plan_execute", paused["thread_id"], {"action": "edit"}, store=tmp_path, model=model)
    with pytest.raises(api.ResumeError, match="waiting for a decision \\(plan\\)"):
        api.resume("plan_execute", paused["thread_id"], store=tmp_path, model=model)
    api.resume("plan_execute", paused["thread_id"], "approve", store=tmp_path, model=model, approve_plan=True)
    with pytest.raises(api.ResumeError, match="no paused or unfinished"):
        api.resume("plan_execute", paused["thread_id"], "approve", store=tmp_path, model=model)


# ---------------------------------------------------------------------- the command line
def cli(monkeypatch: pytest.MonkeyPatch, model: ScriptedChatModel) -> CliRunner:
    """A CliRunner whose configured chat model is `model`."""
    import graphcraft.models

    monkeypatch.setattr(graphcraft.models, "get_chat_model", lambda settings=None: model)
    return CliRunner()


def test_cli_approve_prompts_edit_then_approve_with_piped_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = plan_execute_model(TWO_STEPS)
    edited = json.dumps([{"id": "e1", "description": "ask the owl society"}])
    args = ["run", "plan_execute", "Count the owls.", "--approve", "--store", str(tmp_path)]
    result = cli(monkeypatch, model).invoke(app, args, input=f"edit\n{edited}\napprove\n")
    assert result.exit_code == 0, result.output
    assert "plan to approve" in result.output and "Done: did ask the owl society" in result.output
    assert executed(model) == ["ask the owl society"]


def test_cli_approve_reject_a_tool_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    args = [
        "run",
        "tool_agent",
        "Save an owl sound.",
        "--approve",
        "--store",
        str(tmp_path),
        "--workspace",
        str(workspace),
    ]
    result = cli(monkeypatch, tool_agent_model()).invoke(app, args, input="reject\nno files\n")
    assert result.exit_code == 0, result.output
    assert "write_file" in result.output and "rejected the call to write_file (no files)" in result.output
    assert not (workspace / "owl.txt").exists()


def test_cli_approve_without_answers_is_one_line_pointing_to_the_json_flow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = cli(monkeypatch, plan_execute_model(TWO_STEPS))
    args = ["run", "plan_execute", "Count the owls.", "--approve", "--store", str(tmp_path)]
    result = runner.invoke(app, args, input="")
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "--approve --json" in error[0] and "graphcraft resume plan_execute" in error[0]


def test_cli_json_flow_pauses_then_resume_continues(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = plan_execute_model(TWO_STEPS)
    runner = cli(monkeypatch, model)
    paused = runner.invoke(
        app, ["run", "plan_execute", "Count the owls.", "--approve", "--json", "--store", str(tmp_path)]
    )
    assert paused.exit_code == 0, paused.output
    data = json.loads(paused.output)
    assert data["interrupt"]["kind"] == "plan" and executed(model) == []
    done = runner.invoke(
        app, ["resume", "plan_execute", data["thread_id"], "approve", "--json", "--store", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["answer"] == "Done: did find owls | did count owls"
