#!/usr/bin/env bash
# Sentence-encoder throughput (issue 15's speed goal: >= 1.1x transformers' BertModel + mean pooling, same libtorch
# and threads, f32 and bf16): all-MiniLM-L6-v2 on 32 x 32-token blocks and on 2048 real lines (in file order, and
# sorted by length), anbiq and transformers each in their own process, in two alternating rounds (this machine's
# speed drifts by 10-15 % between runs: compare within a round). Extra MODEL_DIRs (exported students) are measured
# by anbiq beside the teacher.
#   bash scripts/fetch-data.sh minilm && bash scripts/fetch-data.sh folio
#   [BENCH_PROFILE=dev] scripts/bench-encoder.sh [threads] [seconds] [MODEL_DIR...]     (defaults 1 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bench/setup-python.sh
.bench/venv/bin/pip install -q "transformers==5.24.0" "tokenizers==0.23.3" safetensors
source scripts/bench/build-example.sh
build_example encoder_bench
threads=${1:-1} seconds=${2:-3}
shift 2 || true
export OMP_NUM_THREADS=$threads
for round in 1 2; do
  for dir in data/minilm "$@"; do
    "$bench" "$dir" data/folio/train.txt "$threads" "$seconds" |
      sed "s|^{|{\"round\":$round,\"model\":\"$(basename "$dir")\",|"
  done
  scripts/bench/py.sh scripts/bench/encoder_bench.py data/minilm data/folio/train.txt "$threads" "$seconds" 2>/dev/null |
    sed "s|^{|{\"round\": $round, \"model\": \"minilm\", |"
done
