"""Checks a GGUF file written by `anbiq export --format gguf` in the reference implementations: the `gguf` package
reads every tensor, and transformers loads it (gguf_file=) into a model whose logits and greedy continuation are
compared with tests/fixtures/smollm2/reference.json (SmolLM2 as transformers loads the original Q4_1 file).

    scripts/bench/py.sh scripts/reference/check_gguf_export.py EXPORTED.gguf
"""

import json
import sys
from pathlib import Path

import gguf
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path = Path(sys.argv[1])
reader = gguf.GGUFReader(str(path))
for t in reader.tensors:
    gguf.dequantize(t.data, t.tensor_type)
print(f"gguf {gguf.__version__ if hasattr(gguf, '__version__') else ''}: {len(reader.tensors)} tensors read and dequantised")

ref = json.loads((Path(__file__).resolve().parents[2] / "tests/fixtures/smollm2/reference.json").read_text())
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
ids = torch.tensor(ref["ids"])
with torch.no_grad():
    logits = model(ids).logits
head = torch.tensor(ref["logits_head"]).reshape(ids.shape[0], ids.shape[1], 1024)
print("max |exported - original| over the first 1024 logits:", (logits[..., :1024] - head).abs().max().item())
same = (logits.argmax(-1) == torch.tensor(ref["argmax"])).float().mean().item()
print("arg-max agreement with the original:", same)
with torch.no_grad():
    out = model.generate(torch.tensor([ref["prompt"]]), max_new_tokens=32, do_sample=False)
greedy = out[0, len(ref["prompt"]):].tolist()
print("greedy continuation equal to the original's:", greedy == ref["greedy"], repr(tok.decode(greedy)))
print("tokenizer ids equal on the prompt text:", tok(tok.decode(ref["prompt"]), add_special_tokens=False)["input_ids"] == ref["prompt"])
