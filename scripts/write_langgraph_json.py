"""Regenerate langgraph.json from the graph registry (run after adding a graph module)."""

from __future__ import annotations

import json
from pathlib import Path

from graphcraft.graphs import available_graphs


def langgraph_config() -> dict:
    # graphcraft/serving.py serves each graph followed by its audit node (served runs skip graphcraft.ask).
    graphs = {name: f"./graphcraft/serving.py:{name}" for name in available_graphs()}
    return {
        "$schema": "https://langgra.ph/schema.json",
        "python_version": "3.11",
        "dependencies": ["."],
        "graphs": graphs,
    }


if __name__ == "__main__":
    path = Path(__file__).parents[1] / "langgraph.json"
    path.write_text(json.dumps(langgraph_config(), indent=2) + "\n")
    print(f"wrote {path} with {len(langgraph_config()['graphs'])} graphs")
