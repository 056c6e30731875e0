#!/usr/bin/env bash
# SmolLM2-135M forward tokens/s, anbiq beside transformers eager, in one run (issue 13's speed target: >= 1.2x).
#   scripts/bench-llama.sh [batch] [tokens] [runs]      (defaults 8 256 3; one thread each)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-perf}
bash scripts/fetch-data.sh smollm2 >/dev/null
bash scripts/bench/setup-python.sh
.bench/venv/bin/pip install -q "transformers==5.24.0" accelerate gguf==0.19.0
cargo build -q --release --example llama_bench
gguf=$root/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
export OMP_NUM_THREADS=1
"$CARGO_TARGET_DIR/release/examples/llama_bench" "$gguf" "${1:-8}" "${2:-256}" "${3:-3}"
scripts/bench/py.sh scripts/bench/llama_bench.py "$gguf" "${1:-8}" "${2:-256}" "${3:-3}" 2>/dev/null
