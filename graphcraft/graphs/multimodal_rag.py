"""Multimodal RAG over PDFs: text, tables, images and scanned pages, answers cite page + bbox.

    analyze_query -> retrieve -> fuse --nothing relevant, within max_iterations--> widen -> retrieve
                                      \\-> lookup_table -> generate

- analyze_query first makes sure the store holds multimodal chunks (a StoreError saying how
  to ingest them, before any model call), then decides which modalities matter: numbers,
  aggregates and quarters point to tables, "figure/chart/image" to images; text always counts.
  Offline by cue words; with a chat model by one structured call (falling back to the cues,
  recorded).
- retrieve searches each modality's own store (dense + BM25) and drops hits that neither
  match a query term nor come close in embedding space, so a modality with nothing relevant
  adds nothing.
- fuse merges the lists by reciprocal rank fusion weighted per modality.
- lookup_table answers from the table cells themselves: row label and column header matched
  to the question, the exact cell string returned, its box on the page cited.
- generate otherwise answers from the best knowledge strips (extractive offline, the chat
  model when configured), each citation carrying page, bbox and modality.
- widen is the one loop: when no modality returned anything relevant, retry with every
  modality at full weight and no relevance floor, while no bound is reached (``max_iterations``,
  the run's LLM-call, token and time budgets).

Ingest with ``graphcraft ingest PATH --multimodal`` (graphcraft.ingestion.multimodal_pipeline).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from graphcraft.chains.answer import Answer, generate_answer
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.chains.table_lookup import CellAnswer
from graphcraft.chains.table_lookup import lookup_table as find_cell
from graphcraft.config import Settings, settings_from
from graphcraft.errors import StoreError
from graphcraft.ingestion.pdf_tables import frame_from_csv
from graphcraft.models import structured_call
from graphcraft.retrievers.multimodal import (
    MODALITIES,
    MultimodalRetriever,
    modality_store_path,
    require_modality_stores,
)
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace, source_dict
from graphcraft.stores.vector import ChunkStore

GRAPH = "multimodal_rag"
DESCRIPTION = (
    "Multimodal RAG over PDFs: text, tables (answered from the cells), images and OCR'd scanned pages, fused by "
    "weighted RRF; answers cite page and bbox."
)

CUED_WEIGHT = 1.5  # a modality the question points to
UNCUED_WEIGHT = 0.6  # still searched, ranked after the first text hits
TEXT_WEIGHT = 1.0
FUSION_RRF_K = 10  # small k: modality weights move ranks by a few places, not dozens
MIN_SIMILARITY = 0.3  # a hit with no query term must be at least this close (cosine)
MIN_CELL_SCORE = 0.5  # row match x column match needed to answer from a cell
PROVENANCE = ("bbox", "modality", "caption", "ocr", "ocr_confidence", "low_confidence", "bbox_units")  # kept per source

_TABLE_CUES = re.compile(
    r"\b(how (much|many)|total|sum|average|mean|median|highest|lowest|largest|smallest|maximum|minimum|"
    r"percent(age)?|rate|ratio|share|compare|table|column|row|quarter(ly)?|q[1-4]|fy\s?\d{2,4}|revenue|sales|"
    r"cost|price|profit|budget|amount|value|figures for|per (year|quarter|month|region))\b|%|\d",
    re.IGNORECASE,
)
_IMAGE_CUES = re.compile(
    r"\b(figures?|fig\.?|charts?|graphs?|plots?|diagrams?|images?|pictures?|photos?|photographs?|illustrations?|"
    r"shown|shows?|depict(s|ed)?|visual|maps?|logos?|screenshots?|drawings?|axis|legend)\b",
    re.IGNORECASE,
)


ANALYZE_PROMPT = """A document collection has text passages, tables and images (figures, charts, photos).
Decide which of them could hold the answer to the question.

