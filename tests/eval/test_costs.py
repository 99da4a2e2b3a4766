"""Spend from the audit trail: `spend`, `check_spend_limit` and `graphcraft costs`.

Runs are recorded through `graphcraft.api.ask` on a tiny real store with scripted chat models
that report token usage; the expected figures are recomputed from what each model was sent
(ScriptedChatModel reports max(1, len(prompt) // 4) input and max(1, len(reply) // 4) output
tokens per call), independently of the trace and the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graphcraft.api import ask, ingest
from graphcraft.cli import app
from graphcraft.config import reset_settings_cache
from graphcraft.errors import GraphcraftError
from graphcraft.eval.spend import SpendLimitError, check_spend_limit, spend, spent_today
from graphcraft.testing import ScriptedChatModel

REPLY = "Ada Lind designed the Orla Bridge [1]."
PROMPT_PRICE, COMPLETION_PRICE = 2.0, 8.0  # USD per million tokens
QUESTION = "Who designed the Orla Bridge?"
# (user id, graph) of each recorded run, in order
RUNS = [("alice", "crag"), ("alice", "crag"), ("bob", "self_consistency"), (None, "crag")]


def expected(model: ScriptedChatModel) -> dict[str, Any]:
    """What one run through `model` should cost, from the calls the model received."""
    prompt = sum(max(1, len(call.text) // 4) for call in model.calls)
    completion = model.call_count * max(1, len(REPLY) // 4)
    return {
        "runs": 1,
        "llm_calls": model.call_count,
        "tokens": prompt + completion,
        "cost": (prompt * PROMPT_PRICE + completion * COMPLETION_PRICE) / 1_000_000,
    }


def add(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: sum(r[key] for r in rows) for key in ("runs", "llm_calls", "tokens", "cost")}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """A store with four runs priced through GRAPHCRAFT_*_COST_PER_MTOK; yields (store, expected per run)."""
    root = tmp_path_factory.mktemp("spend")
    docs = root / "docs"
    docs.mkdir()
    (docs / "bridge.md").write_text("# The Orla Bridge\n\nThe Orla Bridge was designed by Ada Lind in 1871.\n")
    (docs / "trams.md").write_text("# Trams\n\nLine 2 runs from the central station to the harbour.\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRAPHCRAFT_PROMPT_COST_PER_MTOK", str(PROMPT_PRICE))
        env.setenv("GRAPHCRAFT_COMPLETION_COST_PER_MTOK", str(COMPLETION_PRICE))
        reset_settings_cache()
        ingest([docs], store=root / "store")
        runs = []
        for user, graph in RUNS:
            model = ScriptedChatModel(script=lambda _call: REPLY)
            result = ask(QUESTION, graph=graph, store=root / "store", model=model, user_id=user)
            assert result["trace"]["llm_calls"] == model.call_count > 0
            runs.append({"user_id": user or "-", "graph": graph, **expected(model)})
        yield root / "store", runs
    reset_settings_cache()


def approx_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Costs compared to the accounting's rounding (6 decimals per run)."""
    return [{**r, "cost": pytest.approx(r["cost"], abs=2e-6)} for r in rows]


def test_spend_per_user_is_exact(ledger: tuple[Path, list[dict[str, Any]]]) -> None:
    store, runs = ledger
    want = [
        {"user_id": user, **add([r for r in runs if r["user_id"] == user])} for user in sorted({"-", "alice", "bob"})
    ]
    assert spend(store, by="user") == approx_rows(want)
    assert want[1]["runs"] == 2 and want[1]["tokens"] > 0 and want[1]["cost"] > 0


def test_spend_per_graph_and_day(ledger: tuple[Path, list[dict[str, Any]]]) -> None:
    store, runs = ledger
    today = datetime.now(UTC).date().isoformat()
    by_graph = spend(store, by=("graph",))
    assert by_graph == approx_rows(
        [{"graph": g, **add([r for r in runs if r["graph"] == g])} for g in ("crag", "self_consistency")]
    )
    assert spend(store, by="day") == approx_rows([{"day": today, **add(runs)}])
    (alice_crag,) = [r for r in spend(store) if r["user_id"] == "alice"]
    assert alice_crag["graph"] == "crag" and alice_crag["day"] == today and alice_crag["runs"] == 2
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert spend(store, since=tomorrow) == []
    assert spend(store, since=today, by="day")[0]["runs"] == len(RUNS)


