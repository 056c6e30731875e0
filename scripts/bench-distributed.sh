#!/usr/bin/env bash
# Data-parallel scaling (issue 18): the Hinton student distil step (scripts/bench/distributed.yaml) as 1 and 2 ranks
# with one thread each, beside PyTorch's DistributedDataParallel on Gloo (env:// rendezvous, as torchrun) doing the same
# (scripts/bench/ddp_bench.py), on this machine, in one run.
#
# anbiq's throughput is steady-state: (E2 - E1) epochs × 20,480 samples / (seconds of the E2-epoch step - seconds of
# the E1-epoch step), so the ranks' start-up and data loading cancel out; each figure is the median of `runs`.
#   scripts/bench-distributed.sh [runs] [E1] [E2] [batch]     (defaults 3 1 4 128)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}; e1=${2:-1}; e2=${3:-4}; batch=${4:-128}
bash scripts/fetch-data.sh mnist >/dev/null
scripts/bench/setup-python.sh
# The documented binary (the dev profile optimises the engine; libtorch does the arithmetic either way).
cargo build -q
anbiq=${CARGO_TARGET_DIR:-$root/target}/debug/anbiq
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cp scripts/bench/distributed.yaml "$work/wf.yaml"
sed -i "s|../../data/mnist|$root/data/mnist|" "$work/wf.yaml"

# Seconds of the student step of one run (forced), read from the lockfile.
step_seconds() {
    local ranks=$1 epochs=$2
    "$anbiq" run "$work/wf.yaml" --store "$work/store" --set ranks="$ranks" \
        --set epochs="$epochs" --set batch="$batch" --force student >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    python3 - "$work/wf.lock" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
student = text[text.index("- id: student"):]
print(re.search(r"\n  seconds: ([0-9.e+-]+)", student).group(1))
PY
}

declare -A anbiq_rate
for ranks in 1 2; do
    # One thread per rank: the workflow's threads are divided among its ranks.
    sed -i "s/^threads: .*//; s/^seed: 3$/seed: 3\nthreads: $ranks/" "$work/wf.yaml"
    rates=()
    for _ in $(seq "$runs"); do
        t1=$(step_seconds "$ranks" "$e1"); t2=$(step_seconds "$ranks" "$e2")
        rates+=("$(python3 -c "print(($e2 - $e1) * 20480 / ($t2 - $t1))")")
    done
    collective=$(grep -o 'collective_ms_per_step: [0-9.e+-]*' "$work/wf.lock" | tail -1 | cut -d' ' -f2 || true)
    [ -n "$collective" ] && echo "anbiq, $ranks ranks: $collective ms per step in collectives outside the backward pass (rank 0, last run)"
    anbiq_rate[$ranks]=$(python3 -c "import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))" "${rates[@]}")
    echo "{\"bench\": \"distill_hinton_ranks\", \"impl\": \"anbiq\", \"ranks\": $ranks, \"threads_per_rank\": 1, \"batch\": $batch, \"unit\": \"samples/s\", \"median\": ${anbiq_rate[$ranks]}, \"runs\": [$(IFS=,; echo "${rates[*]}")]}"
done

declare -A torch_rate
for ranks in 1 2; do
    line=$(scripts/bench/py.sh scripts/bench/ddp_bench.py --ranks "$ranks" --runs "$runs" --batch "$batch" 2>/dev/null | grep '"bench"')
    echo "$line"
    torch_rate[$ranks]=$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['median'])" "$line")
done

python3 - "${anbiq_rate[1]}" "${anbiq_rate[2]}" "${torch_rate[1]}" "${torch_rate[2]}" "$batch" <<'PY'
import sys
a1, a2, t1, t2 = map(float, sys.argv[1:5])
print(f"| batch {int(sys.argv[5])} | 1 rank | 2 ranks | scaling |")
print(f"|---|---|---|---|")
print(f"| anbiq (c10d Gloo, DDP Reducer) | {a1:.0f} samples/s | {a2:.0f} samples/s | {a2 / a1:.2f}× |")
print(f"| PyTorch DDP (Gloo, env:// rendezvous as torchrun) | {t1:.0f} samples/s | {t2:.0f} samples/s | {t2 / t1:.2f}× |")
print(f"| anbiq / PyTorch | {a1 / t1:.2f}× | {a2 / t2:.2f}× | |")
PY
