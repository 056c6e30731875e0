#!/usr/bin/env python3
"""Reference values for anbiq's GGUF reader, from the `gguf` Python package (llama.cpp's own).

Writes, under tests/fixtures/gguf/:
  types.gguf              one tensor per supported ggml type, 16 blocks of seeded random bytes each (scale fields
                          set to finite f16 values), architecture `test`
  llama.gguf              a 1-layer `llama` model (Q/K permuted as llama.cpp's converter does) with its metadata
  types/<NAME>.f32        gguf.quants.dequantize() of each tensor, little-endian f32
  llama/<hf key>.f32      the tiny llama's weights as Hugging Face holds them (before the permutation)
  smollm2.json            blake3 of every dequantised tensor of SmolLM2-135M-Instruct.Q4_1.gguf (f32 bytes, storage
                          order, GGUF names), if that file is given

Run with scripts/reference/run.sh (a git-ignored venv with gguf==0.19.0, numpy, blake3).
"""
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "gguf"

# (type, offsets of its f16 scale fields in a block)
TYPES = [
    (T.F32, []), (T.F16, []), (T.BF16, []),
    (T.Q4_0, [0]), (T.Q4_1, [0, 2]), (T.Q5_0, [0]), (T.Q5_1, [0, 2]), (T.Q8_0, [0]),
    (T.Q4_K, [0, 2]), (T.Q5_K, [0, 2]), (T.Q6_K, [208]),
]
BLOCKS = 16


def random_blocks(rng, qtype, scale_offsets):
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        return rng.standard_normal(BLOCKS * 16).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return rng.standard_normal(BLOCKS * 16).astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        bits = rng.standard_normal(BLOCKS * 16).astype(np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).view(np.uint8)
    raw = rng.integers(0, 256, size=(BLOCKS, type_size), dtype=np.uint8)
    for off in scale_offsets:
        scales = (rng.standard_normal(BLOCKS) * 0.05).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(BLOCKS, 2)
    return raw.reshape(-1)


def permute(w, n_head):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    rng = np.random.default_rng(20261201)
    (OUT / "types").mkdir(parents=True, exist_ok=True)
    (OUT / "llama").mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(OUT / "types.gguf"), "test")
    for qtype, offsets in TYPES:
        data = random_blocks(rng, qtype, offsets)
        name = f"types.{qtype.name}"
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)  # a byte shape for uint8 data
        values = dequantize(data.reshape(1, -1), qtype).astype(np.float32).reshape(-1)
        values.astype("<f4").tofile(OUT / "types" / f"{qtype.name}.f32")

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    # A one-layer llama: hidden 32, 4 heads of 8, 2 key/value heads, ffn 48, vocab 64, tied embeddings.
    writer = gguf.GGUFWriter(str(OUT / "llama.gguf"), "llama")
    hidden, heads, kv_heads, head_dim, ffn, vocab = 32, 4, 2, 8, 48, 64
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(50000.0)
    writer.add_vocab_size(vocab)
    hf = {
        "model.embed_tokens.weight": rng.standard_normal((vocab, hidden)),
        "model.norm.weight": rng.standard_normal(hidden),
        "model.layers.0.input_layernorm.weight": rng.standard_normal(hidden),
        "model.layers.0.post_attention_layernorm.weight": rng.standard_normal(hidden),
        "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((heads * head_dim, hidden)),
        "model.layers.0.self_attn.k_proj.weight": rng.standard_normal((kv_heads * head_dim, hidden)),
        "model.layers.0.self_attn.v_proj.weight": rng.standard_normal((kv_heads * head_dim, hidden)),
        "model.layers.0.self_attn.o_proj.weight": rng.standard_normal((hidden, heads * head_dim)),
        "model.layers.0.mlp.gate_proj.weight": rng.standard_normal((ffn, hidden)),
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((ffn, hidden)),
        "model.layers.0.mlp.down_proj.weight": rng.standard_normal((hidden, ffn)),
    }
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
        "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
        "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
        "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
        "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
        "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
        "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
        "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
        "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
    }
    for key, w in hf.items():
        w = w.astype(np.float32)
        w.astype("<f4").tofile(OUT / "llama" / f"{key}.f32")
        if key.endswith("q_proj.weight"):
            w = permute(w, heads)
        elif key.endswith("k_proj.weight"):
            w = permute(w, kv_heads)
        writer.add_tensor(names[key], np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    if len(sys.argv) > 1:
        import blake3
        reader = gguf.GGUFReader(sys.argv[1])
        sums = {}
        for t in reader.tensors:
            values = dequantize(t.data, t.tensor_type).astype("<f4")
            sums[t.name] = blake3.blake3(values.tobytes()).hexdigest()
        (OUT / "smollm2.json").write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
