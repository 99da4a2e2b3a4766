"""Evaluation: question sets, mechanical grading, reports and plots.

from graphcraft.eval import load_questions, grade_result, summarize, print_table
questions = load_questions()                      # samples/questions.jsonl
rows = [grade_result(q, graphcraft.ask(q.question)) for q in questions]
print_table([summarize(rows)])
"""

from graphcraft.eval.datasets import (
    CORPUS_TYPES,
    NOT_IN_CORPUS_TYPES,
    QUESTION_TYPES,
    SAMPLE_CORPUS,
    SAMPLE_EXTERNAL,
    SAMPLE_QUESTIONS,
    DatasetError,
    Hop,
    Question,
    load_questions,
    split_by_id,
)
from graphcraft.eval.grading import (
    AbstentionMetrics,
    abstention_metrics,
    grade_result,
    hit_at_k,
    is_abstention,
    is_correct,
    normalize,
    recall_at_k,
    source_name,
    summarize,
)
from graphcraft.eval.report import make_table, print_table, save_comparison_plot, save_curve_plot

__all__ = [
    "CORPUS_TYPES",
    "NOT_IN_CORPUS_TYPES",
    "QUESTION_TYPES",
    "SAMPLE_CORPUS",
    "SAMPLE_EXTERNAL",
    "SAMPLE_QUESTIONS",
    "AbstentionMetrics",
    "DatasetError",
    "Hop",
    "Question",
    "abstention_metrics",
    "grade_result",
    "hit_at_k",
    "is_abstention",
    "is_correct",
    "load_questions",
    "make_table",
    "normalize",
    "print_table",
    "recall_at_k",
    "save_comparison_plot",
    "save_curve_plot",
    "source_name",
    "split_by_id",
    "summarize",
]
