#!/usr/bin/env bash
# Set-up on a fresh machine: a .venv with the CPU build of torch, a llama.cpp build that runs on any x86-64
# VM, and emplifai with its extras. Idempotent: a second run only checks.
#   bash scripts/install.sh        # everything needed to run the pipeline
#   bash scripts/install.sh dev    # plus the test tools
# Outside this workplace, point TORCH_INDEX_URL at PyTorch's CPU wheel index so pip never picks a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-all}
PY=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip wheel setuptools

# torch first and pinned: with it present, later requirements (transformers, bert-score, peft) add nothing.
python -c "import torch" 2>/dev/null || pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

# llama.cpp's default -march=native build dies with SIGILL on VMs that report AMX but forbid it.
if ! python -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python (a few minutes on 2 cores)…"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
    pip install -q "llama-cpp-python[server]==0.3.36"
fi

pip install -q -e ".[$extra]"
python -c "import torch; assert not torch.version.cuda, 'a CUDA build of torch was installed'"
echo "emplifai $(.venv/bin/emplifai version) installed in .venv"
