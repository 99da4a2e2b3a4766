"""Resilient calls to chat models and external services: retry, fallbacks, circuit breakers.

Every chat model graphcraft builds (`models.get_chat_model`) gets a `ResiliencePolicy` from the
Settings it was built with; `models.call_model` applies it around each call:

- Retry with exponential backoff and jitter (LangChain's `Runnable.with_retry`) for transient
  failures only: rate limits (429), timeouts, connection errors, 5xx. A 4xx that will not change
  (bad request, bad key) is never retried. Providers whose client retries by itself (OpenAI,
  Anthropic: their `max_retries`, set from GRAPHCRAFT_LLM_MAX_RETRIES) are not retried twice.
- Fallback models (GRAPHCRAFT_FALLBACK_MODELS), tried in order with `with_fallbacks` when the
  primary fails or its breaker is open. Every attempt reaches the run's callbacks, so the trace
  counts each call, failed ones included.
- A circuit breaker per model and per external service, in one thread-safe process-wide
  registry keyed by model spec / base URL / service URL: `breaker_failures` consecutive failures
  open it, and an open breaker fails fast with a one-line `CircuitOpenError` naming what is down
  and when it will be tried again; `breaker_reset_s` later one trial call is let through (half
  open), whose success closes it. `breaker_states()` reports them all (`graphcraft doctor`).

A model passed in by the caller is used as given unless it is wrapped with `protect`.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from graphcraft.config import Settings
from graphcraft.errors import GraphcraftError, ModelError

BreakerState = Literal["closed", "open", "half_open"]
R = TypeVar("R")

_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_TRANSIENT_NAMES = ("Timeout", "RateLimit", "Connection", "ServiceUnavailable", "Overloaded", "InternalServer")


class CircuitOpenError(GraphcraftError):
    """A model or service failed too often in a row; calls fail fast until its next trial."""

    def __init__(self, key: str, failures: int, retry_in_s: float) -> None:
        super().__init__(
            f"{key} is unavailable: circuit breaker open after {failures} consecutive failures; "
            f"next trial call in {max(0.0, retry_in_s):.1f}s (GRAPHCRAFT_BREAKER_RESET_S)"
        )
        self.key, self.failures, self.retry_in_s = key, failures, retry_in_s


class ModelUnavailableError(CircuitOpenError, ModelError):
    """A chat model's breaker is open (and no fallback answered): a ModelError like any model failure."""


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of a provider error (openai, httpx, ollama ... all carry one of these)."""
    for holder in (exc, getattr(exc, "response", None)):
        code = getattr(holder, "status_code", None) if holder is not None else None
        if isinstance(code, int):
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: a rate limit, timeout, connection failure or server error (5xx); never a
    graphcraft error or another 4xx, which the same request would get again."""
    seen: BaseException | None = exc
    for _ in range(4):  # the exception and a few causes: a client may wrap the transport's error
        if seen is None or isinstance(seen, GraphcraftError):
            return False
        code = status_code(seen)
        if code is not None:
            return code in _TRANSIENT_STATUS or code >= 500
        if isinstance(seen, TimeoutError | ConnectionError):
            return True
        if any(part in cls.__name__ for cls in type(seen).__mro__ for part in _TRANSIENT_NAMES):
            return True
        seen = seen.__cause__
    return False


# ---------------------------------------------------------------------------- circuit breakers


