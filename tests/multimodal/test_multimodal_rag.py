"""The multimodal_rag graph end to end on the generated report: real MiniLM, FAISS, BM25,
PyMuPDF and Tesseract; only the chat model is scripted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from graphcraft.config import get_settings
from graphcraft.errors import GraphcraftError
from graphcraft.eval.highlight import highlight_source, page_box_to_pixels
from graphcraft.eval.multimodal_data import REVENUE, SCANNED_FACTS, scanned_sentence_boxes
from graphcraft.graphs import multimodal_rag
from graphcraft.graphs.multimodal_rag import analyze_locally, answer_body, build
from graphcraft.ingestion.multimodal_pipeline import ingest_multimodal
from graphcraft.ingestion.ocr import tesseract_available
from graphcraft.retrievers.multimodal import modality_store_path, open_modality_stores
from graphcraft.stores.vector import open_store
from graphcraft.testing import ScriptedChatModel, final_state

pytestmark = pytest.mark.skipif(not tesseract_available(), reason="Tesseract not installed")


@pytest.fixture(scope="module")
def store(report, tmp_path_factory):
    root = tmp_path_factory.mktemp("mmstore")
    docs = root / "docs"
    docs.mkdir()
    shutil.copy(report.path, docs / "report.pdf")
    (docs / "notes.md").write_text("# Notes\n\nThe auditors from Kessler & Partners visited in November.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00\xff" * 500)
    settings = get_settings(store=root / "store")
    result = ingest_multimodal([docs], settings=settings)
    return {"root": root, "docs": docs, "settings": settings, "report": result}


@pytest.fixture(scope="module")
def graph(store):
    return build(settings=store["settings"])


def test_ingest_fills_one_store_per_modality_and_reports_the_bad_file(store):
    report = store["report"]
    assert report.files == 3 and report.skipped == 0
    assert [f["path"] for f in report.failed] == [str(store["docs"] / "broken.pdf")]
    assert "damaged" in report.failed[0]["error"]
    stores = open_modality_stores(store["settings"].store, store["settings"])
    assert set(stores) == {"text", "table", "image"}
    for modality, chunk_store in stores.items():
        docs = chunk_store.documents()
        assert docs and {d.metadata["modality"] for d in docs} == {modality}
        assert (modality_store_path(store["settings"].store, modality) / "CURRENT").exists()
    texts = " ".join(d.page_content for d in stores["text"].documents())
    assert "Kessler & Partners" in texts  # markdown goes through the ordinary loader into text
    main = open_store(store["settings"].store, store["settings"], create=False)
    assert len(main) == sum(len(s) for s in stores.values())  # mirrored for the text-only graphs


def test_reingest_of_unchanged_files_adds_nothing(store):
    again = ingest_multimodal([store["docs"]], settings=store["settings"])
    assert (again.added, again.skipped) == (0, 2)


def test_table_question_is_answered_from_the_cell(graph, report):
    out = graph.invoke({"question": "What was the Q3 revenue of the South region?"})
    assert answer_body(out["answer"]).startswith(f"South, Q3: {REVENUE['South'][2]}")
    (src,) = out["sources"]
    assert src["page"] == report.pages["table"] and src["modality"] == "table"
    x0, y0, x1, y1 = src["bbox"]
    tx0, ty0, tx1, ty1 = src["table_bbox"]
    assert tx0 <= x0 < x1 <= tx1 and ty0 <= y0 < y1 <= ty1 and (x1 - x0) < (tx1 - tx0) / 3
    assert f"page {report.pages['table']}, bbox [{x0:.0f}" in out["answer"]
    trace = out["trace"]
    assert trace["table_lookup"] and trace["answer_strategy"] == "table_lookup"
    assert trace["weights"]["table"] > trace["weights"]["text"] > trace["weights"]["image"]
    assert trace["llm_calls"] == 0 and trace["iterations"] == 0
    assert trace["action"] == "table_lookup" and trace["stop_reason"] is None
    assert set(out) == {"question", "answer", "sources", "trace"}


def test_aggregate_question_reads_the_whole_column(graph):
    out = graph.invoke({"question": "Which region had the highest Q4 revenue?"})
    best = max(REVENUE, key=lambda r: float(REVENUE[r][3]))
    assert answer_body(out["answer"]).startswith(f"{best} has the highest Q4: {REVENUE[best][3]}")


def test_scanned_page_question_cites_the_ocr_paragraph(graph, report):
    sentence = SCANNED_FACTS[2][0]
    out = graph.invoke({"question": SCANNED_FACTS[2][1]})
    assert SCANNED_FACTS[2][2] in answer_body(out["answer"])
    top = out["sources"][0]
    assert top["page"] == report.pages["scanned"] and top["ocr"] is True and sentence in top["text"]
    truth = scanned_sentence_boxes()[sentence]
    x0, y0, x1, y1 = top["bbox"]
    assert x0 <= truth[0] + 4 and y0 <= truth[1] + 4 and x1 >= truth[2] - 4 and y1 >= truth[3] - 4
    assert "(text, OCR)" in out["answer"]


def test_figure_question_weights_images_and_cites_the_chart(graph, report):
    out = graph.invoke({"question": "What does the chart of installed capacity show for 2023?"})
    assert out["trace"]["analysis"]["image"] is True
    images = [s for s in out["sources"] if s.get("modality") == "image"]
    assert images and images[0]["page"] == report.pages["image"]
    assert "240 MW" in answer_body(out["answer"])


def test_unrelated_question_widens_once_then_stops(graph):
    out = graph.invoke({"question": "zebra migration across the Serengeti grasslands"})
    trace = out["trace"]
    assert trace["widened"] is True and trace["iterations"] == 1 and trace["stop_reason"] is None
    assert [s["step"] for s in trace["steps"]].count("widen") == 1
    assert [s["step"] for s in trace["steps"]][-3:] == ["fuse", "lookup_table", "generate"]


def test_per_run_configuration_reaches_the_nodes(graph, store):
    question = "zebra migration across the Serengeti grasslands"
    out = graph.invoke({"question": question}, config={"configurable": {"max_iterations": 0}})
    trace = out["trace"]
    assert trace["widened"] is False and trace["iterations"] == 0 and trace["stop_reason"] == "max_iterations"
    assert "widen" not in [s["step"] for s in trace["steps"]]
    assert trace["action"] == "abstain" and trace["abstained"] is True and out["sources"] == []
    model = ScriptedChatModel(script=["not called"])
    table_q = {"question": "What was the Q3 revenue of the South region?"}
    cues = build(model, store["settings"]).invoke(table_q, config={"configurable": {"analyzer": "cues"}})
    assert cues["trace"]["analysis"]["strategy"] == "cues" and model.call_count == 0
    assert cues["trace"]["llm_calls"] == 0 and cues["trace"]["action"] == "table_lookup"


def test_working_channels_and_nodes_on_their_own(graph):
    state = final_state(graph, {"question": "What was the Q3 revenue of the South region?"})
    assert state["cell"]["answer"]["row"] == "South" and state["documents"] and state["floor"] is True
    analysis = multimodal_rag.analyze_query({"question": "What does figure 2 show?"}, graph.config)
    assert analysis["analysis"] == {"strategy": "cues", "table": True, "image": True}  # "2" is a number
    assert analysis["weights"]["image"] > analysis["weights"]["text"] and analysis["iterations"] == 0
    widened = multimodal_rag.widen({**analysis, "question": "q"})
    assert widened["floor"] is False and widened["iterations"] == 1 and set(widened["weights"].values()) == {1.0}
    assert [s["step"] for s in widened["steps"]] == ["analyze_query", "widen"]


def test_query_analysis_cues():
    assert analyze_locally("What was the total revenue in Q2?")["table"] is True
    assert analyze_locally("Who signed the report?") == {"strategy": "cues", "table": False, "image": False}
    assert analyze_locally("What does figure 2 show?")["image"] is True


def test_llm_analysis_and_generation_with_a_scripted_model(store, report):
    model = ScriptedChatModel(
        script=[
            {"table": False, "image": False, "reason": "a fact about a warehouse"},
            "The Gdansk depot stored 5,820 inverters [1].",
        ]
    )
    out = build(model, store["settings"]).invoke({"question": SCANNED_FACTS[2][1]})
    trace = out["trace"]
    assert trace["analysis"]["strategy"] == "llm" and trace["analysis"]["fallback"] is False
    assert trace["weights"]["table"] < trace["weights"]["text"]
    assert trace["llm_calls"] == 2 and trace["prompt_tokens"] > 0
    assert answer_body(out["answer"]) == "The Gdansk depot stored 5,820 inverters [1]."
    assert out["sources"][0]["page"] == report.pages["scanned"]
    assert "5,820" in model.calls[1].text  # the model was given the OCR'd knowledge
    assert trace["action"] == "generate" and trace["answer_strategy"] == "llm"


def test_malformed_llm_analysis_falls_back_to_cues(store):
    model = ScriptedChatModel(script=["not json", "still not json", "nope", "Revenue answer [1]."])
    out = build(model, store["settings"]).invoke({"question": "What was the Q1 revenue of the West region?"})
    analysis = out["trace"]["analysis"]
    assert analysis["fallback"] is True and analysis["table"] is True  # the cue words decided
    assert answer_body(out["answer"]).startswith(f"West, Q1: {REVENUE['West'][0]}")  # cells need no LLM


def test_graph_module_contract_and_missing_store(tmp_path):
    assert isinstance(multimodal_rag.DESCRIPTION, str) and multimodal_rag.graph is not None
    empty = build(settings=get_settings(store=tmp_path / "nothing"))
    with pytest.raises(GraphcraftError, match="--multimodal"):
        empty.invoke({"question": "anything"})


@pytest.mark.parametrize("where", ["settings", "stores"])
def test_empty_store_fails_before_any_model_call(tmp_path, where):
    model = ScriptedChatModel(script=["not json"], repeat_last=True)  # would cost 1 + 2 repairs in analysis
    if where == "settings":
        graph = build(model, get_settings(store=tmp_path / "nothing"), analyzer="llm")
    else:
        graph = build(
            model,
            get_settings(store=tmp_path),
            analyzer="llm",
            stores=open_modality_stores(tmp_path / "empty", get_settings(store=tmp_path), create=True),
        )
    with pytest.raises(GraphcraftError, match="--multimodal"):
        graph.invoke({"question": "What was the Q1 revenue?"})
    assert model.call_count == 0


def test_highlight_marks_the_cited_cell(graph, tmp_path):
    out = graph.invoke({"question": "What was the Q2 revenue of the East region?"})
    src = out["sources"][0]
    image = highlight_source(src, dpi=72, out=tmp_path / "cited.png")
    assert (tmp_path / "cited.png").stat().st_size > 1000
    pixels = np.asarray(image).astype(int)
    import pymupdf

    with pymupdf.open(src["source"]) as doc:
        x0, y0, x1, y1 = (int(v) for v in page_box_to_pixels(doc[src["page"] - 1], src["bbox"], 72))
    inside = pixels[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3].reshape(-1, 3)
    far = pixels[5:40, 5:40].reshape(-1, 3)
    assert (far == 255).all()  # the page margin is untouched
    tinted = (inside[:, 0] > 200) & (inside[:, 2] < 200)  # orange wash over white paper
    assert tinted.mean() > 0.5
    json.dumps(out["sources"])  # sources stay JSON-serialisable for the API and Studio
