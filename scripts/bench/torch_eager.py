"""PyTorch-eager baselines for scripts/bench.sh: the loops anbiq replaces, written as a user would write them.

Each benchmark prints one JSON line per measurement (the same format as examples/bench.rs), with the median of
`--runs` timed runs after one warm-up run:

    {"bench": "distill_hinton", "impl": "pytorch", "threads": 1, "unit": "samples/s", "median": ..., "runs": [...]}

Run through scripts/bench/py.sh (the torch 2.11.0 wheel with CUDA stand-ins):

    scripts/bench/py.sh scripts/bench/torch_eager.py --threads 1 --runs 7 distill_hinton small_student infer_mlp ...
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


DEVICE = torch.device("cpu")
# "bf16": forward passes under torch.autocast with bfloat16, outputs cast back to f32 (as anbiq's `precision: bf16`).
PRECISION = "f32"


def forward(model, x):
    if PRECISION == "bf16":
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            return model(x).float()
    return model(x)


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def report(bench, threads, unit, runs, **extra):
    if PRECISION == "bf16":
        bench += "_bf16"
    line = {"bench": bench, "impl": extra.pop("impl", "pytorch"), "threads": threads, "unit": unit,
            "device": str(DEVICE)}
    line["median"] = statistics.median(runs)
    line["runs"] = runs
    line.update(extra)
    print(json.dumps(line), flush=True)


def mlp(sizes, dropout=0.0):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def kd_loss(student, teacher, labels, t, alpha):
    """Hinton KD: alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) (batchmean) + (1 - alpha) * CE(s, y)."""
    log_q = F.log_softmax(student / t, dim=-1)
    log_p = F.log_softmax(teacher / t, dim=-1)
    soft = F.kl_div(log_q, log_p, reduction="sum", log_target=True) * (t * t / student.shape[0])
    return alpha * soft + (1 - alpha) * F.cross_entropy(student, labels)


def cosine_lr(base, step, total, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def distill_epochs(sizes, n, batch, t, alpha, make_opt, clip, schedule, runs, threads, bench, opt_name=None):
    """Offline-logit distillation: data, labels and teacher logits in memory, a shuffled epoch of `n` samples."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, sizes[0], generator=g).to(DEVICE)
    y = torch.randint(0, sizes[-1], (n,), generator=g).to(DEVICE)
    teacher = (torch.randn(n, sizes[-1], generator=g) * 3).to(DEVICE)
    model = mlp(sizes).to(DEVICE)
    opt = make_opt(model.parameters())
    base_lr = opt.param_groups[0]["lr"]
    steps_per_epoch = math.ceil(n / batch)
    times = []
    for run in range(runs + 1):
        start = time.perf_counter()
        perm = torch.randperm(n, generator=g).to(DEVICE)
        total = 0.0
        for i, s in enumerate(range(0, n, batch)):
            if schedule:
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(base_lr, i, steps_per_epoch, 200)
            idx = perm[s : s + batch]
            xb, yb, tb = x[idx], y[idx], teacher[idx]
            loss = kd_loss(forward(model, xb), tb, yb, t, alpha)
            opt.zero_grad()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            total += loss.item() * len(idx)
        sync()
        elapsed = time.perf_counter() - start
        if run > 0:
            times.append(elapsed)
    report(bench, threads, "samples/s", [n / t_ for t_ in times], n=n, batch=batch, steps=steps_per_epoch,
           us_per_step=statistics.median(times) / steps_per_epoch * 1e6, **({"impl": opt_name} if opt_name else {}))


def bench_distill_hinton(args):
    distill_epochs(
        [784] + [args.width] * 2 + [10], args.n or 128 * 40, 128, 20.0, 0.9,
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), 5.0, True, args.runs, args.threads,
        "distill_hinton" if args.width == 800 else f"distill_width_{args.width}")


def bench_small_student(args):
    for name, make in [
        ("pytorch", lambda p: torch.optim.Adam(p, lr=1e-3)),
        ("pytorch-fused-adam", lambda p: torch.optim.Adam(p, lr=1e-3, fused=True)),
    ]:
        distill_epochs([64, 32, 10], args.n or 64 * 500, 64, 4.0, 0.9, make, None, False, args.runs, args.threads,
                       "small_student", opt_name=name)


def cnn():
    # anbiq's {arch: cnn, channels: [16, 32], kernel: 5, pool: 2, hidden: [128]} on 28x28 (same padding).
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def infer(model, shape, n, batch, runs, threads, bench):
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))
    model = model.to(DEVICE).eval()
    times = []
    for run in range(runs + 1):
        start = time.perf_counter()
        with torch.no_grad():
            out = torch.cat([forward(model, x[s : s + batch].to(DEVICE)).cpu() for s in range(0, n, batch)])
        elapsed = time.perf_counter() - start
        assert out.shape[0] == n
        if run > 0:
            times.append(elapsed)
    report(bench, threads, "samples/s", [n / t for t in times], n=n, batch=batch)


def bench_infer_mlp(args):
    infer(mlp([784, 1200, 1200, 10]), [784], args.n or 8192, 1024, args.runs, args.threads, "infer_mlp")


def bench_infer_cnn(args):
    infer(cnn(), [1, 28, 28], args.n or 4096, 1024, args.runs, args.threads, "infer_cnn")


def bench_roofline(args):
    """The best median GFLOP/s among a large square fp32 matmul and the benchmarked steps' GEMM shapes."""
    g = torch.Generator().manual_seed(0)
    best, shapes = None, {}
    for m, k, n in [(2048, 2048, 2048), (128, 784, 800), (128, 800, 800), (1024, 784, 1200), (1024, 1200, 1200)]:
        a, b = torch.randn(m, k, generator=g).to(DEVICE), torch.randn(k, n, generator=g).to(DEVICE)
        reps = max(1, math.ceil(2e9 / (2 * m * k * n)))
        runs = []
        for run in range(args.runs + 1):
            sync()
            start = time.perf_counter()
            for _ in range(reps):
                a.mm(b)
            sync()
            if run > 0:
                runs.append(2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
        shapes[f"{m}x{k}x{n}"] = statistics.median(runs)
        if best is None or statistics.median(runs) > statistics.median(best):
            best = runs
    report("roofline", args.threads, "GFLOP/s", best, shapes=shapes)


BENCHES = {
    "distill_hinton": bench_distill_hinton,
    "small_student": bench_small_student,
    "infer_mlp": bench_infer_mlp,
    "infer_cnn": bench_infer_cnn,
    "roofline": bench_roofline,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--n", type=int, default=0, help="samples per run (0: each benchmark's default)")
    p.add_argument("--width", type=int, default=800, help="hidden width of the distill_hinton student")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    p.add_argument("benches", nargs="+", choices=sorted(BENCHES))
    args = p.parse_args()
    global DEVICE, PRECISION
    DEVICE = torch.device(args.device)
    PRECISION = args.precision
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for b in args.benches:
        BENCHES[b](args)


if __name__ == "__main__":
    main()
