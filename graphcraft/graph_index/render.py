"""Pictures of the entity graph: an entity's neighbourhood, or the communities of one level.

PNG through matplotlib + networkx (headless, Agg backend), or interactive HTML through pyvis
when the output name ends in .html. The subgraph is read with parameterised Cypher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from graphcraft.errors import GraphcraftError
from graphcraft.graph_index.resolve import normalise

SUFFIXES = (".png", ".html")
_PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]


def check_render_options(out: str | Path, hops: int = 1, max_nodes: int = 40) -> None:
    """GraphcraftError (a one-line CLI error) for options `render` cannot honour."""
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIXES:
        raise GraphcraftError(
            f"output {out} must end in .png (image) or .html (interactive), not {suffix or 'no suffix'!r}"
        )
    if max_nodes < 1:
        raise GraphcraftError(f"--max-nodes must be at least 1, got {max_nodes}")
    if hops < 0:
        raise GraphcraftError(f"--hops must be 0 or more, got {hops}")


def find_entity(graph_store: Any, name: str) -> dict[str, Any]:
    """The entity called `name` (any alias, any case); GraphcraftError listing close names if none."""
    key = normalise(name)
    rows = graph_store.query(
        "MATCH (e:Entity) WHERE e.norm = $key OR $key IN e.keys RETURN e.id AS id, e.name AS name, e.type AS type "
        "ORDER BY e.mentions DESC LIMIT 1",
        {"key": key},
    )
    if rows:
        return rows[0]
    close = graph_store.query(
        "MATCH (e:Entity) WHERE toLower(e.name) CONTAINS $part RETURN e.name AS name ORDER BY e.mentions DESC LIMIT 5",
        {"part": key.split()[0] if key else ""},
    )
    hint = f"; did you mean: {', '.join(r['name'] for r in close)}" if close else ""
    raise GraphcraftError(f"no entity named {name!r} in the graph{hint}")


def neighbourhood_graph(graph_store: Any, entity: str, hops: int = 1, max_nodes: int = 40) -> nx.MultiDiGraph:
    """The entity and its neighbours up to `hops` away (strongest relations first)."""
    start = find_entity(graph_store, entity)
    g = nx.MultiDiGraph()
    g.add_node(start["id"], label=start["name"], type=start["type"], hop=0)
    frontier = [start["id"]]
    for hop in range(1, hops + 1):
        rows = graph_store.query(
            "MATCH (a:Entity)-[r:RELATED]->(b:Entity) WHERE a.id IN $ids OR b.id IN $ids "
            "RETURN a.id AS a, a.name AS an, a.type AS at, b.id AS b, b.name AS bn, b.type AS bt, "
            "r.type AS rel, r.weight AS w "
            "ORDER BY w DESC LIMIT $limit",
            {"ids": frontier, "limit": max_nodes * 4},
        )
        new: list[str] = []
        for row in rows:
            for node, label, etype in ((row["a"], row["an"], row["at"]), (row["b"], row["bn"], row["bt"])):
                if node not in g and g.number_of_nodes() < max_nodes:
                    g.add_node(node, label=label, type=etype, hop=hop)
                    new.append(node)
            if row["a"] in g and row["b"] in g:
                g.add_edge(row["a"], row["b"], label=row["rel"], weight=float(row["w"] or 1.0))
        frontier = new
    return g


def communities_graph(graph_store: Any, level: int = 0, max_nodes: int = 150) -> nx.MultiDiGraph:
    """The most mentioned entities coloured by their community at `level`."""
    members = graph_store.query(
        "MATCH (e:Entity)-[:IN_COMMUNITY]->(c:Community {level: $level}) "
        "RETURN e.id AS id, e.name AS name, e.type AS type, "
        "c.id AS community, c.title AS title ORDER BY e.mentions DESC LIMIT $limit",
        {"level": level, "limit": max_nodes},
    )
    if not members:
        rows = graph_store.query("MATCH (c:Community) RETURN DISTINCT c.level AS level ORDER BY level")
        levels = [int(r["level"]) for r in rows if r["level"] is not None]
        if levels:
            raise GraphcraftError(f"no communities at level {level}: levels {', '.join(map(str, levels))} exist")
        raise GraphcraftError(
            f"no communities at level {level}: the graph has none yet, run `graphcraft graph build` first"
        )
    g = nx.MultiDiGraph()
    for row in members:
        g.add_node(row["id"], label=row["name"], type=row["type"], community=row["community"], title=row["title"])
    edges = graph_store.query(
        "MATCH (a:Entity)-[r:RELATED]->(b:Entity) WHERE a.id IN $ids AND b.id IN $ids "
        "RETURN a.id AS a, b.id AS b, r.type AS rel, r.weight AS w",
        {"ids": list(g.nodes)},
    )
    for row in edges:
        g.add_edge(row["a"], row["b"], label=row["rel"], weight=float(row["w"] or 1.0))
    return g


def _colours(g: nx.MultiDiGraph, by: str) -> dict[str, str]:
    groups = sorted({str(d.get(by, "")) for _, d in g.nodes(data=True)})
    index = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(groups)}
    return {n: index[str(d.get(by, ""))] for n, d in g.nodes(data=True)}


def draw(
    g: nx.MultiDiGraph, out: str | Path, title: str = "", colour_by: str = "type", edge_labels: bool = True
) -> Path:
    """Write the graph as PNG (matplotlib) or HTML (pyvis, when `out` ends in .html)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    colours = _colours(g, colour_by)
    if out.suffix.lower() == ".html":
        from pyvis.network import Network

        net = Network(height="750px", width="100%", directed=True, notebook=False, cdn_resources="in_line")
        for n, d in g.nodes(data=True):
            net.add_node(
                n, label=d.get("label", n), color=colours[n], title=f"{d.get('type', '')} {d.get('title', '')}".strip()
            )
        for a, b, d in g.edges(data=True):
            net.add_edge(a, b, title=d.get("label", ""), label=d.get("label", "") if edge_labels else "")
        out.write_text(net.generate_html(), encoding="utf-8")
        return out
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    simple = nx.Graph(g)
    pos = nx.spring_layout(simple, seed=7, k=1.2 / max(1, len(simple) ** 0.5))
    fig, ax = plt.subplots(figsize=(12, 9), dpi=110)
    nx.draw_networkx_edges(simple, pos, ax=ax, alpha=0.35, width=1.0)
    nx.draw_networkx_nodes(simple, pos, ax=ax, node_color=[colours[n] for n in simple.nodes], node_size=420, alpha=0.9)
    nx.draw_networkx_labels(
        simple, pos, ax=ax, labels={n: d.get("label", n) for n, d in g.nodes(data=True)}, font_size=8
    )
    if edge_labels and simple.number_of_edges() <= 60:
        labels = {(a, b): d.get("label", "") for a, b, d in g.edges(data=True) if d.get("label") != "MENTIONED_WITH"}
        nx.draw_networkx_edge_labels(simple, pos, ax=ax, edge_labels=labels, font_size=6, alpha=0.8)
    groups = {str(d.get(colour_by, "")): colours[n] for n, d in g.nodes(data=True)}
    if 1 < len(groups) <= 12:
        from matplotlib.lines import Line2D

        names = {str(d.get(colour_by, "")): str(d.get("title") or d.get(colour_by, "")) for _, d in g.nodes(data=True)}
        handles = [
            Line2D([0], [0], marker="o", color="w", markerfacecolor=c, markersize=9, label=names[k][:40])
            for k, c in sorted(groups.items())
        ]
        ax.legend(handles=handles, loc="lower left", fontsize=7, frameon=False)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def render(
    graph_store: Any, out: str | Path, entity: str | None = None, hops: int = 1, level: int = 0, max_nodes: int = 40
) -> Path:
    """An entity's neighbourhood (when `entity` is given) or the communities of `level`."""
    check_render_options(out, hops=hops, max_nodes=max_nodes)
    if entity:
        g = neighbourhood_graph(graph_store, entity, hops=hops, max_nodes=max_nodes)
        return draw(
            g, out, title=f"{g.nodes[next(iter(g.nodes))]['label']}: {hops}-hop neighbourhood", colour_by="type"
        )
    g = communities_graph(graph_store, level=level, max_nodes=max_nodes)
    return draw(g, out, title=f"communities at level {level}", colour_by="community", edge_labels=False)
