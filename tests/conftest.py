"""Shared test set-up: hermetic settings, the real embedding model once per session."""

from __future__ import annotations

import os

import pytest

# Tests never read the developer's configuration and never reach the network.
for _key in [k for k in os.environ if k.startswith("GRAPHCRAFT_")]:
    del os.environ[_key]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("LANGSMITH_TRACING", "false")


@pytest.fixture(scope="session")
def embeddings():  # type: ignore[no-untyped-def]
    """The real offline all-MiniLM-L6-v2 (loaded once)."""
    from graphcraft.models import get_embeddings

    return get_embeddings()


@pytest.fixture(autouse=True)
def _fresh_settings():  # type: ignore[no-untyped-def]
    from graphcraft.config import reset_settings_cache

    reset_settings_cache()
    yield
    reset_settings_cache()
