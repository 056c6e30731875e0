#!/usr/bin/env python3
"""The `transformers` side of examples/encoder_bench.rs: BertModel + mean pooling (+ L2 normalisation, as
sentence-transformers computes all-MiniLM-L6-v2's embeddings) on the same workloads, f32 and bf16 autocast.

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
for precision in ["f32", "bf16"]:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), ctx:
        ones = torch.ones_like(block)
        blocks = rate(32, lambda: embed(block, ones))
        order = rate(len(sentences), lambda: [embed(i, m) for i, m in in_order])
        srt = rate(len(sentences), lambda: [embed(i, m) for i, m in sorted_batches])
    print(json.dumps({"impl": "transformers", "precision": precision, "threads": threads,
                      "blocks_32x32_sentences_per_s": blocks, "lines": len(sentences),
                      "line_tokens": sum(map(len, sentences)),
                      "lines_in_order_sentences_per_s": order, "lines_in_order_padding_tokens": padding(in_order),
                      "lines_sorted_sentences_per_s": srt, "lines_sorted_padding_tokens": padding(sorted_batches)}))
