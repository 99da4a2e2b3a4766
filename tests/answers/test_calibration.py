"""Per-store calibration of the local evaluator: measured at ingest, saved, shown, overridable, used."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import graphcraft
from graphcraft.cli import app
from graphcraft.config import get_settings
from graphcraft.eval import SAMPLE_CORPUS
from graphcraft.ingestion.calibration import DEFAULTS, evaluator_thresholds, pseudo_question
from graphcraft.stores.vector import open_store


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("calibrated") / "store"
    report = graphcraft.ingest([SAMPLE_CORPUS], store=store)
    assert report["calibration"]["queries"] > 0
    return store


def test_ingest_calibrates_the_store_from_its_own_chunks(sample_store: Path) -> None:
    cal = open_store(sample_store, create=False).manifest["calibration"]
    assert cal["method"] == "pseudo-queries" and cal["queries"] >= 100
    # Pseudo-questions whose answer is present score above the near misses made from the same sentences.
    assert cal["positives"]["p50"] > cal["negatives"]["p50"] and cal["separation"] > 0.7
    assert 0.0 < cal["lower"] <= cal["upper"] < 1.0
    assert cal["lower"] <= cal["positives"]["p05"] and cal["upper"] == pytest.approx(cal["negatives"]["p90"], abs=1e-4)


def test_the_calibrated_thresholds_are_what_crag_uses(sample_store: Path) -> None:
    cal = open_store(sample_store, create=False).manifest["calibration"]
    result = graphcraft.ask("When was the Grelle weir removed?", store=sample_store)
    evaluate = next(s for s in result["trace"]["steps"] if s["step"] == "evaluate")
    assert (evaluate["upper"], evaluate["lower"]) == (cal["upper"], cal["lower"])
    overridden = graphcraft.ask(
        "When was the Grelle weir removed?", store=sample_store, lower_threshold=0.99, upper_threshold=0.995
    )
    assert overridden["trace"]["action"] == "incorrect" and overridden["trace"]["abstained"]


def test_settings_override_the_calibration() -> None:
    class Store:
        manifest = {"calibration": {"upper": 0.7, "lower": 0.5, "queries": 160}}

    assert evaluator_thresholds(get_settings(), Store()) == (0.7, 0.5, "calibrated")
    assert evaluator_thresholds(get_settings(lower_threshold=0.3), Store()) == (0.7, 0.3, "settings")
    assert evaluator_thresholds(get_settings(lower_threshold=0.9), Store())[1] == 0.7  # lower never above upper
    assert evaluator_thresholds(get_settings(), None) == (DEFAULTS["upper"], DEFAULTS["lower"], "default")


def test_a_store_too_small_to_calibrate_keeps_the_defaults_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text(
        "The harbour crane was repaired in May. It lifts twelve tonnes.", encoding="utf-8"
    )
    report = graphcraft.ingest([tmp_path / "note.txt"], store=tmp_path / "s")
    assert report["calibration"]["queries"] == 0 and "too small" in report["calibration"]["method"]
    shown = graphcraft.calibration(store=tmp_path / "s")
    assert (shown["upper"], shown["lower"], shown["origin"]) == (DEFAULTS["upper"], DEFAULTS["lower"], "default")


def test_calibration_command_shows_and_recomputes(sample_store: Path) -> None:
    result = CliRunner().invoke(app, ["calibration", "--store", str(sample_store), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["origin"] == "calibrated" and shown["calibration"]["negatives"]["p25"] > 0
    human = CliRunner().invoke(app, ["calibration", "--store", str(sample_store)])
    assert "near miss" in human.stdout and "answer present" in human.stdout
    missing = CliRunner().invoke(app, ["calibration", "--store", str(sample_store.parent / "nothing-here")])
    assert missing.exit_code == 1 and "graphcraft ingest" in missing.output.lower()


def test_pseudo_question_drops_one_answer_like_word_and_part_of_the_rest() -> None:
    sentence = "The Grelle weir was designed by Edda Strand and completed in 1931 after two dry summers."
    answers = {"Grelle", "Edda", "Strand", "1931"}
    for seed in range(20):
        query = pseudo_question(sentence, random.Random(seed))
        assert query is not None and query.startswith("what ")
        kept = set(re.findall(r"\w+", query))
        assert len(answers - kept) >= 1  # the fact a question would ask for is not handed over
        assert 3 <= len(kept - {"what"}) < 10
    assert pseudo_question("Short line.", random.Random(0)) is None
