#!/usr/bin/env python3
"""tests/fixtures/smollm2/pruned-reference.json: SmolLM2-135M-Instruct as transformers loads its Q4_1 GGUF, with
every decoder layer but KEEP deleted (`model.model.layers` cut, `num_hidden_layers` set): what a depth-pruned model
must compute. The prompt ids are reference.json's; logits are kept for the first 1024 tokens of the vocabulary.
KEEP is the 20 layers workflows/smollm2-prune-distill.yaml's `prune` step keeps by block influence.

    scripts/bench/py.sh scripts/reference/pruned_fixture.py data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

KEEP = [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 18, 19, 20, 21, 22, 23, 24, 27, 28, 29]
FIX = Path(__file__).resolve().parents[2] / "tests/fixtures/smollm2"

torch.set_num_threads(1)
gguf = Path(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
model.model.layers = torch.nn.ModuleList([model.model.layers[i] for i in KEEP])
model.config.num_hidden_layers = len(KEEP)
for i, layer in enumerate(model.model.layers):
    layer.self_attn.layer_idx = i
ids = json.loads((FIX / "reference.json").read_text())["ids"]
with torch.no_grad():
    logits = model(torch.tensor(ids)).logits
ref = {"keep": KEEP, "ids": ids, "logits_head": logits[..., :1024].flatten().tolist()}
(FIX / "pruned-reference.json").write_text(json.dumps(ref) + "\n")
print(f"{FIX / 'pruned-reference.json'}: {len(KEEP)} layers, logits {list(logits.shape)}")
