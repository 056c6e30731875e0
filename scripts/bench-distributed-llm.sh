#!/usr/bin/env bash
# Data-parallel scaling of the LLM distillation step (issue 18): examples/llm_distill_bench.rs (a SmolLM2-135M
# student cut to `layers` layers, top-8 forward KL, AdamW, the loss in chunks of positions) as 1 rank and as 2 ranks
# with one thread each, the global batch the same; DDP's Reducer averages the trunk's gradients during its backward
# pass, the output projection's (backpropagated a chunk at a time) after it — the first step of a fit, the probe,
# averages all after it. Then PyTorch + transformers doing the same step (full logits) as 1 process and as 2
# DistributedDataParallel ranks on Gloo (scripts/bench/llm_distill_bench.py), one thread each. Last, two
# independent anbiq processes at once, each half the batch and no communication ("mode":"independent"): their
# tokens/s summed, over the 1-rank run's, is what the two cores' shared memory leaves for scaling without any
# exchange.
# One run of each is minutes apart on a machine whose speed drifts by up to 40 % in minutes: with PAIRS=N, anbiq
# alone runs 1, 2, 1, …, 2, 1 ranks (N 2-rank runs), each 2-rank run to be read against the mean of the 1-rank runs
# either side of it, so a drift cancels to first order.
# Prints one JSON line per run (2 ranks: rank 0's).
#   [PAIRS=N] scripts/bench-distributed-llm.sh [layers] [batch] [time] [steps]     (defaults 20 8 256 3)
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

one_rank() { "$bench" "$gguf" chunked "${shape[@]}"; }
# Runs "$@" twice at once, with 0 and 1 as the last argument, and waits for both.
twice() {
    local pids=() rank pid
    for rank in 0 1; do
        "$@" "$rank" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
}
as_rank() {
    ANBIQ_RANK=$1 ANBIQ_WORLD_SIZE=2 ANBIQ_MASTER_ADDR=127.0.0.1 ANBIQ_MASTER_PORT=$port \
        "$bench" "$gguf" chunked "${shape[@]}"
}
two_ranks() {
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    twice as_rank
}

if [ -n "${PAIRS:-}" ]; then
    one_rank
    for _ in $(seq "$PAIRS"); do two_ranks; one_rank; done
    exit 0
fi

one_rank
two_ranks
for ranks in 1 2; do
    scripts/bench/py.sh scripts/bench/llm_distill_bench.py "$gguf" "${shape[@]}" plain "$ranks" 2>/dev/null
done

half=("${shape[@]}")
half[1]=$(( ${shape[1]} / 2 ))
independent() { "$bench" "$gguf" chunked "${half[@]}" | sed 's|"mode":"chunked"|"mode":"independent"|'; }
twice independent
