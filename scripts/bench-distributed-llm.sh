#!/usr/bin/env bash
# Data-parallel scaling of the LLM distillation step (issue 18): examples/llm_distill_bench.rs (a SmolLM2-135M
# student cut to `layers` layers, top-8 forward KL, AdamW, the loss in chunks of positions) as 1 rank and as 2 ranks
# with one thread each, the global batch the same; DDP's Reducer averages the trunk's gradients during its backward
# pass, the output projection's (backpropagated a chunk at a time) after it — the first step of a fit, the probe,
# averages all after it. Then PyTorch + transformers doing the same step (full logits) as 1 process and as 2
# DistributedDataParallel ranks on Gloo (scripts/bench/llm_distill_bench.py), one thread each.
# Prints one JSON line per run.
#   scripts/bench-distributed-llm.sh [layers] [batch] [time] [steps]     (defaults 20 8 256 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The documented dev-profile build (no separate release build of the dependencies), in target/.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
source scripts/bench/smollm2-setup.sh
cargo build -q --example llm_distill_bench
bench=$CARGO_TARGET_DIR/debug/examples/llm_distill_bench
shape=("${1:-20}" "${2:-8}" "${3:-256}" "${4:-3}" 1 f32)
export OMP_NUM_THREADS=1

"$bench" "$gguf" chunked "${shape[@]}"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
for rank in 0 1; do
    ANBIQ_RANK=$rank ANBIQ_WORLD_SIZE=2 ANBIQ_MASTER_ADDR=127.0.0.1 ANBIQ_MASTER_PORT=$port \
        "$bench" "$gguf" chunked "${shape[@]}" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

for ranks in 1 2; do
    scripts/bench/py.sh scripts/bench/llm_distill_bench.py "$gguf" "${shape[@]}" plain "$ranks" 2>/dev/null
done
