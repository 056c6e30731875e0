#!/usr/bin/env bash
# GPU benchmarks for a machine with an NVIDIA GPU and PyTorch 2.11 installed (prepared on a CPU machine; see
# BENCHMARKS.md for whether it has been run and when).
#
# The bench binary is built here, on a CPU machine, against the CPU libtorch; on the GPU machine it is pointed at that
# machine's own torch 2.11 libraries through LD_LIBRARY_PATH, and anbiq loads libtorch_cuda at start-up
# (anbiq::nn::runtime::device). PyTorch eager runs the same loops (scripts/bench/torch_eager.py) with the installed
# torch.
#
# The LLM distillation step (issue 14: tokens/s beside a PyTorch + transformers loop on the same GPU) runs
# examples/llm_distill_bench.rs and scripts/bench/llm_distill_bench.py on a random initialisation of SmolLM2-135M's
# shape (scripts/bench/smollm2-135m-config.json, made there by transformers: speed does not depend on the values, and
# the GGUF is more than a GPU machine of this project can be sent), its first 20 layers as the student.
#
# On the CPU machine:   scripts/gpu-bench.sh pack            → target-perf/gpu-bench/ and target-perf/gpu-bench.tar.xz
#                       (the two benchmarks and the anbiq binary, stripped: ≈ 17 MB, for workflows there too)
# On the GPU machine:   cd gpu-bench && [RESULTS=FILE] ./scripts/gpu-bench.sh run [PYTHON]
#                       (PYTHON: an interpreter with torch 2.11 and transformers importable, default python3;
#                       FILE: the JSON lines, default gpu-results.jsonl)
# A benchmark that fails is reported and the others still run; the exit status says whether any failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
RUNS=${RUNS:-7}

case "${1:-}" in
pack)
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-perf}
    cargo build -q --release --example bench --example llm_distill_bench --bin anbiq
    out=$CARGO_TARGET_DIR/gpu-bench
    rm -rf "$out" && mkdir -p "$out/scripts/bench"
    for b in examples/bench examples/llm_distill_bench anbiq; do
        strip -o "$out/${b#examples/}" "$CARGO_TARGET_DIR/release/$b"
    done
    cp scripts/gpu-bench.sh "$out/scripts/"
    cp scripts/bench/torch_eager.py scripts/bench/table.py scripts/bench/llm_distill_bench.py \
        scripts/bench/smollm2-135m-config.json "$out/scripts/bench/"
    tar cJf "$CARGO_TARGET_DIR/gpu-bench.tar.xz" -C "$CARGO_TARGET_DIR" gpu-bench
    echo "packed $CARGO_TARGET_DIR/gpu-bench.tar.xz"
    ;;
run)
    python=${2:-python3}
    torchlib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    version=$("$python" -c 'import torch; print(torch.__version__)')
    [[ $version == 2.11.* ]] || { echo "gpu-bench: need torch 2.11, found $version" >&2; exit 1; }
    # The binary's rpath names the build machine's libtorch; LD_LIBRARY_PATH (searched first for non-RUNPATH
    # binaries, and always for dlopen) makes it use this machine's CUDA-enabled libraries instead.
    export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    out=${RESULTS:-gpu-results.jsonl}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/# /' >&2 || true
    echo "{\"machine\": \"$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), torch $version\", \"date\": \"$(date -u +%FT%TZ)\", \"load_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >"$out"
    failed=0
    measure() { # one benchmark's JSON lines into $out; a failure is counted, not fatal
        "$@" | tee -a "$out" || { echo "gpu-bench: FAILED: $*" >&2; failed=$((failed + 1)); }
    }
    # First (the longest, and issue 14's): the LLM distillation step, a 20-layer student, LLM_BATCH windows of
    # LLM_TIME tokens, LLM_STEPS timed steps.
    model=${TMPDIR:-/tmp}/smollm2-135m-random
    "$python" -c 'import sys, torch, transformers as t
torch.manual_seed(0)
t.LlamaForCausalLM(t.LlamaConfig.from_json_file(sys.argv[1])).save_pretrained(sys.argv[2])' \
        scripts/bench/smollm2-135m-config.json "$model" || failed=$((failed + 1))
    shape=(20 "${LLM_BATCH:-16}" "${LLM_TIME:-512}" "${LLM_STEPS:-5}" 4)
    for precision in bf16 f32; do
        for mode in chunked whole; do
            measure env BENCH_DEVICE=cuda ./llm_distill_bench "$model" "$mode" "${shape[@]}" "$precision"
        done
        measure env BENCH_DEVICE=cuda "$python" scripts/bench/llm_distill_bench.py "$model" "${shape[@]}" "$precision"
    done
    for b in roofline distill_hinton small_student infer_mlp infer_cnn; do
        measure ./bench --device cuda --threads 1 --runs "$RUNS" "$b"
        measure "$python" scripts/bench/torch_eager.py --device cuda --threads 1 --runs "$RUNS" "$b"
    done
    measure ./bench --device cuda --threads 1 --runs "$RUNS" step_gemms
    for b in distill_hinton infer_mlp infer_cnn; do # `precision: bf16` on both sides
        measure ./bench --device cuda --threads 1 --runs "$RUNS" --precision bf16 "$b"
        measure "$python" scripts/bench/torch_eager.py --device cuda --threads 1 --runs "$RUNS" --precision bf16 "$b"
    done
    "$python" scripts/bench/table.py "$out" || failed=$((failed + 1))

    echo "gpu-bench: $failed failed" >&2
    exit $((failed > 0))
    ;;
*)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
