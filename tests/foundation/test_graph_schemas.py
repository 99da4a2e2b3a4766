"""Studio's input form and LangGraph Server's assistant schemas come from the graphs' JSON schemas."""

from __future__ import annotations

import pytest

from graphcraft.graphs import available_graphs, load_graph_module


@pytest.mark.parametrize("name", sorted(available_graphs()))
def test_every_graph_publishes_its_input_and_output_schema(name: str) -> None:
    graph = load_graph_module(name).graph
    inputs = graph.get_input_jsonschema()
    outputs = graph.get_output_jsonschema()
    assert "question" in inputs["properties"]
    assert {"answer", "trace"} <= set(outputs["properties"])
