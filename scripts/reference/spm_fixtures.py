"""A SentencePiece BPE tokenizer in a GGUF file, as llama.cpp's converter writes one for Llama 2 / TinyLlama /
Mistral (tokenizer.ggml.model = llama: pieces, scores and token types, no merges), with reference ids
(run by tokenizers.sh):

  tests/fixtures/gguf/tiny-spm.gguf          800 pieces trained with `sentencepiece` on the first 400 kB of the
                                             Shakespeare corpus, Llama 2's settings (BPE, byte fallback, split
                                             digits, a dummy prefix, no normalisation); one tiny tensor
  tests/fixtures/tokenizers/spm.json         ids of tokenizer_fixtures.STRINGS and of the first 100 kB of the corpus
                                             as transformers builds the tokenizer from that file (the reference
                                             anbiq matches), and as sentencepiece itself encodes them (they differ
                                             on runs of leading spaces: transformers' conversion, noted, not fixed)
"""

import hashlib
import json
import struct
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import sentencepiece as spm
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_fixtures import STRINGS  # noqa: E402

FIX = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def digest(ids):
    return {"tokens": len(ids), "head": ids[:64], "sha256": hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()}


def main():
    corpus = Path(sys.argv[1]).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "corpus.txt").write_text(corpus[:400_000], encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(Path(tmp) / "corpus.txt"), model_prefix=str(Path(tmp) / "tiny"), vocab_size=800,
            model_type="bpe", byte_fallback=True, split_digits=True, add_dummy_prefix=True,
            normalization_rule_name="identity", allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
            character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, num_threads=1, minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=str(Path(tmp) / "tiny.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # llama.cpp's token types: 1 normal, 2 unknown, 3 control, 5 unused, 6 byte.
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i)
                     else 6 if sp.is_byte(i) else 1)
    path = FIX / "gguf" / "tiny-spm.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_tensor("token_embd.weight", np.zeros((sp.vocab_size(), 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    head = corpus[:100_000]
    ref = {
        "transformers": {
            "ids": [tok(s, add_special_tokens=False)["input_ids"] for s in STRINGS],
            "with_special": tok("To be, or not to be", add_special_tokens=True)["input_ids"],
            "corpus": digest(tok(head, add_special_tokens=False)["input_ids"]),
        },
        "sentencepiece": {"ids": [sp.encode(s) for s in STRINGS], "corpus": digest(sp.encode(head))},
    }
    (FIX / "tokenizers" / "spm.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
