"""Every graph lives in its own module here; the registry discovers them by scanning.

A graph module defines DESCRIPTION, a State, its nodes, `build(...)` and `graph = build()`.
Descriptions are read with `ast` so that listing graphs imports none of them (and a graph
whose optional extra is not installed still shows up, failing only when used).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from graphcraft.errors import GraphcraftError, UnknownGraphError

_HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def available_graphs() -> dict[str, str]:
    """{name: one-line description} of every graph module."""
    graphs: dict[str, str] = {}
    for info in pkgutil.iter_modules([str(_HERE)]):
        if info.name.startswith("_"):
            continue
        tree = ast.parse((_HERE / f"{info.name}.py").read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "DESCRIPTION" for t in node.targets
            ):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    graphs[info.name] = node.value.value
    return dict(sorted(graphs.items()))


def load_graph_module(name: str) -> ModuleType:
    """The module of graph `name`; UnknownGraphError lists the valid names."""
    known = available_graphs()
    if name not in known:
        raise UnknownGraphError(name, list(known))
    try:
        return importlib.import_module(f"graphcraft.graphs.{name}")
    except ModuleNotFoundError as exc:  # an optional extra is not installed
        raise GraphcraftError(f"graph {name!r} needs the package {exc.name!r}: pip install 'graphcraft[all]'") from exc