@dataclass
class CircuitBreaker:
    """Closed -> open after `failures_to_open` consecutive failures -> half open (one trial call)
    after `reset_s` -> closed on the trial's success, open again on its failure."""

    key: str
    failures_to_open: int = 5
    reset_s: float = 30.0
    state: BreakerState = "closed"
    failures: int = 0
    opened_at: float = 0.0
    calls: int = 0
    total_failures: int = 0
    _trial_running: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def before_call(self, error: type[CircuitOpenError] = CircuitOpenError) -> None:
        """Let the call through, or raise `error` (open, or a trial call already running)."""
        with self._lock:
            if self.state == "closed":
                self.calls += 1
                return
            wait = self.opened_at + self.reset_s - time.monotonic()
            if self.state == "open" and wait <= 0:
                self.state = "half_open"
            if self.state == "half_open" and not self._trial_running:
                self._trial_running = True
                self.calls += 1
                return
            raise error(self.key, self.failures, wait if wait > 0 else self.reset_s)

    def record_success(self) -> None:
        with self._lock:
            self.state, self.failures, self._trial_running = "closed", 0, False

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            self.total_failures += 1
            if self.state == "half_open" or self.failures >= self.failures_to_open:
                self.state, self.opened_at = "open", time.monotonic()
            self._trial_running = False

    def snapshot(self) -> dict[str, Any]:
        """What `graphcraft doctor` shows: state, failures in a row, and seconds until the next trial."""
        with self._lock:
            retry_in = max(0.0, self.opened_at + self.reset_s - time.monotonic()) if self.state == "open" else 0.0
            return {
                "key": self.key,
                "state": self.state,
                "consecutive_failures": self.failures,
                "failures_to_open": self.failures_to_open,
                "retry_in_s": round(retry_in, 1),
                "calls": self.calls,
                "failures": self.total_failures,
            }


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker(key: str, failures_to_open: int = 5, reset_s: float = 30.0) -> CircuitBreaker:
    """The process-wide breaker of a model or service (made on first use; thresholds kept current)."""
    with _breakers_lock:
        found = _breakers.get(key)
        if found is None:
            found = _breakers[key] = CircuitBreaker(key, failures_to_open, reset_s)
        found.failures_to_open, found.reset_s = failures_to_open, reset_s
        return found


def breaker_states() -> list[dict[str, Any]]:
    """Every breaker's state, sorted by key (for `graphcraft doctor`)."""
    with _breakers_lock:
        current = sorted(_breakers.values(), key=lambda b: b.key)
    return [b.snapshot() for b in current]


def reset_breakers() -> None:
    """Forget every breaker (a test, or a long-lived server after an outage was fixed)."""
    with _breakers_lock:
        _breakers.clear()


def guarded(
    key: str,
    failures_to_open: int,
    reset_s: float,
    call: Callable[[], R],
    error: type[CircuitOpenError] = CircuitOpenError,
) -> R:
    """Run `call` under the breaker of `key`: fail fast with `error` while it is open; a transient
    failure counts against it, any other outcome (a reply, a malformed reply, a refused request)
    proves it answers."""
    service = breaker(key, failures_to_open, reset_s)
    service.before_call(error)
    try:
        result = call()
    except Exception as exc:
        if is_transient(exc):
            service.record_failure()
        else:
            service.record_success()
        raise
    service.record_success()
    return result


def guard_service(key: str, settings: Settings, call: Callable[[], R]) -> R:
    """`guarded` with the thresholds of `settings` (GRAPHCRAFT_BREAKER_FAILURES / _RESET_S): for an
    external service such as a graph database or a cache, keyed by its URL."""
    return guarded(key, settings.breaker_failures, settings.breaker_reset_s, call)


# ---------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between retries: initial_s * 2**n, capped at max_s, plus up to jitter_s."""

    initial_s: float = 0.5
    max_s: float = 8.0
    jitter_s: float = 0.5

    def params(self) -> dict[str, float]:
        return {"initial": self.initial_s, "max": self.max_s, "exp_base": 2.0, "jitter": self.jitter_s}


@dataclass(frozen=True)
class ResiliencePolicy:
    """How calls to one chat model are made resilient (see the module docstring)."""

    key: str
    max_retries: int = 2
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    fallbacks: tuple[Any, ...] = ()
    backoff: Backoff = Backoff()

    @classmethod
    def from_settings(cls, key: str, settings: Settings, fallbacks: tuple[Any, ...] = ()) -> ResiliencePolicy:
        return cls(key, settings.llm_max_retries, settings.breaker_failures, settings.breaker_reset_s, fallbacks)


_policies: dict[int, ResiliencePolicy] = {}
# Re-entrant: a garbage collection can run a model's finalizer (`_forget`) on a thread that already holds it.
_policies_lock = threading.RLock()


def protect(model: R, policy: ResiliencePolicy) -> R:
    """Attach `policy` to `model` (returned as is): graphcraft's calls to it retry, fall back and
    use its breaker. Kept per model object, dropped with it."""
    with _policies_lock:
        known = id(model) in _policies
        _policies[id(model)] = policy
    if not known:
        weakref.finalize(model, _forget, id(model))
    return model


def _forget(model_id: int) -> None:
    with _policies_lock:
        policy = _policies.pop(model_id, None)
    del policy  # released outside the lock: its fallback models' own finalizers take the lock too


def policy_of(model: Any) -> ResiliencePolicy | None:
    """The policy attached to `model` by `protect`, or None (the model is used as given)."""
    with _policies_lock:
        return _policies.get(id(model))
