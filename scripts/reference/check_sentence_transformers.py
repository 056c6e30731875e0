#!/usr/bin/env python3
"""Loads a directory written by `anbiq export --format hf` from a `bert` model with the `sentence-transformers`
package and compares its embeddings of SENTENCES (one per line) with the ones anbiq stored for the same model and
sentences (the `infer` artifact directory EMBEDDINGS: embeddings.safetensors, f32).

    scripts/bench/py.sh scripts/reference/check_sentence_transformers.py OUT_DIR EMBEDDINGS SENTENCES

Exit status 0 when every sentence's cosine is ≥ 0.99999 (the issue's bar).
"""
import sys

import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

torch.set_num_threads(1)

out_dir, embeddings_dir, sentences_path = sys.argv[1:4]
sentences = [line for line in open(sentences_path, encoding="utf-8").read().splitlines() if line.strip()]
ours = load_file(f"{embeddings_dir}/embeddings.safetensors")["embeddings"].float()
model = SentenceTransformer(out_dir, device="cpu")
print(model)
theirs = model.encode(sentences, convert_to_tensor=True, batch_size=32).float()
assert theirs.shape == ours.shape, f"sentence-transformers gives {tuple(theirs.shape)}, anbiq {tuple(ours.shape)}"
cosine = torch.nn.functional.cosine_similarity(theirs, ours, dim=1)
worst = cosine.min().item()
print(f"{out_dir}: {len(sentences)} sentences, {theirs.shape[1]} dims; lowest cosine to anbiq {worst:.9f}, "
      f"max |Δ| {(theirs - ours).abs().max().item():.3g}")
sys.exit(0 if worst >= 0.99999 else 1)
