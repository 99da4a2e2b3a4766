"""A deterministic chat model that follows a script: for tests, benchmarks and offline notebooks.

langchain_core's fakes replay text; agents also need tool calls, structured outputs and calls
that arrive concurrently (parallel plan steps). `ScriptedChatModel` takes either a list of
replies (consumed in order) or a function of the prompt that decides the reply, so a script
stays correct whatever order parallel branches call it in.

A reply may be:
- a string: a plain answer;
- an AIMessage: returned as is;
- ``{"tool_calls": [{"name": ..., "args": {...}}, ...], "content": "..."}``: tool calls;
- a dict or pydantic model when a structured-output schema is bound: returned as a call of that
  schema's tool (and as JSON text, for parsers that read content);
- an Exception instance: raised (to test error paths).

It can sleep a fixed latency per call (benchmarks) and counts its calls thread-safely.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

Reply = str | AIMessage | dict | BaseModel | Exception


class ScriptCall(BaseModel):
    """What the script function sees for one call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    messages: list[BaseMessage]
    tools: list[str] = Field(default_factory=list, description="names of bound tools / schemas")
    index: int = 0

    @property
    def text(self) -> str:
        """All message contents joined: what to match on."""
        return "\n".join(_as_text(m.content) for m in self.messages)

    @property
    def last(self) -> str:
        return _as_text(self.messages[-1].content) if self.messages else ""

    # Shadows pydantic's deprecated BaseModel.schema() classmethod on purpose: scripts read `call.schema`.
    @property
    def schema(self) -> str | None:  # type: ignore[override]
        """The structured-output schema name when exactly one tool is bound (how LangChain binds schemas)."""
        return self.tools[0] if len(self.tools) == 1 else None


class ScriptExhaustedError(RuntimeError):
    """The script has no reply left: the graph made more calls than the test expected."""


class ScriptedChatModel(BaseChatModel):
    """A chat model whose replies come from a list or a function of the call."""

    script: Any = Field(description="list of replies, or a function ScriptCall -> reply")
    latency_s: float = 0.0
    repeat_last: bool = False
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: list[ScriptCall] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[ScriptCall]:
        return list(self._calls)

    @property
    def call_count(self) -> int:
        return len(self._calls)

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any) -> Runnable:
        specs = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def _next_reply(self, call: ScriptCall) -> Reply:
        if callable(self.script):
            return self.script(call)
        replies: list[Reply] = self.script
        if call.index < len(replies):
            return replies[call.index]
        if self.repeat_last and replies:
            return replies[-1]
        raise ScriptExhaustedError(f"script has {len(replies)} replies; call #{call.index + 1} has none")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = [t["function"]["name"] for t in kwargs.get("tools") or []]
        with self._lock:
            call = ScriptCall(messages=list(messages), tools=tools, index=len(self._calls))
            self._calls.append(call)
        if self.latency_s:
            time.sleep(self.latency_s)
        reply = self._next_reply(call)
        message = _to_message(reply, call)
        prompt_tokens = max(1, len(call.text) // 4)
        completion_tokens = max(1, len(_as_text(message.content)) // 4 + 8 * len(message.tool_calls))
        message.usage_metadata = {
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return ChatResult(generations=[ChatGeneration(message=message)])


def _to_message(reply: Reply, call: ScriptCall) -> AIMessage:
    if isinstance(reply, Exception):
        raise reply
    if isinstance(reply, AIMessage):
        return reply.model_copy(deep=True)
    if isinstance(reply, str):
        return AIMessage(content=reply)
    if isinstance(reply, BaseModel):
        reply = reply.model_dump()
    if isinstance(reply, dict) and "tool_calls" in reply:
        calls = [
            {"name": c["name"], "args": c.get("args", {}), "id": c.get("id") or _call_id(), "type": "tool_call"}
            for c in reply["tool_calls"]
        ]
        return AIMessage(content=reply.get("content", ""), tool_calls=calls)
    if isinstance(reply, dict):
        if call.schema is None:
            return AIMessage(content=json.dumps(reply))
        return AIMessage(
            content=json.dumps(reply),
            tool_calls=[{"name": call.schema, "args": reply, "id": _call_id(), "type": "tool_call"}],
        )
    raise TypeError(f"unsupported scripted reply: {type(reply).__name__}")


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


def _as_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return str(content)


def tool_call(name: str, **args: Any) -> dict:
    """Reply helper: one tool call."""
    return {"tool_calls": [{"name": name, "args": args}]}


ScriptFunction = Callable[[ScriptCall], Reply]


def final_state(compiled: Any, inputs: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a compiled graph and return its whole final state, working channels included.

    A graph returns only its output schema (answer, sources, trace); a test that checks what
    the graph decided on the way (its documents, strips, plan) reads the state instead. The
    graph runs on a private in-memory checkpointer, so the caller's graph is left unchanged.
    """
    from langgraph.checkpoint.memory import InMemorySaver

    graph = compiled.copy(update={"checkpointer": InMemorySaver()})
    run_config: dict[str, Any] = {**(config or {})}
    run_config["configurable"] = {**run_config.get("configurable", {}), "thread_id": uuid.uuid4().hex}
    graph.invoke(inputs, config=run_config)
    return dict(graph.get_state(run_config).values)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def langgraph_dev(workdir: str | Path, graphs: dict[str, str] | None = None, timeout_s: float = 180.0) -> Iterator[str]:
    """`langgraph dev` serving `graphs` ({name: "./file.py:graph"}, default: this repository's langgraph.json)
    from `workdir`, offline, on a free loopback port; yields its URL and stops it (SIGTERM to its process
    group, SIGKILL after 20 s). Its output goes to ``workdir/server.log``, not a pipe: a pipe nobody reads
    fills up and stalls the server."""
    import os
    import signal
    import subprocess

    import httpx

    workdir = Path(workdir)
    config = json.loads((_REPO / "langgraph.json").read_text()) if graphs is None else {"dependencies": ["."]}
    if graphs is not None:
        config["graphs"] = graphs
    (workdir / "langgraph.json").write_text(json.dumps(config))
    if not (workdir / "graphcraft").exists():
        (workdir / "graphcraft").symlink_to(_REPO / "graphcraft")
    port, log = free_port(), workdir / "server.log"
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", "HF_HUB_OFFLINE": "1"}
    command = ["langgraph", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(httpx, url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("langgraph dev did not start: " + log.read_text(errors="replace")[-2000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def _answers(httpx: Any, url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/ok", timeout=2).status_code == 200)
    except httpx.HTTPError:
        return False


_REPO = Path(__file__).resolve().parents[1]
