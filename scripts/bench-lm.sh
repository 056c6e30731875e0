#!/usr/bin/env bash
# Tokens/s of language-model inference and distillation: anbiq (examples/lm_bench.rs) beside PyTorch eager
# (scripts/bench/lm_bench.py), same models and batch, one thread each, run back to back so the ratio is measured under the
# same load.
#
#   scripts/bench-lm.sh [batch] [seconds]     # defaults 16 windows of 128 tokens, 10 s per measurement
#
# Both sides are built/set up here: anbiq's example in release (target-perf/, as scripts/bench.sh), PyTorch in the
# git-ignored venv of scripts/bench/setup-python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-16}
seconds=${2:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-perf}

cargo build -q --release --example lm_bench
scripts/bench/setup-python.sh
anbiq=$("$CARGO_TARGET_DIR"/release/examples/lm_bench "$batch" "$seconds")
torch=$(scripts/bench/py.sh scripts/bench/lm_bench.py "$batch" "$seconds")

echo "| path | anbiq tokens/s | PyTorch eager tokens/s | anbiq / PyTorch |"
echo "|---|---:|---:|---:|"
for path in infer distill_offline distill_online; do
  a=$(echo "$anbiq" | awk -v p="$path" '$2 == p {print $3}')
  t=$(echo "$torch" | awk -v p="$path" '$2 == p {print $3}')
  echo "| $path | $a | $t | $(awk -v a="$a" -v t="$t" 'BEGIN {printf "%.2f", a / t}') |"
done
