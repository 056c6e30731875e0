#!/usr/bin/env python3
"""transformers' side of examples/llama_bench.rs: SmolLM2-135M loaded from the same GGUF, eager (no compile),
the default attention (sdpa), one thread; greedy generation at batch 1 and 16, then the forward over batch x tokens
random ids, f32 then bf16 weights."""
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

path = Path(sys.argv[1])
batch, tokens, runs = (int(a) for a in (sys.argv[2:5] + ["8", "256", "3"][len(sys.argv[2:5]):]))
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
torch.manual_seed(0)
x = torch.randint(model.config.vocab_size, (batch, tokens))

# Greedy generation with the key/value cache (f32): 64 new tokens after a 16-token prompt, at batch 1 and 16.
for gen_batch in [1, 16]:
    prompt = torch.randint(model.config.vocab_size, (gen_batch, 16))
    kwargs = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, use_cache=True, pad_token_id=0)
    with torch.no_grad():
        model.generate(prompt, **kwargs)
        seconds = []
        for _ in range(runs):
            t = time.perf_counter()
            out = model.generate(prompt, **kwargs)
            seconds.append(time.perf_counter() - t)
            assert out.shape == (gen_batch, 16 + 64)
    median = sorted(seconds)[len(seconds) // 2]
    print(json.dumps({"impl": "transformers", "generate": True, "precision": "f32", "batch": gen_batch, "prompt": 16,
                      "new_tokens": 64, "threads": 1, "runs": runs, "seconds": round(median, 4),
                      "tokens_per_s": round(gen_batch * 64 / median, 1)}))

for precision in ["f32", "bf16"]:
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    with torch.no_grad():
        model(x).logits.sum(dtype=torch.float32).item()
        seconds = []
        for _ in range(runs):
            t = time.perf_counter()
            model(x).logits.sum(dtype=torch.float32).item()
            seconds.append(time.perf_counter() - t)
    median = sorted(seconds)[len(seconds) // 2]
    print(json.dumps({"impl": "transformers", "precision": precision, "batch": batch, "tokens": tokens, "threads": 1,
                      "runs": runs, "seconds": round(median, 4), "tokens_per_s": round(batch * tokens / median, 1)}))
