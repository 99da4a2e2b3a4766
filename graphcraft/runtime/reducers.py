"""LangGraph reducers for multi-agent state: channels keyed by agent (or topic) that parallel
branches write to in the same superstep without overwriting each other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphcraft.runtime.accounting import Usage, add_usage


def append_by_key(left: Mapping[str, list[Any]] | None, right: Mapping[str, list[Any]] | None) -> dict[str, list[Any]]:
    """Per key, the left list followed by the right one (keys are created on first write)."""
    merged = {key: list(items) for key, items in (left or {}).items()}
    for key, items in (right or {}).items():
        merged.setdefault(key, []).extend(items)
    return merged


def usage_by_key(left: Mapping[str, Usage] | None, right: Mapping[str, Usage] | None) -> dict[str, Usage]:
    """Per key (agent), usage summed."""
    out = dict(left or {})
    for key, usage in (right or {}).items():
        out[key] = add_usage(out.get(key), usage)
    return out
