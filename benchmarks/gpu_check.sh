#!/usr/bin/env bash
# Every paper's fast_dev_run and every benchmark on a CUDA GPU (<= ~8 minutes); figures go into
# the gpu-check block of docs/results.md. Without a GPU: `bash benchmarks/gpu_check.sh --dry-run`.
#   bash benchmarks/gpu_check.sh [--dry-run] [--only STEP ...]
set -uo pipefail
cd "$(dirname "$0")/.."
# Packages this project needs that a bare CUDA image may lack travel as wheels in .whl/.
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
PY="$(command -v python3 || command -v python)"
echo "== $(date -u '+%F %T UTC') on $(hostname)"
grep -m1 "model name" /proc/cpuinfo || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
exec "$PY" benchmarks/gpu_check.py "$@"
