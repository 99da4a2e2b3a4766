"""Every graph is written one way: ask-shaped output, module-level nodes, short functions, one trace builder.

These are the structural promises of the README's "How a graph is written"; each check reads the
real modules (or the compiled graphs) and names what breaks the rule.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from graphcraft.graphs import available_graphs, load_graph_module

PACKAGE = Path(__file__).parents[2] / "graphcraft"
GRAPHS = sorted(available_graphs())
ASK_SHAPE = {"question", "answer", "sources", "trace"}
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("name", GRAPHS)
def test_output_is_the_ask_shape_and_input_asks_a_question(name: str) -> None:
    graph = load_graph_module(name).graph
    assert set(graph.get_output_jsonschema()["properties"]) == ASK_SHAPE
    inputs = graph.get_input_jsonschema()
    assert "question" in inputs["properties"] and "question" in inputs.get("required", [])


@pytest.mark.parametrize("name", GRAPHS)
def test_nodes_are_module_level_functions_of_their_graph(name: str) -> None:
    """A node is importable and testable on its own: defined at module level, not inside build()."""
    module = load_graph_module(name)
    for node_name, spec in module.graph.builder.nodes.items():
        func = getattr(spec.runnable, "func", None) or getattr(spec.runnable, "afunc", None)
        if func is None:  # a compiled subgraph used as a node
            continue
        assert "<locals>" not in func.__qualname__, f"{name}.{node_name} is a closure: {func.__qualname__}"
        assert getattr(module, func.__name__, None) is func or inspect.getmodule(func).__name__.startswith(
            "graphcraft."
        ), f"{name}.{node_name} is not a module-level function"


@pytest.mark.parametrize("name", GRAPHS)
def test_build_only_wires_and_every_run_reads_the_bound_context(name: str) -> None:
    source = Path(load_graph_module(name).__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    build = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build")
    nested = [n.name for n in ast.walk(build) if isinstance(n, ast.FunctionDef | ast.Lambda) and n is not build]
    assert not nested, f"{name}.build defines {nested}: nodes and routing belong at module level"
    assert "bind_context(" in source and f'GRAPH = "{name}"' in source


def _functions() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((str(path.relative_to(PACKAGE.parent)), node.name, lines))
    return found


def test_no_function_is_longer_than_sixty_lines() -> None:
    long = [f"{path}:{name} ({lines} lines)" for path, name, lines in _functions() if lines > MAX_FUNCTION_LINES]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_one_trace_builder() -> None:
    """Traces are made by graphcraft.runtime.result.make_trace only (one key set for every graph)."""
    definitions = [
        f"{path}:{name}" for path, name, _ in _functions() if name in {"make_trace", "build_trace", "trace_of"}
    ]
    assert definitions == ["graphcraft/runtime/result.py:make_trace"]
