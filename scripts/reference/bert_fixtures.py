"""Reference outputs for tests/bert.rs, from transformers' BertModel (run by bert.sh).

Writes
  tests/fixtures/tiny-bert/           a tiny random BERT (2 layers, d 32, 4 heads, vocab 120) saved with
                                      save_pretrained, plus reference.json: a padded batch of ids, its attention
                                      mask, last_hidden_state (flattened, f32) and the masked-mean pooled,
                                      L2-normalised embeddings
  tests/fixtures/minilm/reference.json  64 Shakespeare lines and all-MiniLM-L6-v2's embeddings of them as
                                      sentence-transformers computes them (token embeddings, masked mean, L2
                                      normalisation; tokenizer.json without its fixed padding), f32 in
                                      embeddings.f32 beside it
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel

FIX = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def pool(hidden, mask):
    """sentence-transformers' Pooling(mean) then Normalize."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1)


def tiny():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0,
    )
    model = BertModel(config).eval()
    out = FIX / "tiny-bert"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    ids = torch.tensor([[2, 17, 33, 5, 91, 44, 3, 0, 0, 0], [2, 8, 9, 10, 11, 12, 13, 14, 15, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    ref = {
        "ids": ids.tolist(),
        "mask": mask.tolist(),
        "hidden": hidden.flatten().tolist(),
        "embeddings": pool(hidden, mask).flatten().tolist(),
    }
    (out / "reference.json").write_text(json.dumps(ref) + "\n")


def minilm(model_dir, corpus_path):
    lines = [l.strip() for l in corpus_path.read_text(encoding="utf-8").splitlines()]
    sentences = [l for l in lines[2000:] if len(l) > 30][:64]
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    encoded = [tok.encode(s).ids for s in sentences]
    longest = max(map(len, encoded))
    ids = torch.tensor([e + [0] * (longest - len(e)) for e in encoded])
    mask = (ids != 0).long()
    model = BertModel.from_pretrained(str(model_dir), add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    embeddings = pool(hidden, mask).numpy().astype("<f4")
    out = FIX / "minilm"
    out.mkdir(parents=True, exist_ok=True)
    (out / "embeddings.f32").write_bytes(embeddings.tobytes())
    (out / "reference.json").write_text(
        json.dumps({"sentences": sentences, "ids": encoded, "shape": list(embeddings.shape)}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    tiny()
    minilm(Path(sys.argv[1]), Path(sys.argv[2]))
