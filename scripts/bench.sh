#!/usr/bin/env bash
# anbiq's benchmarks against PyTorch eager (same torch 2.11.0) and the machine's fp32 matmul limit (BENCHMARKS.md).
#
#   scripts/bench.sh                 # everything: 1 thread and all threads, then the workflow benchmarks
#   RUNS=5 THREADS="1" scripts/bench.sh distill small infer       # a subset (groups below), fewer runs
#   SEEDS=5 scripts/bench.sh store   # the logit-store students' accuracy is averaged over SEEDS workflow seeds
#
# Groups: distill small infer roofline bf16 overhead store scaling (default: all). bf16: teacher inference and the
# Hinton distill step with `precision: bf16` (autocast) on both sides.
# Builds anbiq in release into its own target dir ($CARGO_TARGET_DIR, default target-perf/), sets up the Python
# baseline (scripts/bench/setup-python.sh: a git-ignored venv in .bench/), then runs each benchmark for anbiq and for
# PyTorch back to back, so each ratio comes from one run on one machine state. Each figure is the median of $RUNS
# timed runs after a warm-up. Raw JSON lines go to $OUT (default target-perf/bench/results.jsonl), the table to stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-perf}
RUNS=${RUNS:-7}
THREADS=${THREADS:-"1 $(nproc --all)"}
SCALING_RUNS=${SCALING_RUNS:-5}
OUT=${OUT:-$CARGO_TARGET_DIR/bench/results.jsonl}
groups=${*:-distill small infer roofline bf16 overhead store scaling}
want() { [[ " $groups " == *" $1 "* ]]; }

[ -d third_party/libtorch/torch ] || [ -n "${LIBTORCH:-}" ] || scripts/fetch-libtorch.sh
echo "bench: building anbiq (release) in $CARGO_TARGET_DIR ..." >&2
cargo build -q --release --example bench --bin anbiq
bench=$CARGO_TARGET_DIR/release/examples/bench
anbiq=$CARGO_TARGET_DIR/release/anbiq
scripts/bench/setup-python.sh
py() { scripts/bench/py.sh scripts/bench/torch_eager.py "$@"; }
if want store || want scaling; then scripts/fetch-data.sh mnist >&2; fi

mkdir -p "$(dirname "$OUT")"
: >"$OUT"
work=$CARGO_TARGET_DIR/bench/work
mkdir -p "$work"
log() { tee -a "$OUT" >&2; }
{
    echo "{\"machine\": \"$(uname -m), $(nproc --all) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\","
    echo " \"load_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"date\": \"$(date -u +%FT%TZ)\","
    echo " \"commit\": \"$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)\"}"
} | tr -d '\n' | log
echo | log

pair() { # threads, benchmark, extra args: anbiq then PyTorch, back to back
    local t=$1 b=$2
    shift 2
    "$bench" --threads "$t" --runs "$RUNS" "$@" "$b" | log
    OMP_NUM_THREADS=$t py --threads "$t" --runs "$RUNS" "$@" "$b" | log
    # The same script with the allocator settings anbiq makes at start-up (nn::runtime::memory: the malloc thresholds
    # and, since 2026-12-03, libtorch's huge pages), to show what they are worth.
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824 \
        THP_MEM_ALLOC_ENABLE=1 OMP_NUM_THREADS=$t \
        py --threads "$t" --runs "$RUNS" "$@" "$b" | sed 's/"impl": "pytorch/"impl": "pytorch+malloc/' | log
}
for t in $THREADS; do
    export OMP_NUM_THREADS=$t
    want roofline && pair "$t" roofline
    want distill && pair "$t" distill_hinton && "$bench" --threads "$t" --runs "$RUNS" step_gemms | log
    want small && pair "$t" small_student
    want infer && pair "$t" infer_mlp && pair "$t" infer_cnn
    if want bf16; then
        for b in infer_mlp infer_cnn distill_hinton; do
            "$bench" --threads "$t" --runs "$RUNS" --precision bf16 "$b" | log
            OMP_NUM_THREADS=$t py --threads "$t" --runs "$RUNS" --precision bf16 "$b" | log
        done
    fi
done
export OMP_NUM_THREADS=1
if want overhead; then
    "$bench" --threads 1 --runs "$RUNS" --work "$work" engine_overhead | log
    # The CLI: a fully cached rerun including process start and libtorch loading.
    wf=$work/overhead/overhead.yaml
    "$anbiq" run "$wf" --store "$work/overhead/store" -q >/dev/null 2>&1
    python3 - "$anbiq" "$wf" "$work/overhead/store" "$RUNS" <<'PY' | log
import json, statistics, subprocess, sys, time
anbiq, wf, store, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = []
for _ in range(runs):
    start = time.perf_counter()
    subprocess.run([anbiq, "run", wf, "--store", store, "-q"], check=True, capture_output=True)
    r.append(time.perf_counter() - start)
print(json.dumps({"bench": "engine_cached_rerun_cli", "impl": "anbiq", "threads": 1, "unit": "s",
                  "median": statistics.median(r), "runs": r, "via": "anbiq run (process)"}))
PY
fi
want store && "$bench" --threads 1 --runs "$RUNS" --seeds "${SEEDS:-5}" --work "$work" --mnist data/mnist logit_store | log
if want scaling; then
    for n in 15000 30000 60000; do
        "$bench" --threads 1 --runs "$SCALING_RUNS" --n "$n" distill_hinton | sed "s/\"distill_hinton\"/\"scaling_n_$n\"/" | log
    done
    for w in 200 400 800 1600; do
        "$bench" --threads 1 --runs "$SCALING_RUNS" --width "$w" distill_hinton |
            sed "s/\"distill_hinton\"/\"distill_width_$w\"/" | log
    done
fi
echo "{\"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" | log >/dev/null
python3 scripts/bench/table.py "$OUT"
