#!/usr/bin/env bash
# Tokens/s of language-model inference and distillation: anbiq (examples/lm_bench.rs) beside PyTorch eager
# (scripts/bench/lm_bench.py), same models and batch, one thread each, run back to back so the ratio is measured under the
# same load.
#
#   scripts/bench-lm.sh [batch] [seconds]     # defaults 16 windows of 128 tokens, 10 s per measurement
#
# PYTHON must have torch 2.11 (default: the venv scripts/make-torchscript-fixture.sh builds, with its CUDA stubs).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-16}
seconds=${2:-10}
WORK=${WORK:-/tmp/anbiq-torchscript}
PYTHON=${PYTHON:-$WORK/venv/bin/python}

cargo build -q --example lm_bench
anbiq=$("${CARGO_TARGET_DIR:-target}"/debug/examples/lm_bench "$batch" "$seconds")
torch=$(LD_LIBRARY_PATH="$WORK/cuda-stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PYTHON" -c '
import os, runpy, sys
sys.setdlopenflags(os.RTLD_LAZY | os.RTLD_GLOBAL)  # the CUDA wheel on a CPU machine: CUDA symbols are never called
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
' scripts/bench/lm_bench.py "$batch" "$seconds")

echo "| path | anbiq tokens/s | PyTorch eager tokens/s | anbiq / PyTorch |"
echo "|---|---:|---:|---:|"
for path in infer distill_offline distill_online; do
  a=$(echo "$anbiq" | awk -v p="$path" '$2 == p {print $3}')
  t=$(echo "$torch" | awk -v p="$path" '$2 == p {print $3}')
  echo "| $path | $a | $t | $(awk -v a="$a" -v t="$t" 'BEGIN {printf "%.2f", a / t}') |"
done
