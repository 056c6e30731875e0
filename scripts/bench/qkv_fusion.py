#!/usr/bin/env python3
"""Whether one fused query-key-value product (384 -> 1152) beats three of 384 -> 384 on 32 x 32 tokens, for the
6 layers of all-MiniLM-L6-v2, one thread, f32 and bf16 autocast; rates are sets of 6 layers' products per second,
three rounds of 2 s each. BENCHMARKS.md, "How far 1.1× is".

    OMP_NUM_THREADS=1 scripts/bench/py.sh scripts/bench/qkv_fusion.py
"""
import time, torch, json, sys
torch.set_num_threads(1)
from transformers import BertModel
m = BertModel.from_pretrained("data/minilm").eval()
x = torch.randn(1024, 384)
res = {}
for prec in ["f32", "bf16"]:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16")
    with torch.inference_mode(), ctx:
        layers = m.encoder.layer
        sep = [(l.attention.self.query, l.attention.self.key, l.attention.self.value) for l in layers]
        fused = [torch.nn.Linear(384, 1152) for _ in layers]
        for f, (q, k, v) in zip(fused, sep):
            f.weight.copy_(torch.cat([q.weight, k.weight, v.weight])); f.bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
        def run_sep():
            for q, k, v in sep: q(x); k(x); v(x)
        def run_fused():
            for f in fused: f(x)
        for f in (run_sep, run_fused): f()
        out = {}
        for rnd in range(3):
            for name, f in (("separate", run_sep), ("fused", run_fused)):
                t = time.perf_counter(); n = 0
                while time.perf_counter() - t < 2: f(); n += 1
                out.setdefault(name, []).append(n / (time.perf_counter() - t))
        res[prec] = {k: [round(v, 1) for v in vs] for k, vs in out.items()}
print(json.dumps(res))