Question: {question}"""


class ModalityChoice(BaseModel):
    """Which kinds of content could answer the question (text is always searched)."""

    table: bool = Field(description="a number, amount, total, comparison or value that a table would hold")
    image: bool = Field(description="something shown in a figure, chart, diagram, photo or image")
    reason: str = Field(default="", max_length=160, description="one short sentence")


class State(InputState, OutputState, total=False):
    weights: dict[str, float]  # modality -> RRF weight (0 = not searched)
    analysis: dict[str, Any]  # how the weights were chosen
    hits: dict[str, list[Document]]  # per modality, after the relevance floor
    documents: list[Document]  # fused
    floor: bool  # apply the relevance floor (off once widened)
    iterations: int  # widen rounds; bounded by max_iterations
    cell: dict[str, Any] | None  # the table cell (or aggregate) that answers, if any
    # Plain channels (no reducer), reset by `analyze_query`: a thread that is asked a second question
    # (Studio, LangGraph Server) starts a fresh run instead of adding to the previous one.
    usage: Usage
    steps: list[dict[str, Any]]


def analyze_locally(question: str) -> dict[str, Any]:
    """Weights from cue words: tables for numbers/aggregates, images for figures/charts."""
    table = bool(_TABLE_CUES.search(question))
    image = bool(_IMAGE_CUES.search(question))
    return {"strategy": "cues", "table": table, "image": image}


def weights_for(table: bool, image: bool) -> dict[str, float]:
    """RRF weight per modality: text always counts; a modality the question points to counts more."""
    return {
        "text": TEXT_WEIGHT,
        "table": CUED_WEIGHT if table else UNCUED_WEIGHT,
        "image": CUED_WEIGHT if image else UNCUED_WEIGHT,
    }


def relevant(doc: Document, floor: bool) -> bool:
    """A hit is kept when BM25 matched a query term or its cosine reaches MIN_SIMILARITY."""
    if not floor:
        return True
    ranks = doc.metadata.get("ranks") or {}
    return "bm25" in ranks or float(doc.metadata.get("vector_score") or 0.0) >= MIN_SIMILARITY


def answer_body(answer: str) -> str:
    """The answer without its 'Sources:' footer (what a reader, or a hit-rate check, reads)."""
    return answer.split("\n\nSources:", 1)[0]


def where_cited(src: dict[str, Any]) -> str:
    """One footer line: citation number, file, page, box and kind of content."""
    name = str(src.get("source", "")).rsplit("/", 1)[-1]
    page = f", page {src['page']}" if src.get("page") else ""
    bbox = src.get("bbox")
    box = f", bbox [{', '.join(f'{v:.0f}' for v in bbox)}]" if bbox else ""
    kind = src.get("modality", "text") + (", OCR" if src.get("ocr") else "")
    return f"[{src['citation']}] {name}{page}{box} ({kind})"


def with_footer(text: str, sources: list[dict[str, Any]]) -> str:
    """The answer with a 'Sources:' footer listing where each citation is."""
    return text if not sources else text + "\n\nSources:\n" + "\n".join(where_cited(s) for s in sources)


def cell_source(doc: Document, cell: CellAnswer) -> dict[str, Any]:
    """Provenance of a table answer: the cell's own box (the table's box when unknown)."""
    src = source_dict(doc, text=cell.sentence())
    boxes = doc.metadata.get("table_cell_bboxes") or []
    cell_boxes = [boxes[i][j] for i, j in cell.cells if i < len(boxes) and j < len(boxes[i]) and boxes[i][j]]
    if cell_boxes:
        src["table_bbox"] = doc.metadata.get("bbox")
        src["bbox"] = [
            min(b[0] for b in cell_boxes),
            min(b[1] for b in cell_boxes),
            max(b[2] for b in cell_boxes),
            max(b[3] for b in cell_boxes),
        ]
    src.update(
        citation=1,
        modality="table",
        row=cell.row,
        column=cell.column,
        operation=cell.operation,
        caption=doc.metadata.get("caption"),
    )
    return src


def modality_stores(ctx: Context) -> dict[str, ChunkStore]:
    """The modality stores (the build option "stores", else ``<store>/multimodal/*``); a StoreError
    saying how to ingest them when none holds a chunk."""
    given = ctx.option("stores")
    if given is None:
        return opened_stores(ctx.settings)
    if not any(len(s) for s in given.values()):
        raise StoreError(
            "the given multimodal stores hold no chunks: ingest with `graphcraft ingest PATH --multimodal`"
        )
    return given


_OPENED: dict[tuple[str, str, str, tuple[str, ...]], dict[str, ChunkStore]] = {}  # see opened_stores


def opened_stores(settings: Settings) -> dict[str, ChunkStore]:
    """The stores under ``settings.store``, opened once per ingest: a new ingest (a new generation
    in a modality's CURRENT file) opens them again, so a long-lived graph sees new documents."""
    generations = []
    for modality in MODALITIES:
        current = modality_store_path(settings.store, modality) / "CURRENT"
        generations.append(current.read_text().strip() if current.exists() else "")
    key = (str(settings.store), settings.embedding_model, settings.clearance, tuple(generations))  # cleared per level
    if key not in _OPENED:
        if len(_OPENED) >= 8:  # bounded: a process that serves many stores keeps the latest few open
            _OPENED.pop(next(iter(_OPENED)))
        _OPENED[key] = require_modality_stores(settings.store, settings)
    return _OPENED[key]


def retriever(ctx: Context) -> MultimodalRetriever:
    """Hybrid search per modality store, fused by weighted RRF."""
    return MultimodalRetriever(stores=modality_stores(ctx), k=ctx.settings.top_k, rrf_k=FUSION_RRF_K)


def answer_from_strips(ctx: Context, state: State) -> Answer:
    """Refine each modality's documents into strips and answer from them; sources keep their box and modality."""
    question = state["question"]
    qvec = np.asarray(ctx.embeddings.embed_query(question), dtype=np.float32)
    stores = modality_stores(ctx)
    strips: list[Strip] = []
    for modality in MODALITIES:
        docs = [d for d in state["documents"] if d.metadata.get("modality") == modality]
        if docs:
            scores = [float(d.metadata.get("score", 0)) for d in docs]
            strips += refine_documents(question, qvec, docs, scores, stores.get(modality), ctx.settings.strip_threshold)
    answer = generate_answer(
        question, strips, ctx.model_within(state), documents=state["documents"]
    )  # sources: whole regions
    by_id = {d.metadata["chunk_id"]: d for d in state["documents"]}
    for src in answer.sources:
        doc = by_id.get(src["chunk_id"])
        if doc is not None:
            src.update({k: doc.metadata[k] for k in PROVENANCE if doc.metadata.get(k) is not None})
    return answer


# ---------------------------------------------------------------------- nodes (the pipeline's steps)
def analyze_query(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Check the stores hold chunks, then weight the modalities: by cue words, or by the model when there is one."""
    ctx = context(config, GRAPH)
    modality_stores(ctx)  # an empty store fails here, before the model is asked anything
    question = state["question"]
    local = analyze_locally(question)
    analyzer = ctx.option("analyzer", "auto")
    analysis, usage = local, empty_usage()
    if analyzer == "llm" or (analyzer == "auto" and ctx.model is not None):
        result = structured_call(
            ctx.require_model("multimodal query analysis"),
            ModalityChoice,
            ANALYZE_PROMPT.format(question=question),
            fallback=ModalityChoice(table=local["table"], image=local["image"], reason="cue words (fallback)"),
            max_repairs=ctx.settings.max_structured_repairs,
        )
        choice, usage = result.value, result.usage
        analysis = {"strategy": "llm", "table": choice.table, "image": choice.image, "reason": choice.reason}
        analysis.update(result.trace())
    return {
        "weights": weights_for(analysis["table"], analysis["image"]),
        "analysis": analysis,
        "floor": True,
        "iterations": 0,
        "hits": {},
        "documents": [],
        "cell": None,
        "usage": usage,
        "answer": "",
        "sources": [],
        "trace": {},
        "steps": [{"step": "analyze_query", **analysis}],
    }


def retrieve(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Hybrid search in each weighted modality's store; keep only the hits that are relevant."""
    ctx = context(config, GRAPH)
    wanted = [m for m in MODALITIES if state["weights"].get(m, 0) > 0]
    hits = retriever(ctx).search_each(state["question"], wanted)
    kept = {m: [d for d in docs if relevant(d, state.get("floor", True))] for m, docs in hits.items()}
    step = {
        "step": "retrieve",
        "found": {m: len(d) for m, d in hits.items()},
        "relevant": {m: len(d) for m, d in kept.items()},
    }
    return {"hits": kept, "steps": state["steps"] + [step]}


def fuse(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Merge the modality lists by reciprocal rank fusion, weighted per modality."""
    ctx = context(config, GRAPH)
    docs = retriever(ctx).fuse(state["hits"], state["weights"], k=ctx.settings.top_k)
    step = {
        "step": "fuse",
        "weights": state["weights"],
        "rrf_k": FUSION_RRF_K,
        "ranked": [f"{d.metadata['modality']}:p{d.metadata.get('page')}" for d in docs],
    }
    return {"documents": docs, "steps": state["steps"] + [step]}


def widen(state: State) -> dict[str, Any]:
    """Nothing relevant in any modality: search every modality at full weight, without the relevance floor."""
    return {
        "weights": {m: 1.0 for m in MODALITIES},
        "floor": False,
        "iterations": state.get("iterations", 0) + 1,
        "steps": state["steps"] + [{"step": "widen", "reason": "no relevant hit in any modality"}],
    }


def lookup_table(state: State) -> dict[str, Any]:
    """Answer from the table cells themselves: the best-matching cell (or aggregate) of the retrieved tables."""
    best: tuple[CellAnswer, Document] | None = None
    for doc in state["documents"]:
        if doc.metadata.get("modality") != "table" or not doc.metadata.get("table_csv"):
            continue
        cell = find_cell(state["question"], frame_from_csv(doc.metadata["table_csv"]))
        if cell and cell.score >= MIN_CELL_SCORE and (best is None or cell.score > best[0].score):
            best = (cell, doc)
    if best is None:
        return {"cell": None, "steps": state["steps"] + [{"step": "lookup_table", "found": False}]}
    cell, doc = best
    step = {
        "step": "lookup_table",
        "found": True,
        "row": cell.row,
        "column": cell.column,
        "operation": cell.operation,
        "score": cell.score,
    }
    return {"cell": {"answer": cell.__dict__, "source": cell_source(doc, cell)}, "steps": state["steps"] + [step]}


def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the table cell when one matched, else from the knowledge strips; cite page, bbox and modality."""
    ctx = context(config, GRAPH)
    if found := state.get("cell"):
        source = found["source"]
        caption = f" ({source['caption']})" if source.get("caption") else ""
        text = f"{CellAnswer(**found['answer']).sentence()}{caption} [1]"
        answer = Answer(text=text, sources=[source], strategy="table_lookup")
    else:
        answer = answer_from_strips(ctx, state)
    usage = add_usage(state.get("usage"), answer.usage)
    steps = state["steps"] + [{"step": "generate", "strategy": answer.strategy}]
    trace = make_trace(
        GRAPH,
        state,
        action="table_lookup" if found else "abstain" if answer.abstained else "generate",
        stop_reason=stop_reason(state, ctx),
        steps=steps,
        usage=usage,
        analysis=state.get("analysis", {}),
        weights=state.get("weights", {}),
        retrieved={m: len(d) for m, d in state.get("hits", {}).items()},
        table_lookup=bool(found),
        answer_strategy=answer.strategy,
        abstained=answer.abstained,
        widened=state.get("iterations", 0) > 0,
    )
    return {
        "answer": with_footer(answer.text, answer.sources),
        "sources": answer.sources,
        "usage": usage,
        "trace": trace,
        "steps": steps,
    }


# ---------------------------------------------------------------------- routing (the one loop is bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that kept the search from widening while nothing relevant was found, or None."""
    if state.get("documents") or not state.get("floor", True):
        return None
    return ctx.bounds.reached(state, state.get("iterations", 0))


def after_fuse(state: State, config: RunnableConfig) -> str:
    """Widen once nothing relevant was found (and the floor is still on), within the run's bounds."""
    if state.get("documents") or not state.get("floor", True) or stop_reason(state, context(config, GRAPH)):
        return "lookup_table"
    return "widen"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    stores: dict[str, ChunkStore] | None = None,
    analyzer: str = "auto",
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the multimodal RAG graph.

    model: chat model for query analysis and generation (None: configured one, or offline).
    stores: {"text"|"table"|"image": ChunkStore} to use instead of ``<settings.store>/multimodal/*``.
    analyzer: "auto" (LLM when a model exists), "cues" (offline) or "llm".
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    """
    ctx = Context(settings_from(settings, options), model=model, options={"stores": stores, "analyzer": analyzer})
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (analyze_query, retrieve, fuse, widen, lookup_table, generate):
        g.add_node(node.__name__, node)
    g.add_edge(START, "analyze_query")
    g.add_edge("analyze_query", "retrieve")
    g.add_edge("retrieve", "fuse")
    g.add_conditional_edges("fuse", after_fuse, ["widen", "lookup_table"])
    g.add_edge("widen", "retrieve")
    g.add_edge("lookup_table", "generate")
    g.add_edge("generate", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