def test_spend_limit_refuses_at_or_over_the_limit(ledger: tuple[Path, list[dict[str, Any]]]) -> None:
    store, runs = ledger
    alice = spent_today(store, "alice")
    assert alice == pytest.approx(add([r for r in runs if r["user_id"] == "alice"])["cost"], abs=2e-6)
    with pytest.raises(SpendLimitError) as caught:
        check_spend_limit(store, "alice", alice)  # at the limit: refused
    assert "alice" in str(caught.value) and "\n" not in str(caught.value)
    check_spend_limit(store, "alice", alice * 1.01)  # under it: allowed
    check_spend_limit(store, "carol", 1e-9)  # spent nothing today
    check_spend_limit(store, "alice", 0.0)  # 0 = no limit
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRAPHCRAFT_SPEND_LIMIT_USD", str(alice / 2))
        reset_settings_cache()
        with pytest.raises(SpendLimitError):
            check_spend_limit(store, "alice")  # the limit from Settings.spend_limit_usd
    reset_settings_cache()


def costs_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["costs", *args])
    return result.exit_code, result.stdout, result.stderr


def test_costs_command_json_and_warnings(ledger: tuple[Path, list[dict[str, Any]]]) -> None:
    store, runs = ledger
    bob = add([r for r in runs if r["user_id"] == "bob"])["cost"]
    alice = add([r for r in runs if r["user_id"] == "alice"])["cost"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRAPHCRAFT_SPEND_LIMIT_USD", str(alice))
        reset_settings_cache()
        code, stdout, stderr = costs_cli("--store", str(store), "--by", "user", "--json")
        assert code == 0, stderr
        report = json.loads(stdout)
        flags = {r["user_id"]: r["warning"] for r in report["rows"]}
        assert flags["alice"] == "over"
        assert flags["bob"] == ("over" if bob >= alice else "near" if bob >= 0.8 * alice else "")
        assert report["limit_usd"] == alice and report["by"] == ["user_id"]
        assert [r["runs"] for r in report["rows"]] == [1, 2, 1]
        code, stdout, _ = costs_cli("--store", str(store), "--by", "graph,day")
        assert code == 0 and "self_consistency" in stdout and "cost $" in stdout and "warning" in stdout
        code, stdout, _ = costs_cli("--store", str(store))
        assert code == 0 and "over limit" in stdout
    reset_settings_cache()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "colour"], "cannot group spend by 'colour'"),
        (["--since", "yesterday"], "expected a day as YYYY-MM-DD"),
    ],
)
def test_costs_bad_input_is_one_line(ledger: tuple[Path, list[dict[str, Any]]], args: list[str], message: str) -> None:
    code, stdout, stderr = costs_cli("--store", str(ledger[0]), *args)
    assert code == 1 and stdout == "" and message in stderr and len(stderr.strip().splitlines()) == 1


def test_costs_of_a_missing_store_is_one_line(tmp_path: Path) -> None:
    code, _, stderr = costs_cli("--store", str(tmp_path / "nowhere"))
    assert code == 1 and "does not exist" in stderr


def test_only_runs_count_and_an_erased_user_keeps_its_cost(tmp_path: Path) -> None:
    from graphcraft.guards import audit

    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    run = {"time": now, "user_id": "[erased]", "graph": "crag", "llm_calls": 2, "cost": 0.25}
    audit.append(tmp_path, {**run, "tokens": {"prompt": 30, "completion": 12}})
    audit.append(tmp_path, {"time": now, "event": "erasure"})  # a record of the log itself, not a run
    want = {"user_id": "[erased]", "runs": 1, "llm_calls": 2, "tokens": 42, "cost": 0.25}
    assert spend(tmp_path, by="user") == [want]


def test_a_store_without_runs_has_no_spend(tmp_path: Path) -> None:
    assert spend(tmp_path) == [] and spent_today(tmp_path, "alice") == 0.0
    with pytest.raises(GraphcraftError):
        spend(tmp_path, since="30/11/2026")
