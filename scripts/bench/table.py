"""Turns scripts/bench.sh's JSON lines into the Markdown tables of BENCHMARKS.md (figure, ratio, target, met?).

    python3 scripts/bench/table.py target-perf/bench/results.jsonl
"""

import json
import sys

# Useful FLOPs per sample (multiply-adds count 2). Training: forward 2·W, weight gradients 2·W, input gradients 2·W
# for every layer but the first (the data needs no gradient). Inference: forward only.
def mlp_train_flops(sizes):
    weights = [a * b for a, b in zip(sizes, sizes[1:])]
    return 2 * sum(weights) + 2 * sum(weights) + 2 * sum(weights[1:])


def mlp_infer_flops(sizes):
    return 2 * sum(a * b for a, b in zip(sizes, sizes[1:]))


HINTON = mlp_train_flops([784, 800, 800, 10])
TEACHER = mlp_infer_flops([784, 1200, 1200, 10])
# CNN teacher: conv 1→16 (5×5, 28×28), conv 16→32 (5×5, 14×14), fc 1568→128→10.
CNN = 2 * (28 * 28 * 16 * 25 + 14 * 14 * 32 * 16 * 25 + 1568 * 128 + 128 * 10)


def load(path):
    rows, meta = [], {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if "bench" in d:
            rows.append(d)
        else:
            meta.update(d)
    return rows, meta


def find(rows, bench, impl="anbiq", threads=None):
    for r in rows:
        if r["bench"] == bench and r["impl"] == impl and (threads is None or r["threads"] == threads):
            return r
    return None


def roofline(row):
    """The issue's roofline: a large (2048³) fp32 matmul; `best` is the best median over all measured shapes."""
    if not row:
        return None
    square = row.get("shapes", {}).get("2048x2048x2048", row["median"])
    return {"median": square, "best": row["median"]}


def yes(ok):
    return "**yes**" if ok else "**no**"


def main():
    rows, meta = load(sys.argv[1])
    print(f"Machine: {meta.get('machine', '?')}; commit {meta.get('commit', '?')}; {meta.get('date', '?')}; "
          f"load average before {meta.get('load_before', '?')}, after {meta.get('load_after', '?')}.\n")
    threads = sorted({r["threads"] for r in rows})
    print("| benchmark | threads | anbiq | PyTorch eager | ratio | of roofline | target | met? |")
    print("|---|---|---|---|---|---|---|---|")
    for t in threads:
        roof = roofline(find(rows, "roofline", threads=t))
        roof_py = roofline(find(rows, "roofline", "pytorch", t))
        if roof and roof_py:
            print(f"| fp32 matmul roofline: 2048³ (best of the steps' GEMM shapes) | {t} | "
                  f"{roof['median']:.1f} GFLOP/s ({roof['best']:.1f}) | {roof_py['median']:.1f} GFLOP/s "
                  f"({roof_py['best']:.1f}) | | 100% | | |")
        a, p = find(rows, "distill_hinton", threads=t), find(rows, "distill_hinton", "pytorch", t)
        if a and p:
            ratio = a["median"] / p["median"]
            frac = a["median"] * HINTON / 1e9 / roof["median"] if roof else float("nan")
            frac_py = p["median"] * HINTON / 1e9 / roof["median"] if roof else float("nan")
            target = "≥ 1.0× and ≥ 85% of roofline" if t == 1 else "≥ 1.0×"
            met = ratio >= 1.0 and (frac >= 0.85 or t != 1)
            pm = find(rows, "distill_hinton", "pytorch+malloc", t)
            tuned = f" ({pm['median']:.0f} with anbiq's malloc thresholds)" if pm else ""
            gemms = find(rows, "step_gemms", threads=t)
            if gemms:
                of_roof = f" ({gemms['median'] * HINTON / 1e9 / roof['median']:.0%} of roofline)" if roof else ""
                tuned += (f"; the step's GEMMs alone {gemms['median']:.0f} samples/s{of_roof}, anbiq's step "
                          f"{a['median'] / gemms['median']:.0%} of that")
            print(f"| Hinton student distill step (784-800-800-10, b128, KD T=20) | {t} | {a['median']:.0f} samples/s "
                  f"| {p['median']:.0f} samples/s{tuned} | {ratio:.2f}× | {frac:.0%} (PyTorch {frac_py:.0%}) | {target} | "
                  f"{yes(met)} |")
        a, p = find(rows, "small_student", threads=t), find(rows, "small_student", "pytorch", t)
        pf = find(rows, "small_student", "pytorch-fused-adam", t)
        if a and p:
            ratio = p["us_per_step"] / a["us_per_step"]
            fused = f"; fused Adam {pf['us_per_step']:.0f} µs ({pf['us_per_step'] / a['us_per_step']:.2f}×)" if pf else ""
            pm = find(rows, "small_student", "pytorch+malloc", t)
            fused += f"; with anbiq's malloc thresholds {pm['us_per_step']:.0f} µs" if pm else ""
            print(f"| small student distill step (64-32-10, b64, Adam, KD T=4) | {t} | {a['us_per_step']:.0f} µs/step | "
                  f"{p['us_per_step']:.0f} µs/step{fused} | {ratio:.2f}× | | ≥ 2.0× | {yes(ratio >= 2.0)} |")
        for bench, name, flops in [("infer_mlp", "teacher inference MLP 784-1200-1200-10", TEACHER),
                                   ("infer_cnn", "teacher inference CNN (16-32 conv, 128 fc)", CNN)]:
            a, p = find(rows, bench, threads=t), find(rows, bench, "pytorch", t)
            if a and p:
                ratio = a["median"] / p["median"]
                frac = a["median"] * flops / 1e9 / roof["median"] if roof else float("nan")
                pm = find(rows, bench, "pytorch+malloc", t)
                tuned = f" ({pm['median']:.0f} with anbiq's malloc thresholds)" if pm else ""
                print(f"| {name}, b1024 | {t} | {a['median']:.0f} samples/s | {p['median']:.0f} samples/s{tuned} | "
                      f"{ratio:.2f}× | {frac:.0%} | ≥ 1.0× | {yes(ratio >= 1.0)} |")

    bf16 = [(t, b) for t in threads for b in ["infer_mlp", "infer_cnn", "distill_hinton"]
            if find(rows, f"{b}_bf16", threads=t)]
    if bf16:
        print("\n| `precision: bf16` (autocast) | threads | anbiq bf16 | anbiq f32 | bf16 / f32 | PyTorch bf16 | "
              "anbiq / PyTorch (bf16) |")
        print("|---|---|---|---|---|---|---|")
        for t, b in bf16:
            a16, a32, p16 = find(rows, f"{b}_bf16", threads=t), find(rows, b, threads=t), \
                find(rows, f"{b}_bf16", "pytorch", t)
            f32 = f"{a32['median']:.0f} samples/s | {a16['median'] / a32['median']:.2f}×" if a32 else "| "
            vs = f"{p16['median']:.0f} samples/s | {a16['median'] / p16['median']:.2f}×" if p16 else "| "
            print(f"| {b} | {t} | {a16['median']:.0f} samples/s | {f32} | {vs} |")

    step, rerun, cli = (find(rows, b) for b in ["engine_step_overhead", "engine_cached_rerun",
                                                 "engine_cached_rerun_cli"])
    if step:
        print("\n| engine overhead (20-step workflow) | figure | target | met? |")
        print("|---|---|---|---|")
        print(f"| per-step scheduling overhead (wall − time inside steps) / 20 | {step['median']:.2f} ms | < 10 ms | "
              f"{yes(step['median'] < 10)} |")
        if rerun:
            print(f"| fully cached rerun, library `run()` | {rerun['median'] * 1e3:.1f} ms | < 0.2 s | "
                  f"{yes(rerun['median'] < 0.2)} |")
        if cli:
            print(f"| fully cached rerun, `anbiq run` process | {cli['median'] * 1e3:.0f} ms | < 0.2 s | "
                  f"{yes(cli['median'] < 0.2)} |")

    base = find(rows, "logit_store_f32")
    if base:
        seeds = base.get("seeds", 1)
        print(f"\n| logit store (10k MNIST slice; accuracy: mean of {seeds} seeds) | bytes/sample | vs f32 | "
              "load + densify | student accuracy | Δ vs f32 (mean ± sd of the per-seed differences) | target | met? |")
        print("|---|---|---|---|---|---|---|---|")
        for v in ["f32", "f16", "top1", "top5", "top10"]:
            r = find(rows, f"logit_store_{v}")
            if not r:
                continue
            smaller = base["bytes_per_sample"] / r["bytes_per_sample"]
            delta = r.get("delta_vs_f32", r["student_accuracy"] - base["student_accuracy"]) * 100
            sd = r.get("delta_sd", 0.0) * 100
            target, met = "", ""
            if v.startswith("top"):
                target = "≥ 4× smaller, ≤ 0.2 pt cost"
                met = yes(smaller >= 4 and delta >= -0.2)
            name = {"f32": "f32 full", "f16": "f16 full"}.get(v, f"f16 top-{v[3:]}")
            print(f"| {name} | {r['bytes_per_sample']:.1f} | {smaller:.2f}× | {r['median']:.1f} ms | "
                  f"{r['student_accuracy'] * 100:.2f}% | {delta:+.2f} ± {sd:.2f} pt | {target} | {met} |")

    scal = [find(rows, f"scaling_n_{n}") for n in [15000, 30000, 60000]]
    if all(scal):
        print("\n| scaling with dataset size (Hinton student, 1 thread) | samples | s per epoch | samples/s |")
        print("|---|---|---|---|")
        for r in scal:
            print(f"| {r['n'] * 4 // 60000}/4 MNIST | {r['n']} | {r['n'] / r['median']:.2f} | {r['median']:.0f} |")
    widths = [(w, find(rows, f"distill_width_{w}")) for w in [200, 400, 800, 1600]]
    if all(r for _, r in widths):
        print("\n| scaling with width (784-w-w-10, b128, 1 thread) | FLOP/sample | samples/s | GFLOP/s |")
        print("|---|---|---|---|")
        for w, r in widths:
            f = mlp_train_flops([784, w, w, 10])
            print(f"| w = {w} | {f / 1e6:.2f} M | {r['median']:.0f} | {r['median'] * f / 1e9:.1f} |")


if __name__ == "__main__":
    main()
