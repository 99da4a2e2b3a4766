"""Write the evaluation sets that ship with graphcraft (graphcraft/eval/datasets/*.jsonl).

They are the answer-quality question sets (benchmarks/data/*/questions.jsonl and
samples/questions.jsonl) in the `graphcraft eval` format: question, answer, sources, kind,
plus id, keywords and split (even ids "tune", odd ids "heldout"). Gold file names become the
pages' paths in their corpus. Re-run after editing a question set:

    python benchmarks/make_eval_datasets.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from graphcraft.eval.corpora import available_corpora, load_corpus
    from graphcraft.eval.datasets import load_questions
    from graphcraft.eval.harness import DATASETS_DIR, from_question, write_dataset

    for name in available_corpora():
        corpus = load_corpus(name)
        paths = {Path(f).name: f for f in corpus.files}
        path = write_dataset([from_question(q, paths) for q in corpus.questions()], DATASETS_DIR / f"{name}.jsonl")
        print(path)
    samples = load_questions()
    print(write_dataset([from_question(q) for q in samples], DATASETS_DIR / "samples.jsonl"))


if __name__ == "__main__":
    main()
