#!/usr/bin/env python3
"""tests/fixtures/minilm/pca16.json: the principal directions `prune … pca` projects a sentence embedder's outputs
onto, computed by numpy (LAPACK's SVD, float64) from all-MiniLM-L6-v2's real embeddings of the 64 reference
sentences (tests/fixtures/minilm/embeddings.f32, little-endian [64, 384], from bert_fixtures.py). Uncentred, as
anbiq's `nn::prune::principal_directions`: the top right singular vectors of the embeddings, each signed so its
largest-magnitude entry is positive, and the share of the squared length they keep.

    scripts/bench/py.sh scripts/reference/pca_fixture.py      (any Python with numpy)
"""
import json
from pathlib import Path

import numpy as np

K = 16
FIX = Path(__file__).resolve().parents[2] / "tests/fixtures/minilm"

x = np.fromfile(FIX / "embeddings.f32", dtype="<f4").reshape(64, 384).astype(np.float64)
_, s, vt = np.linalg.svd(x, full_matrices=False)
top = vt[:K]
largest = np.abs(top).argmax(axis=1)
top = top * np.sign(top[np.arange(K), largest])[:, None]
energy = s**2
ref = {
    "k": K,
    "source": "embeddings.f32",
    "directions": top.flatten().tolist(),
    "kept": float(energy[:K].sum() / energy.sum()),
    "numpy": np.__version__,
}
(FIX / "pca16.json").write_text(json.dumps(ref) + "\n")
print(f"pca16.json: {K} directions keep {ref['kept']:.6f} of the squared length")
