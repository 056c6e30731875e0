"""PyTorch's data-parallel baseline for scripts/bench-distributed.sh: the Hinton student distil step of
scripts/bench/torch_eager.py (784-800-800-10, KD T=20 alpha 0.9, SGD + Nesterov, clip 5, cosine warm-up 200) under
DistributedDataParallel on Gloo, as a user would write it. Each rank takes its half of every global batch of 128 (as
anbiq's ranks do), one thread per rank.

    scripts/bench/py.sh scripts/bench/ddp_bench.py --ranks 2 --runs 3

starts the ranks the way torchrun does (env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE), each through
scripts/bench/py.sh: torchrun's own workers would import torch without the CUDA stand-ins' lazy binding.

Rank 0 prints one JSON line: samples/s of the global batch stream, the median of `--runs` timed epochs after a
warm-up epoch, and what the gradient all-reduce alone costs (one flat tensor of all gradients, mean of 20).
"""

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=20480)
    parser.add_argument("--batch", type=int, default=128)
    args, _ = parser.parse_known_args()
    if "RANK" not in os.environ:
        return launch(args)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    g = torch.Generator().manual_seed(0)
    n, batch, t, alpha = args.n, args.batch, 20.0, 0.9
    x = torch.randn(n, 784, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    teacher = torch.randn(n, 10, generator=g) * 3
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 800), nn.ReLU(), nn.Linear(800, 10))
    model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    steps_per_epoch = math.ceil(n / batch)
    times = []
    for run in range(args.runs + 1):
        dist.barrier()
        start = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        for i, s in enumerate(range(0, n, batch)):
            for group in opt.param_groups:
                group["lr"] = cosine(0.1, run * steps_per_epoch + i, steps_per_epoch * (args.runs + 1), 200)
            idx = perm[s : s + batch]
            part = idx.tensor_split(world)[rank]
            xb, yb, tb = x[part], y[part], teacher[part]
            student = model(xb)
            log_q = F.log_softmax(student / t, dim=-1)
            log_p = F.log_softmax(tb / t, dim=-1)
            soft = F.kl_div(log_q, log_p, reduction="sum", log_target=True) * (t * t / student.shape[0])
            loss = alpha * soft + (1 - alpha) * F.cross_entropy(student, yb)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        dist.barrier()
        elapsed = time.perf_counter() - start
        if run > 0:
            times.append(elapsed)
    # What one step's gradient all-reduce costs on its own: one flat tensor of all the gradients, as Gloo sums it.
    flat = torch.zeros(sum(p.numel() for p in model.parameters()))
    for _ in range(3):
        dist.all_reduce(flat)
    start = time.perf_counter()
    for _ in range(20):
        dist.all_reduce(flat)
    allreduce_ms = (time.perf_counter() - start) / 20 * 1e3
    if rank == 0:
        runs = [n / e for e in times]
        print(json.dumps({"bench": "distill_hinton_ddp", "impl": "pytorch-ddp", "ranks": world, "threads_per_rank": 1,
                          "unit": "samples/s", "median": statistics.median(runs), "runs": runs, "n": n,
                          "batch": batch, "gradient_allreduce_ms": allreduce_ms,
                          "gradient_bytes": flat.numel() * 4}), flush=True)
    dist.destroy_process_group()


def launch(args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "py.sh")
    procs = []
    for rank in range(args.ranks):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                   WORLD_SIZE=str(args.ranks), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([py, os.path.abspath(__file__)] + sys.argv[1:], env=env))
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"ranks exited with {codes}")


def cosine(base, step, total, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


if __name__ == "__main__":
    main()
