"""CRAG benchmark: three ratios measured side by side in one run, each with its absolute figures.

1. speed    offline CRAG answer time / bare hybrid-retriever time, same store and questions
            (target <= 1.3). The two are interleaved question by question (order alternating per
            repeat) after a warm-up; each question's time is the median over repeats, and the
            query-embedding cache is cleared before every timed call so neither side gets the
            other's embedding for free.
2. calls    LLM calls per answer of CRAG in LLM mode / the LangGraph-tutorial pattern (one grader
            call per document, then rewrite + generate) on the same questions (target <= 0.5).
            Both run the same scripted chat model, whose judgements come from one oracle (a
            document is relevant when it contains the question's answer keywords), over the same
            hybrid retriever and the same offline external source (samples/external). Calls are
            counted with graphcraft.runtime.accounting.UsageCallback and cross-checked against
            the model's own call counter.
3. ingest   ingestion of samples/corpus into a fresh store / embedding the same chunk texts with
            the same embeddings object (target <= 1.15), interleaved, median over repeats.

It also prints CRAG's offline answer hit rate and abstention figures on the sample questions
next to the bare retriever's recall@5.

    python benchmarks/crag.py [--repeats 3] [--ingest-repeats 3] [--profile]

--profile runs pyinstrument over one CRAG pass and one ingestion and prints where time goes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from graphcraft.api import ingest
from graphcraft.chains.answer import ABSTAIN
from graphcraft.config import get_settings
from graphcraft.eval import (
    SAMPLE_CORPUS,
    SAMPLE_EXTERNAL,
    Question,
    grade_result,
    is_correct,
    load_questions,
    print_table,
    recall_at_k,
    summarize,
)
from graphcraft.graphs import crag
from graphcraft.models import embed_texts, get_embeddings
from graphcraft.retrievers import make_retriever
from graphcraft.retrievers.external import StoreSearch
from graphcraft.runtime.accounting import UsageCallback
from graphcraft.stores.vector import open_store
from graphcraft.testing import ScriptCall, ScriptedChatModel

TARGETS = {"speed": 1.3, "calls": 0.5, "ingest": 1.15}


def clear_query_cache(embeddings: Any) -> None:
    """Forget memoised query vectors, so every timed call embeds its question as a new user's would."""
    cache = getattr(embeddings, "_query_cache", None)
    if cache is not None:
        cache.clear()


