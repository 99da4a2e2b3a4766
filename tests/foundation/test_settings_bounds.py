"""Settings are validated with bounds: a zero, negative, non-numeric, NaN or infinite value is
refused with a one-line error naming the variable to fix, in Python and on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from graphcraft.config import Settings, get_settings
from graphcraft.errors import GraphcraftError

BAD_ENVIRONMENT = [
    ("TOP_K", "0"),
    ("TOP_K", "-1"),
    ("TOP_K", "abc"),
    ("RRF_K", "0"),
    ("EMBED_BATCH_SIZE", "0"),
    ("UPPER_THRESHOLD", "nan"),
    ("LOWER_THRESHOLD", "inf"),
    ("STRIP_THRESHOLD", "nan"),
    ("LLM_UPPER_THRESHOLD", "-inf"),
    ("HIERARCHY_JOIN_THRESHOLD", "inf"),
    ("TEMPERATURE", "nan"),
    ("MAX_SECONDS", "inf"),
    ("MAX_SECONDS", "-1"),
    ("MAX_ITERATIONS", "-1"),
    ("MAX_LLM_CALLS", "-3"),
    ("TOKEN_BUDGET", "-1"),
    ("MAX_SEARCH_ROUNDS", "-1"),
    ("MAX_STRUCTURED_REPAIRS", "-1"),
    ("LLM_TIMEOUT_S", "0"),
    ("LLM_MAX_RETRIES", "-1"),
    ("REQUESTS_PER_SECOND", "-2"),
    ("CHUNK_SIZE", "0"),
    ("CHUNK_OVERLAP", "-1"),
    ("MAX_CHUNKS_PER_FILE", "0"),
    ("MULTIHOP_MAX_HOPS", "0"),
    ("HIERARCHY_DOCUMENTS", "-1"),
    ("OCR_DPI", "-300"),
    ("OCR_MIN_CONFIDENCE", "nan"),
    ("FALKORDB_PORT", "70000"),
    ("PROMPT_COST_PER_MTOK", "-1"),
    ("LOCAL_THREADS", "-4"),
]


@pytest.mark.parametrize(("name", "value"), BAD_ENVIRONMENT, ids=[f"{n}={v}" for n, v in BAD_ENVIRONMENT])
def test_a_bad_environment_value_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"GRAPHCRAFT_{name}", value)
    with pytest.raises(GraphcraftError) as err:
        get_settings()
    message = str(err.value)
    assert "\n" not in message and f"GRAPHCRAFT_{name}" in message and repr(value) in message, message


def test_a_bad_override_names_the_setting_and_is_still_a_validation_error() -> None:
    with pytest.raises(GraphcraftError) as err:
        get_settings(top_k=0)
    assert isinstance(err.value, ValidationError)  # callers that catch pydantic's error keep working
    assert "\n" not in str(err.value) and "top_k=0" in str(err.value)


def test_overlap_must_be_smaller_than_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHCRAFT_CHUNK_SIZE", "100")
    with pytest.raises(GraphcraftError) as err:
        get_settings()
    assert "\n" not in str(err.value) and "GRAPHCRAFT_CHUNK_OVERLAP" in str(err.value)


def test_edge_values_that_mean_something_are_accepted() -> None:
    s = get_settings(
        top_k=1,
        max_seconds=0.001,
        max_structured_repairs=0,
        max_search_rounds=0,
        falkordb_port=0,
        local_threads=0,
        requests_per_second=0,
        upper_threshold=1.0,
        lower_threshold=0.0,
        chunk_size=60,
        chunk_overlap=0,
    )
    assert (s.top_k, s.max_seconds, s.chunk_size) == (1, 0.001, 60)
    assert Settings().top_k == 5


def test_the_command_line_prints_a_bad_setting_as_one_line(tmp_path: Path) -> None:
    """--json: as a script runs it (no progress bar on stderr), so stderr holds only the error."""
    (tmp_path / "a.txt").write_text("Herons nest in March.")
    env = {**os.environ, "GRAPHCRAFT_TOP_K": "0"}
    run = subprocess.run(
        [sys.executable, "-c", "from graphcraft.cli import app; app()", "ingest", "--json", str(tmp_path / "a.txt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "GRAPHCRAFT_TOP_K" in lines[0], run.stderr[-2000:]
    assert not (tmp_path / ".graphcraft").exists()
