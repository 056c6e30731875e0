#!/usr/bin/env bash
# SmolLM2-135M forward tokens/s, anbiq beside transformers eager, in one run (issue 13's speed target: >= 1.2x).
#   scripts/bench-llama.sh [batch] [tokens] [runs]      (defaults 8 256 3; one thread each)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/bench/smollm2-setup.sh
cargo build -q --release --example llama_bench
export OMP_NUM_THREADS=1
"$CARGO_TARGET_DIR/release/examples/llama_bench" "$gguf" "${1:-8}" "${2:-256}" "${3:-3}"
scripts/bench/py.sh scripts/bench/llama_bench.py "$gguf" "${1:-8}" "${2:-256}" "${3:-3}" 2>/dev/null
