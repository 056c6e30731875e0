#!/usr/bin/env python3
"""The `transformers` side of examples/encoder_bench.rs: BertModel + mean pooling (+ L2 normalisation, as
sentence-transformers computes all-MiniLM-L6-v2's embeddings) on the same workloads, f32 and bf16 autocast.

Also the ceiling both sides share: `linears_only_blocks_per_s` runs nothing but the encoder's linear layers (the
same modules, on 32 x 32 tokens, in the same precision) — the rate an encoder would reach if attention, norms,
activations and every other op cost nothing. `block_gflop` is the arithmetic of one 32-token sentence.

    scripts/bench/py.sh scripts/bench/encoder_bench.py MODEL_DIR LINES_FILE [threads] [seconds]
"""
import json
import sys
import time

import torch
from tokenizers import Tokenizer
from transformers import BertModel

model_dir, lines_path = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
torch.set_num_threads(threads)
model = BertModel.from_pretrained(model_dir, dtype=torch.float32, add_pooling_layer=False).eval()
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.no_padding()
tok.no_truncation()
text = open(lines_path, encoding="utf-8").read().splitlines()
cls, sep = tok.encode("").ids

# Blocks: the text's tokens in rows of 30 between [CLS] and [SEP] (as the Rust side builds them).
stream = [t for line in text[:4000] for t in tok.encode(line).ids if t not in (cls, sep)]
block = torch.tensor([[cls] + stream[i * 30:(i + 1) * 30] + [sep] for i in range(32)])

sentences = [tok.encode(l).ids for l in text if l.strip()][:2048]


def embed(ids, mask):
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def padded(batch):
    width = max(len(s) for s in batch)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in batch])
    return ids, (ids != 0).long()


def rate(n, f):
    f()
    start, done = time.perf_counter(), 0
    while done == 0 or time.perf_counter() - start < seconds:
        f()
        done += n
    return done / (time.perf_counter() - start)


in_order = [padded(sentences[i:i + 64]) for i in range(0, len(sentences), 64)]
by_length = sorted(sentences, key=len)
sorted_batches = [padded(by_length[i:i + 64]) for i in range(0, len(by_length), 64)]
padding = lambda batches: sum(int((m == 0).sum()) for _, m in batches)
linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
block_rows = block.numel()


def linears_only():
    x = {}
    for m in linears:
        # One input per width, made once: only the matrix products are timed.
        if m.in_features not in x:
            x[m.in_features] = torch.randn(block_rows, m.in_features)
        m(x[m.in_features])


c = model.config
t = block.shape[1]
# Per token and layer: 4 d x d and 2 d x intermediate products, and attention's two t x d products per token.
block_flop = t * c.num_hidden_layers * 2 * (4 * c.hidden_size ** 2 + 2 * c.hidden_size * c.intermediate_size
                                             + 2 * t * c.hidden_size)
for precision in ["f32", "bf16"]:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), ctx:
        ones = torch.ones_like(block)
        blocks = rate(32, lambda: embed(block, ones))
        ceiling = rate(32, linears_only)
        order = rate(len(sentences), lambda: [embed(i, m) for i, m in in_order])
        srt = rate(len(sentences), lambda: [embed(i, m) for i, m in sorted_batches])
    print(json.dumps({"impl": "transformers", "precision": precision, "threads": threads,
                      "blocks_32x32_sentences_per_s": blocks, "linears_only_blocks_per_s": ceiling,
                      "block_gflop": block_flop / 1e9, "lines": len(sentences),
                      "line_tokens": sum(map(len, sentences)),
                      "lines_in_order_sentences_per_s": order, "lines_in_order_padding_tokens": padding(in_order),
                      "lines_sorted_sentences_per_s": srt, "lines_sorted_padding_tokens": padding(sorted_batches)}))