def progress(message: str, started: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# ----------------------------------------------------------------------------- 1. speed


def measure_speed(store: Any, questions: list[Question], repeats: int) -> tuple[dict, dict[str, dict]]:
    """Interleaved timing of the bare hybrid retriever and offline CRAG; returns figures and CRAG's last results."""
    settings = get_settings(store=store.path, chat_model="", external_store=None, web_search="")
    graph = crag.build(settings=settings, store=store, external=None)
    retriever = make_retriever("hybrid", store, settings.top_k)
    emb = store.embeddings
    for q in questions[:5]:  # warm-up: model, BM25 index, spaCy, graph compilation paths
        retriever.search(q.question)
        graph.invoke({"question": q.question})
    times: dict[str, dict[str, list[float]]] = {"retriever": {}, "crag": {}}
    results: dict[str, dict] = {}
    retrieved: dict[str, list[Document]] = {}
    for r in range(repeats):
        for i, q in enumerate(questions):
            order = ("retriever", "crag") if (r + i) % 2 == 0 else ("crag", "retriever")
            for side in order:
                clear_query_cache(emb)
                if side == "retriever":
                    t, retrieved[q.id] = timed(lambda q=q: retriever.search(q.question))
                else:
                    t, state = timed(lambda q=q: graph.invoke({"question": q.question}))
                    results[q.id] = {"answer": state["answer"], "sources": state["sources"], "trace": state["trace"]}
                times[side].setdefault(q.id, []).append(t)
    med = {side: {qid: statistics.median(ts) for qid, ts in per.items()} for side, per in times.items()}
    total = {side: sum(m.values()) for side, m in med.items()}
    per_q_ratio = statistics.median(med["crag"][q.id] / med["retriever"][q.id] for q in questions)
    figures = {
        "questions": len(questions),
        "repeats": repeats,
        "retriever ms/question": 1000 * total["retriever"] / len(questions),
        "crag ms/question": 1000 * total["crag"] / len(questions),
        "ratio (total)": total["crag"] / total["retriever"],
        "ratio (median per question)": per_q_ratio,
        "retrieved": retrieved,
    }
    return figures, results


# ----------------------------------------------------------------------------- 2. LLM calls


class Oracle:
    """One relevance/answer judgement shared by both patterns: text holds the question's answer keywords."""

    def __init__(self, questions: list[Question]) -> None:
        self.by_text = sorted(((q.question, q) for q in questions), key=lambda p: -len(p[0]))

    def question_in(self, text: str) -> Question | None:
        return next((q for t, q in self.by_text if t in text), None)

    @staticmethod
    def relevant(q: Question | None, text: str) -> bool:
        return bool(q and q.answer_keywords) and is_correct(text, q.answer_keywords)  # type: ignore[union-attr]

    def script(self, call: ScriptCall) -> Any:
        text = call.text
        q = self.question_in(text)
        if call.schema == "_Grades":  # graphcraft's one-call grader: every document at once
            listing = text.split("Documents:", 1)[-1]
            parts = [p for p in _split_numbered(listing)]
            return {str(i): 1.0 if self.relevant(q, body) else 0.0 for i, body in parts}
        if call.schema == "GradeDocuments":  # the tutorial's per-document grader
            document = text.split("Retrieved document:", 1)[-1].split("User question:", 1)[0]
            return {"binary_score": "yes" if self.relevant(q, document) else "no"}
        if "search query" in text or "Formulate an improved question" in text:  # rewrite
            return q.question.rstrip("?") if q else "query"
        knowledge = text.split("Question:", 1)[0]
        return f"{q.answer} [1]" if q is not None and self.relevant(q, knowledge) else ABSTAIN


def _split_numbered(listing: str) -> list[tuple[int, str]]:
    """'[1] text\\n\\n[2] text' -> [(1, text), (2, text)] (the grader prompt's document listing)."""
    import re

    marks = list(re.finditer(r"(?:^|\n\n)\[(\d+)\] ", listing))
    return [
        (int(m.group(1)), listing[m.end() : marks[j + 1].start() if j + 1 < len(marks) else len(listing)])
        for j, m in enumerate(marks)
    ]


class GradeDocuments(BaseModel):
    """Binary score for relevance check on retrieved documents (as in the LangGraph CRAG tutorial)."""

    binary_score: str = Field(description="Documents are relevant to the question, 'yes' or 'no'")


# Line breaks are part of these prompts; a trailing backslash only wraps the source line.
TUTORIAL_GRADER_SYSTEM = """You are a grader assessing relevance of a retrieved document to a user question.
If the document contains keyword(s) or semantic meaning related to the question, grade it as relevant.
Give a binary score 'yes' or 'no' score to indicate whether the document is relevant to the question."""
TUTORIAL_REWRITER_SYSTEM = """You a question re-writer that converts an input question to a better version \
that is optimized
for web search. Look at the input and try to reason about the underlying semantic intent / meaning."""
TUTORIAL_RAG_PROMPT = """You are an assistant for question-answering tasks. \
Use the following pieces of retrieved context to
answer the question. If you don't know the answer, just say that you don't know. \
Use three sentences maximum and keep the
answer concise.
Context: {context}
Question: {question}
Answer:"""


class TutorialState(TypedDict, total=False):
    question: str
    generation: str
    web_search: str
    documents: list[Document]


def build_tutorial(model: ScriptedChatModel, retriever: Any, external: Any, k: int) -> Any:
    """The LangGraph CRAG tutorial (langgraph_crag): grade each document with its own call, then
    rewrite + web search if any document is irrelevant, then generate."""
    grader = model.with_structured_output(GradeDocuments)

    def retrieve(state: TutorialState) -> dict:
        return {"documents": retriever.search(state["question"], k)}

    def grade_documents(state: TutorialState) -> dict:
        kept, web_search = [], "No"
        for d in state["documents"]:  # one LLM call per document
            score = grader.invoke(
                [
                    SystemMessage(TUTORIAL_GRADER_SYSTEM),
                    HumanMessage(f"Retrieved document: \n\n {d.page_content} \n\n User question: {state['question']}"),
                ]
            )
            if score.binary_score == "yes":
                kept.append(d)
            else:
                web_search = "Yes"
        return {"documents": kept, "web_search": web_search}

    def transform_query(state: TutorialState) -> dict:
        better = model.invoke(
            [
                SystemMessage(TUTORIAL_REWRITER_SYSTEM),
                HumanMessage(
                    f"Here is the initial question: \n\n {state['question']} \n Formulate an improved question."
                ),
            ]
        )
        return {"question": str(better.content)}

    def web_search(state: TutorialState) -> dict:
        found = external.search(state["question"], k)
        web = Document(page_content="\n".join(d.page_content for d in found))
        return {"documents": state["documents"] + [web]}

    def generate(state: TutorialState) -> dict:
        context = "\n\n".join(d.page_content for d in state["documents"])
        reply = model.invoke(TUTORIAL_RAG_PROMPT.format(context=context, question=state["question"]))
        return {"generation": str(reply.content)}

    def decide_to_generate(state: TutorialState) -> str:
        return "transform_query" if state["web_search"] == "Yes" else "generate"

    g = StateGraph(TutorialState)
    for node in (retrieve, grade_documents, transform_query, web_search, generate):
        g.add_node(node.__name__, node)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "grade_documents")
    g.add_conditional_edges("grade_documents", decide_to_generate, ["transform_query", "generate"])
    g.add_edge("transform_query", "web_search")
    g.add_edge("web_search", "generate")
    g.add_edge("generate", END)
    return g.compile(name="crag_tutorial")


