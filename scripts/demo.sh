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
graphcraft ask "Who founded Halvard Robotics?" --store "$STORE"
echo; echo "== Incorrect: not in the corpus; CRAG searches the external store"
graphcraft ask "How much did Halvard Robotics agree to pay for Brisling Sensors?" --store "$STORE" --external "$STORE-external"
echo; echo "== Not answerable anywhere: CRAG abstains instead of guessing"
graphcraft ask "What was Halvard Robotics' revenue in 2019?" --store "$STORE"
