"""Pictures of graphs: the state machine with the path one run took highlighted (matplotlib).

Works offline (Mermaid PNG rendering needs a web service), from `compiled.get_graph()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def draw_decision_path(compiled: Any, path: Sequence[str], ax: Any = None, title: str = "") -> Any:
    """Draw the graph's nodes and edges; nodes and edges on `path` are highlighted. Returns the axes."""
    import matplotlib.pyplot as plt
    import networkx as nx

    drawable = compiled.get_graph()
    g = nx.DiGraph()
    for node_id in drawable.nodes:
        g.add_node(node_id)
    for edge in drawable.edges:
        g.add_edge(edge.source, edge.target, conditional=edge.conditional)
    full_path = ["__start__", *path, "__end__"]
    on_path = set(zip(full_path, full_path[1:], strict=False))
    back = _back_edges(g)
    dag = nx.DiGraph([e for e in g.edges if e not in back])
    dag.add_nodes_from(g.nodes)
    layers: dict[str, int] = {}
    for n in nx.topological_sort(dag):  # longest path from the start: a node sits below all its predecessors
        layers[n] = max((layers[p] + 1 for p in dag.predecessors(n)), default=0)
    by_layer: dict[int, list[str]] = {}
    for n in g.nodes:
        by_layer.setdefault(layers.get(n, 0), []).append(n)
    pos = {n: (i - (len(ns) - 1) / 2, -layer) for layer, ns in by_layer.items() for i, n in enumerate(ns)}
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 1.1 * (len(by_layer) + 1)))
    nx.draw_networkx_nodes(
        g,
        pos,
        ax=ax,
        node_color=["#f4a259" if n in full_path else "#e3e3e3" for n in g.nodes],
        node_size=900,
        node_shape="s",
    )
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=8)
    for k, (u, v) in enumerate(g.edges):
        span = abs(layers.get(u, 0) - layers.get(v, 0))
        rad = 0.0 if span == 1 and (u, v) not in back else (0.5 + 0.1 * span) * (1 if k % 2 else -1)
        taken = (u, v) in on_path
        nx.draw_networkx_edges(
            g,
            pos,
            ax=ax,
            edgelist=[(u, v)],
            edge_color="#c0392b" if taken else "#9a9a9a",
            width=2.5 if taken else 1.0,
            style="solid" if taken else "dashed",
            arrows=True,
            arrowsize=14,
            node_size=900,
            node_shape="s",
            connectionstyle=f"arc3,rad={rad}",
        )
    ax.set_title(title or " → ".join(path), fontsize=9)
    ax.axis("off")
    return ax


def _back_edges(g: Any) -> set[tuple[str, str]]:
    """Edges that close a cycle, found by depth-first search from __start__ (loops drawn upwards)."""
    back: set[tuple[str, str]] = set()
    on_stack: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> None:
        on_stack.add(node)
        for nxt in g.successors(node):
            if nxt in on_stack:
                back.add((node, nxt))
            elif nxt not in done:
                visit(nxt)
        on_stack.discard(node)
        done.add(node)

    for root in ["__start__", *g.nodes]:
        if root in g and root not in done:
            visit(root)
    return back