def measure_calls(store: Any, external: Any, questions: list[Question]) -> dict:
    settings = get_settings(store=store.path, chat_model="")
    oracle = Oracle(load_questions())
    ours_model = ScriptedChatModel(script=oracle.script)
    tut_model = ScriptedChatModel(script=oracle.script)
    ours = crag.build(model=ours_model, settings=settings, store=store, external=external, evaluator="llm")
    tutorial = build_tutorial(tut_model, make_retriever("hybrid", store, settings.top_k), external, settings.top_k)
    counts: dict[str, list[int]] = {"crag": [], "tutorial": []}
    seen_via_config = {"crag": 0, "tutorial": 0}
    actions: dict[str, int] = {}
    hits = {"crag": 0, "tutorial": 0}
    for q in questions:
        for name, graph, model in (("crag", ours, ours_model), ("tutorial", tutorial, tut_model)):
            # The counter rides on the model itself: graphcraft's nodes call models with their own callback
            # list, which drops handlers passed in the run config (counted separately below, see report).
            on_model, on_config = UsageCallback(), UsageCallback()
            model.callbacks = [on_model]
            state = graph.invoke({"question": q.question}, config={"callbacks": [on_config]})
            counts[name].append(int(on_model.usage["llm_calls"]))
            seen_via_config[name] += int(on_config.usage["llm_calls"])
            answer = state.get("answer", state.get("generation", ""))
            hits[name] += bool(q.answer_keywords) and is_correct(answer, q.answer_keywords)
            if name == "crag":
                actions[state["trace"]["action"]] = actions.get(state["trace"]["action"], 0) + 1
    for name, model in (("crag", ours_model), ("tutorial", tut_model)):
        if sum(counts[name]) != model.call_count:
            raise AssertionError(
                f"{name}: UsageCallback counted {sum(counts[name])} calls, the model saw {model.call_count}"
            )
    n = len(questions)
    return {
        "questions": n,
        "crag calls/answer": sum(counts["crag"]) / n,
        "tutorial calls/answer": sum(counts["tutorial"]) / n,
        "ratio": sum(counts["crag"]) / sum(counts["tutorial"]),
        "crag max": max(counts["crag"]),
        "tutorial max": max(counts["tutorial"]),
        "crag actions": actions,
        "answered with keywords (crag / tutorial)": f"{hits['crag']} / {hits['tutorial']}",
        "seen by a run-config UsageCallback (crag / tutorial)": (
            f"{seen_via_config['crag']} / {seen_via_config['tutorial']}"
        ),
    }


