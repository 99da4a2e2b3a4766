#!/usr/bin/env bash
# The main job, offline: ingest the sample corpus and answer questions with corrective RAG.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE="${GRAPHCRAFT_STORE:-.graphcraft/demo}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

graphcraft graphs
graphcraft ingest samples/corpus --store "$STORE"
graphcraft ingest samples/external --store "$STORE-external"
echo; echo "== Correct: the answer is in the corpus"
graphcraft ask "When was the Grelle weir removed?" --store "$STORE"
echo; echo "== Not in the corpus: the evaluator is not confident (ambiguous or incorrect), so CRAG also searches the external store"
graphcraft ask "How much did Halvard Robotics agree to pay for Brisling Sensors?" --store "$STORE" --external "$STORE-external"
echo; echo "== Nothing relevant in the corpus and no external source: CRAG abstains instead of guessing"
graphcraft ask "What is the boiling point of mercury?" --store "$STORE"
echo; echo "== A near miss (the 2019 revenue is in no document): offline, CRAG cannot tell it is unanswerable"
echo "   and quotes related sentences; with GRAPHCRAFT_CHAT_MODEL set, the LLM evaluator is where abstention belongs"
graphcraft ask "What was Halvard Robotics' revenue in 2019?" --store "$STORE"
