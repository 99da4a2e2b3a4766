"""Multimodal RAG over PDFs: text, tables, images and scanned pages, answers cite page + bbox.

    analyze_query -> retrieve -> fuse --nothing relevant, iterations < max--> widen -> retrieve
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
  modality at full weight and no relevance floor, at most ``max_iterations`` times.

Ingest with ``graphcraft ingest PATH --multimodal`` (graphcraft.ingestion.multimodal_pipeline).
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from graphcraft.chains.answer import ABSTAIN, generate_answer
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.chains.table_lookup import CellAnswer, lookup_table
from graphcraft.config import Settings, settings_from
from graphcraft.errors import StoreError
from graphcraft.ingestion.pdf_tables import frame_from_csv
from graphcraft.models import structured_call
from graphcraft.retrievers.multimodal import MODALITIES, MultimodalRetriever, require_modality_stores
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.result import make_trace, source_dict

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


class ModalityChoice(BaseModel):
    """Which kinds of content could answer the question (text is always searched)."""

    table: bool = Field(description="a number, amount, total, comparison or value that a table would hold")
    image: bool = Field(description="something shown in a figure, chart, diagram, photo or image")
    reason: str = Field(default="", max_length=160, description="one short sentence")


ANALYZE_PROMPT = """A document collection has text passages, tables and images (figures, charts, photos).
Decide which of them could hold the answer to the question.