# ----------------------------------------------------------------------------- 3. ingestion


def measure_ingest(tmp: Path, repeats: int) -> tuple[dict, Path]:
    settings = get_settings()
    emb = get_embeddings(settings)
    first = tmp / "ingest-0"
    t0, report = timed(lambda: ingest([SAMPLE_CORPUS], store=first))  # warm-up, and the chunks to embed
    texts = [d.page_content for d in open_store(first, settings, create=False).documents()]
    embed_texts(emb, texts[:8])
    ingest_t, embed_t = [], []
    for r in range(repeats):
        for side in ("ingest", "embed") if r % 2 == 0 else ("embed", "ingest"):
            if side == "ingest":
                ingest_t.append(timed(lambda r=r: ingest([SAMPLE_CORPUS], store=tmp / f"ingest-{r + 1}"))[0])
            else:
                embed_t.append(timed(lambda: emb.embed_documents(texts))[0])
    figures = {
        "files": report["files"],
        "chunks": report["added"],
        "repeats": repeats,
        "ingest s": statistics.median(ingest_t),
        "embed chunks alone s": statistics.median(embed_t),
        "ratio": statistics.median(ingest_t) / statistics.median(embed_t),
        "first (cold) ingest s": t0,
    }
    return figures, first


# ----------------------------------------------------------------------------- profile


def profile(store: Any, questions: list[Question], tmp: Path) -> None:
    from pyinstrument import Profiler

    settings = get_settings(store=store.path, chat_model="", external_store=None, web_search="")
    graph = crag.build(settings=settings, store=store, external=None)
    profiler = Profiler(interval=0.001)
    with profiler:
        for q in questions:
            clear_query_cache(store.embeddings)
            graph.invoke({"question": q.question})
    print(profiler.output_text(unicode=True, color=False, show_all=False, timeline=False))
    profiler = Profiler(interval=0.001)
    with profiler:
        ingest([SAMPLE_CORPUS], store=tmp / "ingest-profile")
    print(profiler.output_text(unicode=True, color=False, show_all=False, timeline=False))


# ----------------------------------------------------------------------------- main


