"""`graphcraft compliance`: each setting flips the checklist item it governs, and the CLI reports it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graphcraft.cli import app
from graphcraft.config import get_settings
from graphcraft.guards.compliance import model_location, report

NO_TRACING: dict[str, str] = {}


def status(found: dict[str, Any], regime: str, item: str) -> str:
    matches = [i["status"] for i in found["checklists"][regime] if i["item"] == item]
    assert len(matches) == 1, (regime, item)
    return matches[0]


def fix(found: dict[str, Any], regime: str, item: str) -> str:
    return next(i["fix"] for i in found["checklists"][regime] if i["item"] == item)


def place(found: dict[str, Any], section: str, what: str) -> dict[str, Any]:
    return next(p for p in found[section] if p["what"] == what)


def review(tmp_path: Path, environ: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    return report(get_settings(store=tmp_path, **overrides), environ=NO_TRACING if environ is None else environ)


def test_pii_guard_flips_redaction_items(tmp_path: Path) -> None:
    off = review(tmp_path)
    assert status(off, "GDPR", "PII redaction") == status(off, "HIPAA", "PHI redaction") == "fail"
    assert fix(off, "GDPR", "PII redaction") == "GRAPHCRAFT_GUARDS=pii"
    on = review(tmp_path, guards="injection,pii", pii_mode="mask")
    assert status(on, "GDPR", "PII redaction") == status(on, "HIPAA", "PHI redaction") == "pass"
    assert on["redacted"][0]["how"] == "mask" and off["redacted"][0]["how"] == "off"
    assert status(on, "EU AI Act", "robustness (Art. 15)") == "pass"
    assert status(off, "EU AI Act", "robustness (Art. 15)") == "fail"


def test_audit_setting_flips_audit_and_record_keeping(tmp_path: Path) -> None:
    on, off = review(tmp_path), review(tmp_path, audit=False)
    assert status(on, "HIPAA", "audit trail") == status(on, "EU AI Act", "record-keeping (Art. 12)") == "pass"
    assert status(off, "HIPAA", "audit trail") == status(off, "EU AI Act", "record-keeping (Art. 12)") == "fail"
    assert fix(off, "HIPAA", "audit trail") == "GRAPHCRAFT_AUDIT=true"
    assert place(off, "retained", "audit trail")["on"] is False


def test_remote_model_needs_redaction_or_a_local_model_for_pii(tmp_path: Path) -> None:
    assert status(review(tmp_path), "GDPR", "model provider") == "pass"  # offline
    assert status(review(tmp_path, chat_model="local"), "GDPR", "model provider") == "pass"
    remote = review(tmp_path, chat_model="openai:gpt-4o-mini")
    assert status(remote, "GDPR", "model provider") == status(remote, "HIPAA", "model provider") == "fail"
    redacted = review(tmp_path, chat_model="openai:gpt-4o-mini", guards="pii")
    assert status(redacted, "HIPAA", "model provider") == "warn"
    routed = review(tmp_path, chat_model="openai:gpt-4o-mini", guards="pii", pii_local_model="local")
    assert status(routed, "HIPAA", "model provider") == "pass"
    assert remote["configuration"]["models"] == {"openai:gpt-4o-mini": "remote"}


def test_model_location() -> None:
    assert model_location("local") == "local"
    assert model_location("ollama:llama3.1") == "local"
    assert model_location("llama3.1", "http://127.0.0.1:11434/v1") == "local"
    assert model_location("gpt-4o-mini", "https://api.example.com/v1") == "remote"
    assert model_location("anthropic:claude-3-5-haiku-latest") == "remote"


@pytest.mark.parametrize("variable", ["LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"])
def test_langsmith_tracing_fails_the_third_party_item(tmp_path: Path, variable: str) -> None:
    traced = review(tmp_path, environ={variable: "true", "LANGSMITH_ENDPOINT": "https://eu.api.smith.langchain.com"})
    assert status(traced, "GDPR", "third-party tracing") == "fail"
    assert place(traced, "logged", "langsmith tracing")["where"] == "https://eu.api.smith.langchain.com"
    assert status(review(tmp_path, environ={variable: "false"}), "GDPR", "third-party tracing") == "pass"


def test_clearance_flips_access_control(tmp_path: Path) -> None:
    assert status(review(tmp_path), "HIPAA", "access control") == "warn"
    assert status(review(tmp_path, clearance="internal"), "HIPAA", "access control") == "pass"


def test_cache_and_stored_threads_count_against_minimisation(tmp_path: Path) -> None:
    assert status(review(tmp_path), "GDPR", "data minimisation") == "pass"
    cached = review(tmp_path, cache="sqlite")
    assert status(cached, "GDPR", "data minimisation") == "warn" and status(cached, "HIPAA", "PHI at rest") == "warn"
    assert place(cached, "retained", "llm cache")["where"] == str(tmp_path / "llm_cache.sqlite")
    assert status(review(tmp_path, cache="sqlite", guards="pii"), "HIPAA", "PHI at rest") == "pass"
    (tmp_path / "checkpoints.sqlite").write_bytes(b"")  # a thread was stored: its questions are kept in clear
    kept = review(tmp_path)
    assert status(kept, "GDPR", "data minimisation") == "warn" and place(kept, "retained", "checkpoints")["exists"]


def test_erasure_warns_where_erase_cannot_reach(tmp_path: Path) -> None:
    assert status(review(tmp_path), "GDPR", "erasure") == "pass"
    remote = review(tmp_path, redis_url="redis://user:secret@cache.example:6379/0")
    assert status(remote, "GDPR", "erasure") == "warn"
    assert "secret" not in json.dumps(remote)  # a password in a URL is never printed


def test_cli_json_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    runner = CliRunner()
    failing = runner.invoke(app, ["compliance", "--store", str(tmp_path), "--json"])
    assert failing.exit_code == 1  # no pii guard: redaction items fail
    assert json.loads(failing.stdout)["summary"]["fail"] >= 2
    monkeypatch.setenv("GRAPHCRAFT_GUARDS", "injection,pii")
    from graphcraft.config import reset_settings_cache

    reset_settings_cache()
    passing = runner.invoke(app, ["compliance", "--store", str(tmp_path)])
    assert passing.exit_code == 0, passing.stdout
    assert "PHI redaction" in passing.stdout and "0 fail" in passing.stdout


def test_unknown_guard_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["compliance", "--store", str(tmp_path)], env={"GRAPHCRAFT_GUARDS": "pii,shield"})
    assert result.exit_code == 1
    assert "unknown guard shield" in result.stderr and "Traceback" not in result.output