Question: {question}"""


class MultimodalState(TypedDict, total=False):
    question: str
    weights: dict[str, float]  # modality -> RRF weight (0 = not searched)
    analysis: dict  # how the weights were chosen
    hits: dict[str, list[Document]]  # per modality, after the relevance floor
    documents: list[Document]  # fused
    floor: bool  # apply the relevance floor (off once widened)
    iterations: int  # widen rounds; bounded by max_iterations
    cell: dict | None  # the table cell (or aggregate) that answers, if any
    answer: str
    sources: list[dict]
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict], operator.add]
    trace: dict


def analyze_locally(question: str) -> dict:
    """Weights from cue words: tables for numbers/aggregates, images for figures/charts."""
    table = bool(_TABLE_CUES.search(question))
    image = bool(_IMAGE_CUES.search(question))
    return {"strategy": "cues", "table": table, "image": image}


def weights_for(table: bool, image: bool) -> dict[str, float]:
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


def _where(src: dict) -> str:
    name = str(src.get("source", "")).rsplit("/", 1)[-1]
    page = f", page {src['page']}" if src.get("page") else ""
    bbox = src.get("bbox")
    box = f", bbox [{', '.join(f'{v:.0f}' for v in bbox)}]" if bbox else ""
    kind = src.get("modality", "text") + (", OCR" if src.get("ocr") else "")
    return f"[{src['citation']}] {name}{page}{box} ({kind})"


def with_footer(text: str, sources: list[dict]) -> str:
    return text if not sources else text + "\n\nSources:\n" + "\n".join(_where(s) for s in sources)


def _cell_source(doc: Document, cell: CellAnswer) -> dict:
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


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    stores: dict | None = None,
    analyzer: str = "auto",
    **options: Any,
) -> Any:
    """Compile the multimodal RAG graph.

    model: chat model for query analysis and generation (None: configured one, or offline).
    stores: {"text"|"table"|"image": ChunkStore} to use instead of ``<settings.store>/multimodal/*``.
    analyzer: "auto" (LLM when a model exists), "cues" (offline) or "llm".
    """
    settings = settings_from(settings, options)
    base = Resources(settings, model=model)
    opened: dict[str, dict] = {}

    def modality_stores(res: Resources) -> dict:
        """The modality stores; a StoreError when none holds a chunk (checked before any model call)."""
        if stores is not None:
            if not any(len(s) for s in stores.values()):
                raise StoreError(
                    "the given multimodal stores hold no chunks: ingest with `graphcraft ingest PATH --multimodal`"
                )
            return stores
        key = str(res.settings.store)
        if key not in opened:
            opened[key] = require_modality_stores(res.settings.store, res.settings)
        return opened[key]

    def retriever(res: Resources) -> MultimodalRetriever:
        return MultimodalRetriever(stores=modality_stores(res), k=res.settings.top_k, rrf_k=FUSION_RRF_K)

    # ------------------------------------------------------------------ nodes
    def analyze_query(state: MultimodalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        modality_stores(res)  # an empty store fails here, before the model is asked anything
        question = state["question"]
        local = analyze_locally(question)
        use_llm = analyzer == "llm" or (analyzer == "auto" and res.model is not None)
        if not use_llm:
            return {
                "weights": weights_for(local["table"], local["image"]),
                "analysis": local,
                "floor": True,
                "iterations": 0,
                "steps": [{"step": "analyze_query", **local}],
            }
        fallback = ModalityChoice(table=local["table"], image=local["image"], reason="cue words (fallback)")
        result = structured_call(
            res.require_model("multimodal query analysis"),
            ModalityChoice,
            ANALYZE_PROMPT.format(question=question),
            fallback=fallback,
            max_repairs=res.settings.max_structured_repairs,
        )
        choice = result.value
        analysis = {
            "strategy": "llm",
            "table": choice.table,
            "image": choice.image,
            "reason": choice.reason,
            **result.trace(),
        }
        return {
            "weights": weights_for(choice.table, choice.image),
            "analysis": analysis,
            "floor": True,
            "iterations": 0,
            "usage": result.usage,
            "steps": [{"step": "analyze_query", **analysis}],
        }

    def retrieve(state: MultimodalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        hits = retriever(res).search_each(state["question"], [m for m in MODALITIES if state["weights"].get(m, 0) > 0])
        kept = {m: [d for d in docs if relevant(d, state.get("floor", True))] for m, docs in hits.items()}
        return {
            "hits": kept,
            "steps": [
                {
                    "step": "retrieve",
                    "found": {m: len(d) for m, d in hits.items()},
                    "relevant": {m: len(d) for m, d in kept.items()},
                }
            ],
        }

    def fuse(state: MultimodalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        docs = retriever(res).fuse(state["hits"], state["weights"], k=res.settings.top_k)
        return {
            "documents": docs,
            "steps": [
                {
                    "step": "fuse",
                    "weights": state["weights"],
                    "rrf_k": FUSION_RRF_K,
                    "ranked": [f"{d.metadata['modality']}:p{d.metadata.get('page')}" for d in docs],
                }
            ],
        }

    def widen(state: MultimodalState) -> dict:
        return {
            "weights": {m: 1.0 for m in MODALITIES},
            "floor": False,
            "iterations": state.get("iterations", 0) + 1,
            "steps": [{"step": "widen", "reason": "no relevant hit in any modality"}],
        }

    def lookup(state: MultimodalState) -> dict:
        best: tuple[CellAnswer, Document] | None = None
        for doc in state["documents"]:
            if doc.metadata.get("modality") != "table" or not doc.metadata.get("table_csv"):
                continue
            cell = lookup_table(state["question"], frame_from_csv(doc.metadata["table_csv"]))
            if cell and cell.score >= MIN_CELL_SCORE and (best is None or cell.score > best[0].score):
                best = (cell, doc)
        if best is None:
            return {"cell": None, "steps": [{"step": "lookup_table", "found": False}]}
        cell, doc = best
        return {
            "cell": {"answer": cell.__dict__, "source": _cell_source(doc, cell)},
            "steps": [
                {
                    "step": "lookup_table",
                    "found": True,
                    "row": cell.row,
                    "column": cell.column,
                    "operation": cell.operation,
                    "score": cell.score,
                }
            ],
        }

    def generate(state: MultimodalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        usage: Usage | None = None
        if found := state.get("cell"):
            source = found["source"]
            cell = CellAnswer(**found["answer"])
            caption = f" ({source['caption']})" if source.get("caption") else ""
            text, sources, strategy, abstained = f"{cell.sentence()}{caption} [1]", [source], "table_lookup", False
        else:
            text, sources, strategy, usage = _answer_from_strips(res, state)
            abstained = text == ABSTAIN
        answer = with_footer(text, sources)
        final = {**state, "usage": add_usage(state.get("usage"), usage)}
        trace = make_trace(
            "multimodal_rag",
            final,
            analysis=state.get("analysis", {}),
            weights=state.get("weights", {}),
            retrieved={m: len(d) for m, d in state.get("hits", {}).items()},
            table_lookup=bool(state.get("cell")),
            answer_strategy=strategy,
            abstained=abstained,
            widened=state.get("iterations", 0) > 0,
            steps=state.get("steps", []) + [{"step": "generate", "strategy": strategy}],
        )
        return {
            "answer": answer,
            "sources": sources,
            "usage": usage,
            "trace": trace,
            "steps": [{"step": "generate", "strategy": strategy}],
        }

    def _answer_from_strips(res: Resources, state: MultimodalState) -> tuple[str, list[dict], str, Usage | None]:
        question = state["question"]
        qvec = np.asarray(res.embeddings.embed_query(question), dtype=np.float32)
        all_stores = modality_stores(res)
        strips: list[Strip] = []
        by_id = {d.metadata["chunk_id"]: d for d in state["documents"]}
        for modality in MODALITIES:
            docs = [d for d in state["documents"] if d.metadata.get("modality") == modality]
            if docs:
                strips += refine_documents(
                    question,
                    qvec,
                    docs,
                    [float(d.metadata.get("score", 0)) for d in docs],
                    all_stores.get(modality),
                    res.settings.strip_threshold,
                )
        result = generate_answer(
            question, strips, res.model, documents=state["documents"]
        )  # sources: the whole chunk or table region
        sources = []
        for src in result.sources:
            doc = by_id.get(src["chunk_id"])
            if doc is not None:
                meta = doc.metadata
                src.update(
                    {
                        k: meta[k]
                        for k in (
                            "bbox",
                            "modality",
                            "caption",
                            "ocr",
                            "ocr_confidence",
                            "low_confidence",
                            "bbox_units",
                        )
                        if meta.get(k) is not None
                    }
                )
            sources.append(src)
        return result.text, sources, result.strategy, result.usage

    # ------------------------------------------------------------------ routing (the one loop is bounded here)
    def after_fuse(state: MultimodalState, config: RunnableConfig) -> str:
        s = base.for_config(config).settings
        if not state.get("documents") and state.get("floor", True) and state.get("iterations", 0) < s.max_iterations:
            return "widen"
        return "lookup_table"

    g = StateGraph(MultimodalState)
    g.add_node("analyze_query", analyze_query)
    g.add_node("retrieve", retrieve)
    g.add_node("fuse", fuse)
    g.add_node("widen", widen)
    g.add_node("lookup_table", lookup)
    g.add_node("generate", generate)
    g.add_edge(START, "analyze_query")
    g.add_edge("analyze_query", "retrieve")
    g.add_edge("retrieve", "fuse")
    g.add_conditional_edges("fuse", after_fuse, ["widen", "lookup_table"])
    g.add_edge("widen", "retrieve")
    g.add_edge("lookup_table", "generate")
    g.add_edge("generate", END)
    return g.compile(name="multimodal_rag")


graph = build()
