#!/usr/bin/env python3
"""transformers' side of examples/llama_bench.rs: SmolLM2-135M loaded from the same GGUF, eager (no compile),
the default attention (sdpa), one thread; forward over batch x tokens random ids, f32 then bf16 weights."""
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