def verdict(name: str, ratio: float) -> str:
    return "OK" if ratio <= TARGETS[name] else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the questions (speed)")
    parser.add_argument("--ingest-repeats", type=int, default=2, help="timed ingestions and embeddings")
    parser.add_argument("--profile", action="store_true", help="profile CRAG and ingestion with pyinstrument")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    questions = load_questions()
    with tempfile.TemporaryDirectory(prefix="gc-bench-crag-") as tmp_name:
        tmp = Path(tmp_name)
        progress("ingestion vs embedding ...")
        ing, store_path = measure_ingest(tmp, args.ingest_repeats)
        ingest([SAMPLE_EXTERNAL], store=tmp / "external")
        settings = get_settings()
        store = open_store(store_path, settings, create=False)
        external = StoreSearch(tmp / "external", settings)

        progress("offline CRAG vs hybrid retriever ...")
        speed, results = measure_speed(store, questions, args.repeats)
        progress(
            f"ingest {ing['ingest s']:.2f} s vs embed {ing['embed chunks alone s']:.2f} s (ratio {ing['ratio']:.3f}); "
            f"CRAG {speed['crag ms/question']:.1f} ms vs retriever {speed['retriever ms/question']:.1f} ms "
            f"per question (ratio {speed['ratio (total)']:.3f})"
        )
        progress("LLM calls: CRAG vs tutorial pattern ...")
        calls = measure_calls(store, external, questions)
        progress("done measuring")
        print(f"LLM-call details: {calls}")

        print_table(
            [
                {
                    "ratio": "offline CRAG time / hybrid retriever time",
                    "measured": speed["ratio (total)"],
                    "target": f"<= {TARGETS['speed']}",
                    "verdict": verdict("speed", speed["ratio (total)"]),
                    "figures": f"{speed['crag ms/question']:.1f} ms vs {speed['retriever ms/question']:.1f} ms "
                    f"per question (median of {speed['repeats']} interleaved repeats, {speed['questions']} questions; "
                    f"median per-question ratio {speed['ratio (median per question)']:.2f})",
                },
                {
                    "ratio": "LLM calls per answer: CRAG (LLM mode) / tutorial",
                    "measured": calls["ratio"],
                    "target": f"<= {TARGETS['calls']}",
                    "verdict": verdict("calls", calls["ratio"]),
                    "figures": f"{calls['crag calls/answer']:.2f} vs {calls['tutorial calls/answer']:.2f} "
                    f"calls per answer (max {calls['crag max']} vs {calls['tutorial max']}; "
                    f"{calls['questions']} questions; CRAG actions {calls['crag actions']})",
                },
                {
                    "ratio": "ingestion time / embedding the chunks alone",
                    "measured": ing["ratio"],
                    "target": f"<= {TARGETS['ingest']}",
                    "verdict": verdict("ingest", ing["ratio"]),
                    "figures": f"{ing['ingest s']:.2f} s vs {ing['embed chunks alone s']:.2f} s "
                    f"for {ing['files']} files / {ing['chunks']} chunks (median of {ing['repeats']} interleaved; "
                    f"cold first ingest {ing['first (cold) ingest s']:.2f} s)",
                },
            ],
            title="CRAG benchmark (samples/corpus, samples/questions.jsonl)",
            columns=["ratio", "measured", "target", "verdict", "figures"],
            digits=2,
        )

        # quality, offline, no external source: CRAG's answers vs the bare retriever's recall
        rows = [grade_result(q, results[q.id]) for q in questions]
        per_type = []
        for t in ("single", "paraphrase", "multi_hop", "overview", "no_retrieval", "unanswerable", "external"):
            chosen = [(q, r) for q, r in zip(questions, rows, strict=False) if q.type == t]
            recalls = [recall_at_k(speed["retrieved"][q.id], q.gold_sources, 5) for q, _ in chosen]
            recalls = [x for x in recalls if x is not None]
            per_type.append(
                {
                    "type": t,
                    "n": len(chosen),
                    "expected": "abstain" if chosen[0][0].expects_abstention else "answer",
                    "CRAG correct": sum(r["correct"] for _, r in chosen) / len(chosen),
                    "CRAG abstained": sum(r["abstained"] for _, r in chosen) / len(chosen),
                    "retriever recall@5": sum(recalls) / len(recalls) if recalls else None,
                }
            )
        summary = summarize(rows)
        gold = [recall_at_k(speed["retrieved"][q.id], q.gold_sources, 5) for q in questions]
        retriever_recall = sum(x for x in gold if x is not None) / sum(x is not None for x in gold)
        corpus_rows = [r for q, r in zip(questions, rows, strict=False) if q.in_corpus]
        answerable_recall = [recall_at_k(speed["retrieved"][q.id], q.gold_sources, 5) for q in questions if q.in_corpus]
        per_type.append(
            {
                "type": "corpus questions (single..overview)",
                "n": len(corpus_rows),
                "expected": "answer",
                "CRAG correct": sum(r["correct"] for r in corpus_rows) / len(corpus_rows),
                "CRAG abstained": sum(r["abstained"] for r in corpus_rows) / len(corpus_rows),
                "retriever recall@5": sum(answerable_recall) / len(answerable_recall),
            }
        )
        print_table(per_type, title="Offline CRAG (extractive, no external source) vs the bare hybrid retriever")
        print(
            f"offline CRAG: answer hit rate {summary['answer_hit_rate']:.3f} "
            f"on the {sum(not r['should_abstain'] for r in rows)} questions "
            f"that expect an answer; abstention accuracy {summary['abstention_accuracy']:.3f} "
            f"(right call to abstain or not, all "
            f"{summary['n']}), unanswerable+external abstained {summary['abstention_recall']:.3f}, "
            f"answerable wrongly abstained "
            f"{summary['false_abstention_rate']:.3f}; hybrid retriever recall@5 {retriever_recall:.3f} "
            f"({sum(x is not None for x in gold)} questions with gold sources)"
        )
        if args.profile:
            profile(store, questions, tmp)
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
