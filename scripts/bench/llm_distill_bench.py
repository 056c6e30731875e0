#!/usr/bin/env python3
"""PyTorch's side of examples/llm_distill_bench.rs: one distillation step of a SmolLM2-135M student (its first
`layers` layers, from the same GGUF through transformers) on random token windows, forward KL from random per-token
top-k teacher log-probabilities (the leftover mass spread evenly over the other tokens, as anbiq's `even` tail, computed
sparsely: no dense teacher tensor), torch.optim.AdamW; the student's full [B, T, V] logits, as a plain loop has them.
Prints one JSON line: tokens/s and peak resident memory of the process.

    scripts/bench/py.sh scripts/bench/llm_distill_bench.py MODEL [layers] [batch] [time] [steps] [threads] [f32|bf16]
        [plain|checkpointing] [ranks]

MODEL: a GGUF file, or a Hugging Face Llama directory (as examples/llm_distill_bench.rs takes). BENCH_DEVICE=cuda runs
it on a GPU (default cpu); there the peak memory reported is also the GPU's (torch.cuda.max_memory_allocated).
bf16: the forward pass under torch.autocast(device, bfloat16), weights and optimiser in f32 (anbiq's `precision: bf16`).
checkpointing: transformers' `gradient_checkpointing_enable()` (each decoder layer recomputed in the backward pass,
torch.utils.checkpoint), PyTorch's counterpart of anbiq's `recompute_activations`.
ranks > 1: DistributedDataParallel on Gloo, as a user would write it (issue 18's baseline): the ranks are started the
way torchrun starts them (env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE), each through
scripts/bench/py.sh, and each takes its share of every global batch of `batch` windows, `threads` threads per rank.
Rank 0 prints the line; tokens/s counts the global batch.
"""
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

TOP_K = 8


def rss_mib():
    """Peak (ru_maxrss) and current (/proc) resident set size in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    current = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) / 1024
    return peak, current


path = Path(sys.argv[1])
defaults = [20, 8, 256, 3, 2]
layers, batch, tokens, steps, threads = (int(a) for a in (sys.argv[2:7] + [str(d) for d in defaults][len(sys.argv[2:7]):]))
precision = sys.argv[7] if len(sys.argv) > 7 else "f32"
mode = sys.argv[8] if len(sys.argv) > 8 else "plain"
ranks = int(sys.argv[9]) if len(sys.argv) > 9 else 1
if ranks > 1 and "RANK" not in os.environ:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "py.sh")
    procs = []
    for r in range(ranks):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), WORLD_SIZE=str(ranks),
                   OMP_NUM_THREADS=str(threads))
        procs.append(subprocess.Popen([py, os.path.abspath(__file__)] + sys.argv[1:], env=env))
    codes = [p.wait() for p in procs]
    sys.exit(f"ranks exited with {codes}" if any(codes) else 0)
rank = int(os.environ.get("RANK", "0"))
if ranks > 1:
    dist.init_process_group("gloo")
torch.set_num_threads(threads)
device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
if path.is_dir():
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
else:
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
model.model.layers = model.model.layers[:layers]
model.config.num_hidden_layers = layers
if mode == "checkpointing":
    model.gradient_checkpointing_enable()
model.to(device).train()
vocab = model.config.vocab_size
trained = torch.nn.parallel.DistributedDataParallel(model) if ranks > 1 else model

torch.manual_seed(0)
windows = batch * steps
ids = torch.randint(vocab, (windows, tokens + 1))
x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
lp, idx, rest = [], [], []
for _ in range(windows):
    logp = (torch.randn(1, tokens, vocab) * 3.0).log_softmax(-1)
    values, indices = logp.topk(TOP_K, -1)
    lp.append(values.half())
    idx.append(indices.to(torch.int32))
    rest.append((1 - values.exp().sum(-1)).clamp_min(0).half())
lp, idx, rest = torch.cat(lp), torch.cat(idx), torch.cat(rest)
# Like anbiq's CUDA path: the windows and the stored teacher on the host, each batch copied to the device.

optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)


def kd_loss(logits, logprobs, indices, rest):
    """Forward KL(teacher || student) per token, mean over tokens; teacher = top k + an even tail."""
    log_q = logits.float().log_softmax(-1)
    logprobs, rest = logprobs.float(), rest.float().clamp_min(1e-12)
    p = logprobs.exp()
    log_q_top = log_q.gather(-1, indices.long())
    others = vocab - TOP_K
    tail_logp = (rest / others).log()
    tail_log_q = log_q.sum(-1) - log_q_top.sum(-1)
    kl = (p * (logprobs - log_q_top)).sum(-1) + rest * tail_logp - (rest / others) * tail_log_q
    return kl.mean()


def train_step(rows):
    # This rank's share of the global batch `rows` (all of it with one rank).
    share = range(rows.start, rows.stop)[rank * batch // ranks:(rank + 1) * batch // ranks]
    rows = slice(share.start, share.stop)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = trained(input_ids=x[rows].to(device)).logits
    loss = kd_loss(logits, *(t[rows].to(device) for t in (lp, idx, rest)))
    loss.backward()
    optimizer.step()
    return loss.item()


_, before = rss_mib()
train_step(slice(0, batch))  # warm-up
started = time.perf_counter()
for s in range(steps):
    train_step(slice(s * batch, (s + 1) * batch))
if device.type == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - started
peak, _ = rss_mib()
gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
if rank == 0:
    mode_name = "full logits" + (", checkpointing" if mode == "checkpointing" else "") + (", DDP" if ranks > 1 else "")
    print(json.dumps({"impl": "pytorch", "mode": mode_name, "ranks": ranks, "layers": layers, "batch": batch,
                      "time": tokens, "vocab": vocab, "top_k": TOP_K, "threads": threads, "precision": precision,
                      "steps": steps, "seconds_per_step": seconds / steps,
                      "tokens_per_s": batch * tokens * steps / seconds, "rss_before_mib": before,
                      "peak_rss_mib": peak, "device": str(device),
                      "gpu_peak_mib": gpu_peak}), flush=True)
if ranks > 1:
    dist.barrier()
    dist.destroy_process_group()
