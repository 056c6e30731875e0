#!/usr/bin/env python3
"""Loads a directory written by `anbiq export --format hf` with transformers and compares its logits with a
reference.json of tests/fixtures (the same weights, computed by transformers from the original files).

    scripts/bench/py.sh scripts/reference/check_export.py OUT_DIR tests/fixtures/smollm2/reference.json
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)  # as the reference was computed

out_dir, ref_path = sys.argv[1], sys.argv[2]
ref = json.load(open(ref_path))
model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
ids = torch.tensor(ref["ids"])
with torch.no_grad():
    logits = model(ids).logits
if "logits" in ref:
    want = torch.tensor(ref["logits"]).reshape(logits.shape)
    diff = (logits - want).abs().max().item()
else:
    want = torch.tensor(ref["logits_head"]).reshape(*logits.shape[:2], 1024)
    diff = (logits[..., :1024] - want).abs().max().item()
print(f"{out_dir}: {type(model).__name__} loads; max |logits - reference| = {diff:.3g}")
sys.exit(0 if diff <= 1e-4 else 1)
