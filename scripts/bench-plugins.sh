#!/usr/bin/env bash
# Benchmark (not a test): the same distill step with the native kd loss, the tensor-style kd plugin
# (plugins/build/kd.wasm) and the dense-style kd plugin (plugins/build/kd_dense.wasm), side by side in one run.
# Each variant runs REPEATS times, interleaved (native, tensor, dense, native, …), on one job and one libtorch
# thread; reports the median and the minimum step time and their ratios to native (on a busy machine the minimum
# is the better estimate of the cost). Needs the plugins built (scripts/build-plugins.sh) and an anbiq binary.
#
# Usage: scripts/bench-plugins.sh [REPEATS=5] [EPOCHS=10]      (ANBIQ=path/to/anbiq to pick the binary)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
repeats="${1:-5}"
epochs="${2:-10}"
anbiq="${ANBIQ:-$root/target/debug/anbiq}"
for p in kd kd_dense; do
    [ -f "$root/plugins/build/$p.wasm" ] || { echo "plugins/build/$p.wasm missing: run scripts/build-plugins.sh" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
    echo "name: plugin-bench"
    echo "seed: 1"
    echo "threads: 1   # one libtorch thread: small tensors, and steadier timings on a shared machine"
    echo "steps:"
    echo "  digits: {kind: dataset, source: digits, split: {test: 0.2}, normalize: standardize}"
    echo "  teacher: {kind: train, data: digits.train, model: {arch: mlp, hidden: [128]}, epochs: 5}"
    echo "  logits: {kind: infer, model: teacher, data: digits.train}"
    for i in $(seq 1 "$repeats"); do
        for v in native tensor dense; do
            case $v in
                native) loss="{kd: {temperature: 4, alpha: 0.9}}" ;;
                tensor) loss="{plugin: {path: $root/plugins/build/kd.wasm, params: {temperature: 4, alpha: 0.9}}}" ;;
                dense) loss="{plugin: {path: $root/plugins/build/kd_dense.wasm, params: {temperature: 4, alpha: 0.9}}}" ;;
            esac
            echo "  ${v}_$i: {kind: distill, teacher: logits, data: digits.train, model: {arch: mlp, hidden: [64]}, loss: $loss, epochs: $epochs, batch_size: 64}"
        done
    done
} > "$work/bench.yaml"
"$anbiq" -q run "$work/bench.yaml" --store "$work/store" --jobs 1 --json > "$work/results.json"
python3 - "$work/results.json" "$repeats" "$epochs" <<'PY'
import json, statistics, sys
results = json.load(open(sys.argv[1]))
times = {}
for r in results:
    if r.get("outcome") == "ran" and "_" in r["id"]:
        variant = r["id"].rsplit("_", 1)[0]
        times.setdefault(variant, []).append(r["seconds"])
base = statistics.median(times["native"])
base_min = min(times["native"])
batches = -(-1437 // 64) * int(sys.argv[3])
print(f"distill step: digits train split (1437 samples), MLP [64], {sys.argv[3]} epochs, batch 64 ({batches} loss calls); "
      f"median of {sys.argv[2]}")
for variant, label in [("native", "native kd"), ("tensor", "kd.wasm (tensor style)"), ("dense", "kd_dense.wasm (dense style)")]:
    t = times[variant]
    m = statistics.median(t)
    print(f"  {label:<30} median {m:7.3f} s {m / base:6.3f}x   min {min(t):7.3f} s {min(t) / base_min:6.3f}x   max {max(t):.3f} s")
PY
