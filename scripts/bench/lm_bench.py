"""Tokens per second of the same language-model paths as examples/lm_bench.rs, in PyTorch eager, single-threaded.

Same models (GPT-2 style, pre-norm, causal scaled_dot_product_attention, GELU MLP, tied embeddings; teacher 4 layers
d=192, student 2 layers d=80, 4 heads, context 128, vocabulary 84), same batch, same steps:
  infer            teacher forward under no_grad, then top-k (k = 8) compression to f16
  distill_offline  dense teacher logits rebuilt from the top-k batch, student forward, KD (T=1, alpha=0.5), backward, Adam
  distill_online   the same with the teacher's forward pass in the loop
Usage: python scripts/bench/lm_bench.py [batch] [seconds]
"""
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, CONTEXT, TOP_K = 84, 128, 8


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def attention(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, -1)
        split = lambda z: z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, d))

    def forward(self, h):
        h = h + self.attention(self.ln1(h))
        return h + self.out(F.gelu(self.fc(self.ln2(h))))


class Gpt(nn.Module):
    def __init__(self, layers, d, heads=4):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, d), nn.Embedding(CONTEXT, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x):
        h = self.wte(x) + self.wpe(torch.arange(x.shape[1]))
        for b in self.blocks:
            h = b(h)
        return self.ln_f(h) @ self.wte.weight.T


def compress(logits):
    logp = logits.float().log_softmax(-1)
    values, indices = logp.topk(TOP_K, -1)
    rest = (1 - values.exp().sum(-1)).clamp_min(0)
    return values.half(), indices.short(), rest.half()


def expand(values, indices, rest):
    tail = (rest.float().clamp_min(1e-12) / (VOCAB - TOP_K)).log().unsqueeze(-1)
    return tail.expand(*rest.shape, VOCAB).contiguous().scatter(-1, indices.long(), values.float())


def kd(student, teacher, labels, t=1.0, alpha=0.5):
    s, tt = student.flatten(0, -2), teacher.flatten(0, -2)
    soft = F.kl_div((s / t).log_softmax(-1), (tt / t).log_softmax(-1), reduction="batchmean", log_target=True) * t * t
    return alpha * soft + (1 - alpha) * F.cross_entropy(s, labels.flatten())


def rate(seconds, f):
    f()
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < seconds:
        f()
        calls += 1
    return calls / (time.perf_counter() - start)


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher, student = Gpt(4, 192).eval(), Gpt(2, 80)
    x = torch.randint(0, VOCAB, (batch, CONTEXT))
    y = x.roll(-1, 1)
    with torch.no_grad():
        stored = compress(teacher(x))
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)

    def step(teacher_logits):
        loss = kd(student(x), teacher_logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            compress(teacher(x))

    def online():
        with torch.no_grad():
            t = teacher(x)
        step(t)

    n = batch * CONTEXT
    for name, f in [("infer", infer), ("distill_offline", lambda: step(expand(*stored))), ("distill_online", online)]:
        print(f"pytorch {name} {rate(seconds, f) * n:.0f}")


if __name__ == "__main__":
    main()
