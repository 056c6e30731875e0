#!/usr/bin/env bash
# GPU benchmarks for a machine with an NVIDIA GPU and PyTorch 2.11 installed (prepared on a CPU machine; see
# BENCHMARKS.md for whether it has been run and when).
#
# The bench binary is built here, on a CPU machine, against the CPU libtorch; on the GPU machine it is pointed at that
# machine's own torch 2.11 libraries through LD_LIBRARY_PATH, and anbiq loads libtorch_cuda at start-up
# (anbiq::nn::device). PyTorch eager runs the same loops (scripts/bench/torch_eager.py) with the installed torch.
#
# On the CPU machine:   scripts/gpu-bench.sh pack            → target-perf/gpu-bench.tar.gz (binary + scripts)
# On the GPU machine:   tar xzf gpu-bench.tar.gz && cd gpu-bench && ./scripts/gpu-bench.sh run [PYTHON]
#                       (PYTHON: an interpreter with torch 2.11 importable, default python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
RUNS=${RUNS:-7}

case "${1:-}" in
pack)
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-perf}
    cargo build -q --release --example bench
    out=$CARGO_TARGET_DIR/gpu-bench
    rm -rf "$out" && mkdir -p "$out/scripts/bench"
    cp "$CARGO_TARGET_DIR/release/examples/bench" "$out/bench"
    cp scripts/gpu-bench.sh "$out/scripts/"
    cp scripts/bench/torch_eager.py scripts/bench/table.py "$out/scripts/bench/"
    tar czf "$CARGO_TARGET_DIR/gpu-bench.tar.gz" -C "$CARGO_TARGET_DIR" gpu-bench
    echo "packed $CARGO_TARGET_DIR/gpu-bench.tar.gz"
    ;;
run)
    python=${2:-python3}
    torchlib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    version=$("$python" -c 'import torch; print(torch.__version__)')
    [[ $version == 2.11.* ]] || { echo "gpu-bench: need torch 2.11, found $version" >&2; exit 1; }
    # The binary's rpath names the build machine's libtorch; LD_LIBRARY_PATH (searched first for non-RUNPATH
    # binaries, and always for dlopen) makes it use this machine's CUDA-enabled libraries instead.
    export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    out=${OUT:-gpu-results.jsonl}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/# /' >&2 || true
    echo "{\"machine\": \"$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), torch $version\", \"date\": \"$(date -u +%FT%TZ)\", \"load_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >"$out"
    for b in roofline distill_hinton small_student infer_mlp infer_cnn; do
        ./bench --device cuda --threads 1 --runs "$RUNS" "$b" | tee -a "$out"
        "$python" scripts/bench/torch_eager.py --device cuda --threads 1 --runs "$RUNS" "$b" | tee -a "$out"
    done
    ./bench --device cuda --threads 1 --runs "$RUNS" step_gemms | tee -a "$out"
    for b in distill_hinton infer_mlp infer_cnn; do # `precision: bf16` on both sides
        ./bench --device cuda --threads 1 --runs "$RUNS" --precision bf16 "$b" | tee -a "$out"
        "$python" scripts/bench/torch_eager.py --device cuda --threads 1 --runs "$RUNS" --precision bf16 "$b" |
            tee -a "$out"
    done
    "$python" scripts/bench/table.py "$out"
    ;;
*)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
