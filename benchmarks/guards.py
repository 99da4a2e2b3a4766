"""Measure the prompt-injection guard: precision and recall on the labelled set's test half, the
false-positive rate on real documentation, and scan throughput.

Printed:
- precision, recall and F1 on the test split of graphcraft/guards/data/injection_set.jsonl, for
  the rules alone and for rules + the MiniLM exemplar classifier (trained on the train split
  only), with the malicious test examples each one misses, by technique;
- the share of chunks quarantined over every chunk of the public corpora (benchmarks/data/*,
  split as ingestion splits them): rules alone on all three corpora, rules + classifier on
  `--classifier-corpus` (default postgres_docs: the labelled set holds passages of python_docs
  only, so postgres_docs and git_docs are real text the guard has never seen);
- throughput in chunks per second for both.

`--calibrate` computes the classifier's leave-one-out margins on the training split (each
example's own exemplars left out) and prints training precision, recall and F1 for each number of
nearest exemplars, classifier weight and logistic offset: how NEAREST and MARGIN_OFFSET in
graphcraft/guards/injection_classifier.py and CLASSIFIER_WEIGHT in graphcraft/guards/injection.py
were chosen (best training F1; the test split is not used).

    python benchmarks/guards.py [--calibrate] [--classifier-corpus postgres_docs]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
from langchain_core.documents import Document

from graphcraft.eval.corpora import available_corpora, load_corpus
from graphcraft.guards import injection_classifier as ic
from graphcraft.guards.injection import InjectionFinding, rule_hits, scan_many
from graphcraft.ingestion.loaders import load_file
from graphcraft.ingestion.splitting import sha256, split_documents
from graphcraft.models import embed_texts, get_embeddings


def corpus_chunks(name: str) -> list[Document]:
    """Every chunk of a public corpus, split as `graphcraft ingest` splits it."""
    corpus = load_corpus(name)
    chunks: list[Document] = []
    for rel in corpus.files:
        data = (corpus.root / rel).read_bytes()
        chunks.extend(split_documents(load_file(corpus.root / rel, data), sha256(data)))
    return chunks


def prf(labels: list[bool], predicted: list[bool]) -> tuple[float, float, float]:
    tp = sum(a and b for a, b in zip(labels, predicted, strict=True))
    precision = tp / max(sum(predicted), 1)
    recall = tp / max(sum(labels), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-9)


def report_split(embeddings: object) -> None:
    test = [ex for ex in ic.load_labelled_set() if ex.split == "test"]
    labels = [ex.label == "malicious" for ex in test]
    print(f"Test split: {len(test)} examples ({sum(labels)} malicious, {len(test) - sum(labels)} benign)")
    print(f"{'guard':22s} {'precision':>9s} {'recall':>7s} {'F1':>6s}  misses / false alarms")
    for name, emb in (("rules only", None), ("rules + classifier", embeddings)):
        findings = scan_many([ex.text for ex in test], embeddings=emb)  # type: ignore[arg-type]
        flagged = [f.suspicious for f in findings]
        p, r, f1 = prf(labels, flagged)
        misses = Counter(ex.technique for ex, lab, fl in zip(test, labels, flagged, strict=True) if lab and not fl)
        alarms = Counter(ex.technique for ex, lab, fl in zip(test, labels, flagged, strict=True) if fl and not lab)
        print(f"{name:22s} {p:9.3f} {r:7.3f} {f1:6.3f}  missed {dict(misses)}; false alarms {dict(alarms)}")


def report_corpora(embeddings: object, classifier_corpus: str) -> None:
    print("\nReal documentation: chunks quarantined (false positives) and throughput")
    for name in available_corpora():
        chunks = corpus_chunks(name)
        texts = [c.page_content for c in chunks]
        _fp_line(name, "rules only", texts, None)
        if name == classifier_corpus:
            ic.default_classifier(embeddings)  # type: ignore[arg-type]  # exemplars embedded before timing
            _fp_line(name, "rules + classifier", texts, embeddings)


def _fp_line(name: str, guard: str, texts: list[str], embeddings: object) -> None:
    start = time.perf_counter()
    findings: list[InjectionFinding] = scan_many(texts, embeddings=embeddings)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    flagged = [f for f in findings if f.suspicious]
    fired = Counter(r for f in findings for r in f.rules)
    print(
        f"  {name:14s} {guard:20s} {len(flagged):3d}/{len(texts)} quarantined ({len(flagged) / len(texts):.2%}), "
        f"{len(texts) / seconds:6.0f} chunks/s; rules fired: {dict(fired)}"
    )
    for f in flagged[:5]:
        print(f"      e.g. score {f.score} {f.rules}: {f.excerpt[:90]!r}")


def calibrate(embeddings: object) -> None:
    """For each NEAREST, leave-one-out training P/R/F1 of rules + classifier over a grid of offsets."""
    for nearest in (1, 3, 5):
        ic.NEAREST = nearest
        print(f"NEAREST = {nearest}")
        _calibrate_offset(embeddings)


def _calibrate_offset(embeddings: object) -> None:
    """Leave-one-out margins on the training split and the training F1 of each logistic offset."""
    train = [ex for ex in ic.load_labelled_set() if ex.split == "train"]
    groups = [ic.exemplars([ex]) for ex in train]
    mal_owner = [i for i, (mal, _) in enumerate(groups) for _ in mal]
    ben_owner = [i for i, (_, ben) in enumerate(groups) for _ in ben]
    mal = ic._unit(embed_texts(embeddings, [s for m, _ in groups for s in m]))  # type: ignore[arg-type]
    ben = ic._unit(embed_texts(embeddings, [s for _, b in groups for s in b]))  # type: ignore[arg-type]
    margins = []
    for i, ex in enumerate(train):
        sentences = ic.candidate_sentences(ex.text)
        if not sentences:
            margins.append(-1.0)
            continue
        vec = ic._unit(embed_texts(embeddings, sentences))  # type: ignore[arg-type]
        sm = np.where(np.array(mal_owner) == i, -1.0, vec @ mal.T)
        sb = np.where(np.array(ben_owner) == i, -1.0, vec @ ben.T)
        margins.append(float((ic._top_mean(sm, ic.NEAREST) - ic._top_mean(sb, ic.NEAREST)).max()))
    rules = [rule_hits(ex.text).score for ex in train]
    labels = [ex.label == "malicious" for ex in train]
    print("weight offset  train P  train R  train F1 (leave-one-out, rules + classifier)")
    for weight in (0.45, 0.75):  # below 0.5 the classifier can only corroborate a rule, not quarantine alone
        for offset in np.arange(0.0, 0.32, 0.02):
            probs = [1 / (1 + np.exp(-(m - offset) / ic.MARGIN_SCALE)) for m in margins]
            flagged = [1 - (1 - r) * (1 - weight * p) >= 0.5 for r, p in zip(rules, probs, strict=True)]
            print(f"{weight:6.2f} {offset:6.2f}  " + "  ".join(f"{v:7.3f}" for v in prf(labels, flagged)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibrate", action="store_true", help="print leave-one-out calibration on the train split")
    parser.add_argument("--classifier-corpus", default="postgres_docs", help="corpus scanned with the classifier too")
    args = parser.parse_args()
    embeddings = get_embeddings()
    if args.calibrate:
        calibrate(embeddings)
        return
    report_split(embeddings)
    report_corpora(embeddings, args.classifier_corpus)


if __name__ == "__main__":
    main()
