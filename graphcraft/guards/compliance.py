"""What the running configuration logs, retains and redacts, and a checklist per regime.

`report(settings)` reads nothing but the settings (and, for LangSmith tracing, the environment
mapping it is given) plus which of the store's files exist, so it answers the questions a data
protection officer asks before a deployment: where does personal data go, what stays on disk, what
is redacted, and which setting to change. Every checklist item is ``pass``, ``warn`` or ``fail``
with its fix. The checklists are a configuration review, not legal advice: items graphcraft cannot
decide (a lawful basis, a use case's risk class) are warnings that say what to record.

Regimes: GDPR (lawful basis, erasure, minimisation, redaction, transfers), HIPAA (PHI redaction,
audit trail, access control, PHI at rest and in transit) and the EU AI Act (record-keeping,
transparency, human oversight, robustness, risk notes).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from graphcraft.config import ENV_PREFIX, Settings, cache_file
from graphcraft.errors import url_without_password

Status = Literal["pass", "warn", "fail"]
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
TRACING_VARIABLES = ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING")
AUDIT_FILE, CHECKPOINT_FILE, FEEDBACK_FILE = "audit.jsonl", "checkpoints.sqlite", "feedback.sqlite"


@dataclass(frozen=True)
class Item:
    """One checklist line: what is checked, its status, why, and the setting that fixes it."""

    regime: str
    item: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Facts:
    """The configuration facts every check reads (so a check is one small function of them)."""

    settings: Settings
    guards: frozenset[str]
    models: dict[str, str]  # spec -> "local" | "remote"
    tracing: bool
    tracing_endpoint: str
    erase_available: bool

    @property
    def pii(self) -> bool:
        return "pii" in self.guards

    @property
    def remote_models(self) -> list[str]:
        return [spec for spec, where in self.models.items() if where == "remote"]

    @property
    def sensitive_stay_local(self) -> bool:
        """PII requests go only to a local model (Settings.pii_local_model), whatever chat_model is."""
        local = self.settings.pii_local_model.strip()
        return self.pii and bool(local) and model_location(local, self.settings.base_url) == "local"

    def guards_fix(self, *names: str) -> str:
        return f"{ENV_PREFIX}GUARDS={','.join(sorted(self.guards | set(names)))}"


def model_location(spec: str, base_url: str = "") -> str:
    """ "local" when the model runs here or on this machine's server, "remote" for a provider's API."""
    from graphcraft.local_models import is_local_spec

    spec = spec.strip()
    if is_local_spec(spec):
        return "local"
    if base_url.strip():
        host = (urlsplit(base_url.strip()).hostname or "").lower()
        return "local" if host in LOCAL_HOSTS else "remote"
    return "local" if spec.startswith("ollama:") else "remote"  # Ollama's client defaults to localhost


def tracing_on(environ: Mapping[str, str]) -> bool:
    """LangSmith tracing switched on (LANGSMITH_TRACING or the older LANGCHAIN_TRACING[_V2])."""
    return any(environ.get(name, "").strip().lower() in ("true", "1", "yes") for name in TRACING_VARIABLES)


def _facts(settings: Settings, environ: Mapping[str, str]) -> Facts:
    specs = [settings.chat_model, *settings.fallback_models.split(",")]
    models = {spec.strip(): model_location(spec, settings.base_url) for spec in specs if spec.strip()}
    from graphcraft.guards.nodes import active_guards  # the runtime's reading: an unknown guard is an error here too

    guards = active_guards(settings)
    erase = importlib.util.find_spec("graphcraft.guards.erase") is not None
    endpoint = environ.get("LANGSMITH_ENDPOINT", "") or "LangSmith (api.smith.langchain.com)"
    return Facts(settings, guards, models, tracing_on(environ), endpoint, erase)


def _place(what: str, where: str | Path, holds: str, *, on: bool = True, note: str = "") -> dict[str, Any]:
    path = Path(where) if isinstance(where, Path) else None
    return {
        "what": what,
        "where": str(where),
        "on": on,
        "exists": bool(path and path.exists()),
        "holds": holds,
        **({"note": note} if note else {}),
    }


def retained(facts: Facts) -> list[dict[str, Any]]:
    """Every place the configuration keeps data on disk or on a server, and what it holds."""
    s = facts.settings
    prompts = (
        "prompts and replies, personal data replaced by the pii guard" if facts.pii else "prompts and replies in clear"
    )
    cache_where: str | Path = (
        url_without_password(s.redis_url.strip()) if s.redis_url.strip() else (cache_file(s) or "")
    )
    checkpoints: str | Path = url_without_password(s.postgres_uri) if s.postgres_uri else s.store / CHECKPOINT_FILE
    return [
        _place("store", s.store, "ingested documents: chunk text, vectors, keyword index, entity graph, summaries"),
        _place(
            "audit trail",
            s.store / AUDIT_FILE,
            "time, user id, graph, question sha256 (no text), sources, decisions, cost; hash-chained",
            on=s.audit,
        ),
        _place("llm cache", cache_where, prompts, on=bool(s.redis_url.strip() or s.cache)),
        _place(
            "checkpoints",
            checkpoints,
            "conversation threads (runs with a thread id): the question in clear, "
            "answers, and the pseudonymisation map when the pii guard pseudonymises",
        ),
        _place("feedback", s.store / FEEDBACK_FILE, "adaptive_rag runs: question text in clear, strategy, scores"),
    ]


def logged(facts: Facts) -> list[dict[str, Any]]:
    """What a run writes or sends beyond its answer."""
    s = facts.settings
    trace = "personal data redacted (pii guard)" if facts.pii else "question-derived text in clear"
    rows = [
        {"what": "audit trail", "where": str(s.store / AUDIT_FILE), "on": s.audit, "holds": "no question text"},
        {"what": "run trace (returned to the caller)", "where": "the caller", "on": True, "holds": trace},
        {
            "what": "langsmith tracing",
            "where": facts.tracing_endpoint,
            "on": facts.tracing,
            "holds": "every node's inputs and outputs, including the raw question given to the graph",
        },
    ]
    rows += [
        {
            "what": f"model calls to {spec}",
            "where": "provider",
            "on": True,
            "holds": "prompts " + ("with personal data replaced" if facts.pii else "in clear"),
        }
        for spec in facts.remote_models
    ]
    return rows


def redacted(facts: Facts) -> list[dict[str, Any]]:
    """What is redacted before it reaches a model, a trace or the audit trail."""
    s = facts.settings
    mode = s.pii_mode if facts.pii else "off"
    restore = facts.pii and s.pii_mode == "pseudonymise" and s.pii_restore
    return [
        {"what": "question, retrieved chunks, tool outputs before a model sees them", "how": mode},
        {"what": "run trace", "how": "redact" if facts.pii else "off"},
        {"what": "audit trail question", "how": "sha256 only"},
        {"what": "answer to the caller", "how": "pseudonyms restored" if restore else "as the model wrote it"},
    ]


def gdpr(f: Facts) -> list[Item]:
    """GDPR: lawful basis, redaction, erasure, minimisation, transfers to processors."""
    s, regime = f.settings, "GDPR"
    return [
        Item(
            regime,
            "lawful basis",
            "warn",
            "graphcraft cannot decide it: record the basis (Art. 6) and the purpose of processing for the "
            "documents ingested and the questions asked",
            "document it in your records (Art. 30)",
        ),
        Item(
            regime,
            "PII redaction",
            "pass" if f.pii else "fail",
            f"pii guard on ({s.pii_mode}) before any model"
            if f.pii
            else "personal data reaches models and traces as is",
            "" if f.pii else f.guards_fix("pii"),
        ),
        _erasure_item(f, regime),
        _minimisation_item(f, regime),
        _transfer(f, regime, "processors outside your control (Art. 28, 44)"),
        _tracing_item(f, regime),
    ]


def _erasure_item(f: Facts, regime: str) -> Item:
    """Art. 17: `graphcraft erase` reaches the store, graph, SQLite cache and checkpoints, feedback, audit."""
    s = f.settings
    if not f.erase_available:
        return Item(
            regime, "erasure", "fail", "no erasure command in this installation", "install graphcraft with erase"
        )
    unreached = [
        name
        for name, on in (("the Redis cache", s.redis_url.strip()), ("PostgreSQL checkpoints", s.postgres_uri))
        if on
    ]
    if unreached:
        return Item(
            regime,
            "erasure",
            "warn",
            f"graphcraft erase --subject does not search {' and '.join(unreached)}",
            f"{ENV_PREFIX}REDIS_URL= / {ENV_PREFIX}POSTGRES_URI= (SQLite), or erase there by hand",
        )
    return Item(
        regime,
        "erasure",
        "pass",
        "graphcraft erase --subject removes a person from the store, graph, cache, checkpoints, feedback and audit",
    )


def _minimisation_item(f: Facts, regime: str) -> Item:
    """Art. 5(1)(c): question text kept in clear beyond the run (the cache counts unless the pii guard is on)."""
    kept = [
        p["what"]
        for p in retained(f)
        if p["on"] and "in clear" in p["holds"] and (p["exists"] or p["what"] == "llm cache")
    ]
    if not kept:
        return Item(regime, "data minimisation", "pass", "no question text kept in clear beyond the run")
    fixes = {
        "llm cache": f"{ENV_PREFIX}CACHE= (off) or {f.guards_fix('pii')}",
        "checkpoints": "run without a thread id, or erase old threads",
        "feedback": "purge feedback.sqlite on a schedule",
    }
    return Item(
        regime, "data minimisation", "warn", f"kept in clear: {', '.join(kept)}", "; ".join(fixes[k] for k in kept)
    )


def _transfer(f: Facts, regime: str, who: str) -> Item:
    """Prompts sent to a remote model: fine when local, redacted, or when PII requests stay local."""
    remote = f.remote_models
    if not remote:
        return Item(regime, "model provider", "pass", "no remote model: prompts stay on this machine")
    if f.sensitive_stay_local:
        return Item(regime, "model provider", "pass", f"requests with PII go only to {f.settings.pii_local_model}")
    if f.pii:
        return Item(
            regime,
            "model provider",
            "warn",
            f"prompts go to {', '.join(remote)}, {who}, with personal data replaced",
            f"{ENV_PREFIX}PII_LOCAL_MODEL=local (PII requests stay local), or a contract",
        )
    return Item(
        regime,
        "model provider",
        "fail",
        f"prompts with personal data in clear go to {', '.join(remote)}",
        f"{f.guards_fix('pii')} or {ENV_PREFIX}CHAT_MODEL=local",
    )


def _tracing_item(f: Facts, regime: str) -> Item:
    if not f.tracing:
        return Item(regime, "third-party tracing", "pass", "LangSmith tracing is off")
    return Item(
        regime,
        "third-party tracing",
        "fail",
        f"every node's inputs, the raw question included, go to {f.tracing_endpoint}",
        "LANGSMITH_TRACING=false (and LANGCHAIN_TRACING_V2=false)",
    )


def hipaa(f: Facts) -> list[Item]:
    """HIPAA: PHI redaction, audit trail, access control, PHI at rest and to business associates."""
    s, regime = f.settings, "HIPAA"
    cache_on = bool(s.redis_url.strip() or s.cache)
    at_rest: Status = "warn" if cache_on and not f.pii else "pass"
    return [
        Item(
            regime,
            "PHI redaction",
            "pass" if f.pii else "fail",
            "pii guard on: names, places, phones, e-mails, SSNs, cards, IBANs, IPs (not dates or record numbers "
            "of the 18 Safe Harbor identifiers)"
            if f.pii
            else "PHI reaches models, cache and traces as is",
            "" if f.pii else f.guards_fix("pii"),
        ),
        Item(
            regime,
            "audit trail",
            "pass" if s.audit else "fail",
            "every run in audit.jsonl, hash-chained (graphcraft audit verify)" if s.audit else "runs are not recorded",
            "" if s.audit else f"{ENV_PREFIX}AUDIT=true",
        ),
        Item(
            regime,
            "access control",
            "pass" if s.clearance != "restricted" else "warn",
            f"callers see documents up to {s.clearance}"
            if s.clearance != "restricted"
            else "clearance 'restricted': callers see every document, restricted ones included",
            "" if s.clearance != "restricted" else f"{ENV_PREFIX}CLEARANCE=confidential (or lower) per caller",
        ),
        Item(
            regime,
            "PHI at rest",
            at_rest,
            "the llm cache keeps prompts in clear"
            if at_rest == "warn"
            else "no prompt cache in clear (checkpoints and feedback keep questions: encrypt the store's disk)",
            f"{ENV_PREFIX}CACHE= or {f.guards_fix('pii')}" if at_rest == "warn" else "",
        ),
        _transfer(f, regime, "business associates (a BAA is needed)"),
        _tracing_item(f, regime),
    ]


def ai_act(f: Facts) -> list[Item]:
    """EU AI Act: record-keeping and transparency, human oversight, robustness, risk notes."""
    s, regime = f.settings, "EU AI Act"
    injection = "injection" in f.guards
    return [
        Item(
            regime,
            "record-keeping (Art. 12)",
            "pass" if s.audit else "fail",
            "runs logged with graph, sources, decisions and cost" if s.audit else "runs are not logged",
            "" if s.audit else f"{ENV_PREFIX}AUDIT=true",
        ),
        Item(
            regime,
            "transparency (Art. 13, 50)",
            "warn",
            "answers cite their sources and return a trace of decisions; tell users they are talking to an AI system",
            "say so in your user interface",
        ),
        Item(
            regime,
            "human oversight (Art. 14)",
            "warn",
            "approval steps are build options of the acting graphs (plan_execute approve_plan, tool_agent "
            "approve_tools), not a setting: this review cannot see whether they are on",
            "build acting graphs with approve_plan / approve_tools",
        ),
        Item(
            regime,
            "robustness (Art. 15)",
            "pass" if injection else "fail",
            "injection guard screens questions, chunks and tool outputs"
            if injection
            else "no prompt-injection screening",
            "" if injection else f.guards_fix("injection"),
        ),
        Item(
            regime,
            "risk notes (Art. 6, 9)",
            "warn",
            "classify the use case (high-risk uses need a risk "
            "management system); local models and retrieval limits reduce but do not remove the risk",
            "record the classification and its risk assessment",
        ),
    ]


def report(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole review as plain JSON: configuration, logged, retained, redacted, checklists, counts."""
    f = _facts(settings, os.environ if environ is None else environ)
    checklists = {"GDPR": gdpr(f), "HIPAA": hipaa(f), "EU AI Act": ai_act(f)}
    items = [item for regime in checklists.values() for item in regime]
    return {
        "configuration": {
            "store": str(settings.store),
            "guards": sorted(f.guards),
            "pii_mode": settings.pii_mode,
            "pii_restore": settings.pii_restore,
            "audit": settings.audit,
            "cache": "redis" if settings.redis_url.strip() else (settings.cache or "off"),
            "clearance": settings.clearance,
            "models": f.models or {"(none)": "offline"},
            "langsmith_tracing": f.tracing,
        },
        "logged": logged(f),
        "retained": retained(f),
        "redacted": redacted(f),
        "checklists": {name: [asdict(item) for item in regime] for name, regime in checklists.items()},
        "summary": {status: sum(item.status == status for item in items) for status in ("pass", "warn", "fail")},
    }
