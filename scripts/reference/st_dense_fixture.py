#!/usr/bin/env python3
"""tests/fixtures/minilm-dense/: all-MiniLM-L6-v2 with a sentence-transformers `Dense` module (384 → 128, bias,
identity activation, seeded weights) between Pooling and Normalize — the module order of LaBSE-style models — saved
by sentence-transformers itself (modules.json, 2_Dense/), and its embeddings of the 64 sentences of
tests/fixtures/minilm/reference.json (embeddings.f32, little-endian [64, 128]).

    scripts/bench/py.sh scripts/reference/st_dense_fixture.py      (needs scripts/fetch-data.sh minilm)
"""
import json
import os
import shutil
import tempfile

import torch
from sentence_transformers import SentenceTransformer, models

torch.set_num_threads(1)
root = os.path.join(os.path.dirname(__file__), "..", "..")
out = os.path.join(root, "tests", "fixtures", "minilm-dense")
base = SentenceTransformer(os.path.join(root, "data", "minilm"), device="cpu")
torch.manual_seed(15)
dense = models.Dense(384, 128, bias=True, activation_function=torch.nn.Identity())
modules = list(base._modules.values())  # Transformer, Pooling, Normalize
model = SentenceTransformer(modules=modules[:2] + [dense] + modules[2:], device="cpu")
sentences = json.load(open(os.path.join(root, "tests", "fixtures", "minilm", "reference.json")))["sentences"]
embeddings = model.encode(sentences, convert_to_tensor=True, batch_size=64).float()
with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    shutil.copy(os.path.join(tmp, "modules.json"), out)
    shutil.copytree(os.path.join(tmp, "2_Dense"), os.path.join(out, "2_Dense"))
embeddings.numpy().astype("<f4").tofile(os.path.join(out, "embeddings.f32"))
print(f"{out}: modules {[type(m).__name__ for m in model]}, embeddings {tuple(embeddings.shape)}")
