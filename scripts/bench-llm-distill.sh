#!/usr/bin/env bash
# One LLM distillation step (SmolLM2-135M's first 20 layers as the student, top-8 forward KL, AdamW): anbiq chunked,
# chunked with recomputed activations (every layer, and all but the last KEEP layers, default 4), and whole-batch,
# beside a plain PyTorch + transformers loop (and the same loop with transformers' gradient checkpointing), each in its
# own process (issue 14's memory and speed goals: <= 0.5x PyTorch's peak memory at >= 1.0x its tokens/s, same
# threads).
#   [BENCH_PROFILE=dev] [KEEP=N] scripts/bench-llm-distill.sh [layers] [batch] [time] [steps] [threads] [f32|bf16]
#   (defaults 20 8 256 3 2 f32)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/bench/smollm2-setup.sh
source scripts/bench/build-example.sh
build_example llm_distill_bench
args=("${1:-20}" "${2:-8}" "${3:-256}" "${4:-3}" "${5:-2}" "${6:-f32}")
export OMP_NUM_THREADS=${args[4]}
for mode in chunked recompute "recompute-keep${KEEP:-4}" whole; do
  "$bench" "$gguf" "$mode" "${args[@]}"
done
for mode in plain checkpointing; do
  scripts/bench/py.sh scripts/bench/llm_distill_bench.py "$gguf" "${args[@]}" "$mode" 2>/dev/null
done
