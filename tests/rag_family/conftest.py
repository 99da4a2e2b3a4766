"""Shared fixtures for the RAG family tests: one real store (MiniLM, FAISS) over part of the
sample corpus, and scripted chat models that answer by schema name or prompt text."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from graphcraft.testing import ScriptCall, ScriptedChatModel

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "samples" / "corpus"
FILES = [
    "transit_system.md",
    "halvard_robotics_profile.md",
    "local_history.txt",
    "districts_at_a_glance.md",
    "kestrel_k4_manual.md",
    "essel_reconnect_project.md",
]


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from graphcraft.api import ingest

    path = tmp_path_factory.mktemp("rag_family") / "store"
    report = ingest([CORPUS / f for f in FILES], store=path)
    assert report["failed"] == [] and report["added"] > 20
    return path


@pytest.fixture()
def fresh_store(store_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the store (tests that write feedback or hierarchy files)."""
    target = tmp_path / "store"
    shutil.copytree(store_dir, target)
    return target


@pytest.fixture(scope="session")
def questions() -> list[dict]:
    return [
        json.loads(line)
        for line in (ROOT / "samples" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def is_correct(answer: str, groups: list) -> bool:
    """samples/README.md's keyword grader."""

    def norm(text: str) -> str:
        return re.sub(r"\s+", " ", text.replace("*", "")).strip().lower()

    text = norm(answer)
    return all(any(norm(alt) in text for alt in ([g] if isinstance(g, str) else g)) for g in groups)


def scripted(
    by_schema: dict[str, Any] | None = None, text: Callable[[ScriptCall], str] | str = "I don't know."
) -> ScriptedChatModel:
    """A model replying by bound schema name (value or function of the call), else with `text`.

    An unscripted schema gets `text` as plain content with no tool call: a malformed structured reply.
    """
    by_schema = by_schema or {}

    def script(call: ScriptCall) -> Any:
        if call.schema in by_schema:
            reply = by_schema[call.schema]
            return reply(call) if callable(reply) else reply
        return text(call) if callable(text) else text

    return ScriptedChatModel(script=script)


def all_relevant(call: ScriptCall) -> dict:
    """_Grades reply scoring every listed document 0.9."""
    count = len(re.findall(r"^\[\d+\] ", call.text, flags=re.M))
    return {str(i): 0.9 for i in range(1, count + 1)}
