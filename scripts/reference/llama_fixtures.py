#!/usr/bin/env python3
"""Reference outputs of `transformers` (5.x, PyTorch 2.11, CPU, f32) for anbiq's llama architecture.

Writes, under tests/fixtures/:
  tiny-llama/                 a random LlamaForCausalLM (GQA 4/2 heads, head_dim 16 != 48/4, llama3 rope scaling,
                              attention biases, untied head) saved with save_pretrained, plus reference.json: token
                              ids, their logits (flattened, f32) and an 8-token greedy continuation
  smollm2/reference.json      SmolLM2-135M-Instruct loaded from its Q4_1 GGUF (gguf_file=): prompt token ids, logits
                              at every position over the first 1024 vocabulary entries, each position's argmax and
                              logsumexp over the whole vocabulary, a 32-token greedy continuation, and the mean NLL of
                              256 tokens of Hamlet

Run: scripts/reference/llama.sh (the PyTorch venv of scripts/bench/setup-python.sh, plus transformers, gguf).
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
torch.set_num_threads(1)


def tiny():
    out = FIX / "tiny-llama"
    config = LlamaConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, vocab_size=97, max_position_embeddings=64, rms_norm_eps=1e-6, attention_bias=True,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 4.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)  # exercise biases and norm weights
    model.save_pretrained(out, safe_serialization=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (2, 12), generator=g)
    with torch.no_grad():
        logits = model(ids).logits
        greedy = model.generate(ids[:1, :5], max_new_tokens=8, do_sample=False, use_cache=True)
    ref = {"ids": ids.tolist(), "logits": logits.flatten().tolist(), "shape": list(logits.shape),
           "prompt": ids[0, :5].tolist(), "greedy": greedy[0, 5:].tolist()}
    (out / "reference.json").write_text(json.dumps(ref) + "\n")


def smollm2(gguf_path, hamlet_path):
    gguf_path = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, torch_dtype=torch.float32).eval()
    prompts = ["The capital of France is", "To be, or not to be, that is the question:"]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    n = min(len(i) for i in ids)
    batch = torch.tensor([i[:n] for i in ids])
    with torch.no_grad():
        logits = model(batch).logits
        greedy = model.generate(torch.tensor([ids[0]]), max_new_tokens=32, do_sample=False, use_cache=True)
    text = Path(hamlet_path).read_text()
    hamlet = tok(text, add_special_tokens=False)["input_ids"][:257]
    with torch.no_grad():
        h = model(torch.tensor([hamlet[:-1]])).logits[0]
        nll = torch.nn.functional.cross_entropy(h, torch.tensor(hamlet[1:])).item()
    ref = {
        "ids": batch.tolist(),
        "logits_head": logits[..., :1024].flatten().tolist(),
        "argmax": logits.argmax(-1).tolist(),
        "logsumexp": torch.logsumexp(logits, -1).flatten().tolist(),
        "prompt": ids[0],
        "greedy": greedy[0, len(ids[0]):].tolist(),
        "greedy_text": tok.decode(greedy[0, len(ids[0]):]),
        "hamlet_ids": hamlet,
        "hamlet_nll": nll,
    }
    (FIX / "smollm2").mkdir(exist_ok=True)
    (FIX / "smollm2" / "reference.json").write_text(json.dumps(ref) + "\n")


if __name__ == "__main__":
    tiny()
    if len(sys.argv) > 2:
        smollm2(sys.argv[1], sys.argv[2])
