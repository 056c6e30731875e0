"""Reference token ids for tests/tokenizers.rs, from Hugging Face `tokenizers` / `transformers` (run by tokenizers.sh).

Writes tests/fixtures/tokenizers/reference.json:
  strings            the tricky strings (Unicode, digits, whitespace runs, special tokens, ...)
  smollm2.ids        their ids under SmolLM2's tokenizer as transformers builds it from the GGUF file, with the
                     pre-tokenizer SmolLM2's own tokenizer.json has (see below), no special tokens added
  smollm2.decoded    those ids decoded again (byte-level BPE is lossless)
  minilm.ids         their ids under all-MiniLM-L6-v2's tokenizer.json, padding and truncation off, [CLS]/[SEP] added
  <model>.corpus     the whole Shakespeare corpus (scripts/fetch-data.sh shakespeare) encoded as one text: token
                     count, the first 64 ids and the sha256 of all ids as little-endian u32

transformers 5.24 builds a GGUF's byte-level tokenizer with GPT-2's pre-tokenizer unless it knows the file's
`tokenizer.ggml.pre`; it does not know `smollm`, which llama.cpp and SmolLM2's published tokenizer.json define as
digits split one by one before the GPT-2 split (`Digits(individual_digits=True)` + `ByteLevel`). The script sets
that pre-tokenizer and says so in the fixture; vocabulary, merges and special tokens stay transformers' own.
"""

import hashlib
import json
import struct
import sys
from pathlib import Path

from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoTokenizer

STRINGS = [
    "Hello, world!",
    "To be, or not to be: that is the question.",
    "  leading spaces and trailing   ",
    "tabs\tand\t\tnew\nlines\n\n\nand\r\ncarriage returns",
    "digits 0 12 345 6789 3.14159 1,000,000 2024-12-01",
    "Unicode: café naïve Zürich façade — “quotes” ‘single’ …",
    "日本語のテキスト 中文 한국어",
    "emoji 🦀🚀 and a family 👨\u200d👩\u200d👧 and a flag 🇫🇷",
    "combining: e\u0301 a\u0308 and a non-breaking\u00a0space",
    "contractions: don't I'll we've they're it's O'Neil",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "[CLS] brackets [SEP] [MASK] [UNK]",
    "code: fn main() { println!(\"{}\", x[0] * 2); } // ok",
    "URL https://example.com/a?b=c&d=e#f and e-mail a.b@c.de",
    "ALL CAPS, MiXeD CaSe, snake_case, kebab-case",
    "",
    " ",
    "\n",
    "x" * 300,
]


def encode_corpus(tok, text, **kw):
    ids = tok.encode(text, **kw).ids
    digest = hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()
    return {"tokens": len(ids), "head": ids[:64], "sha256": digest}


def smollm2(gguf_path, corpus):
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    backend = tok.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.no_padding()
    backend.no_truncation()
    ids = [backend.encode(s, add_special_tokens=False).ids for s in STRINGS]
    return {
        "pre_tokenizer": "Digits(individual_digits=True) + ByteLevel(add_prefix_space=False), set by this script",
        "vocab_size": backend.get_vocab_size(with_added_tokens=True),
        "ids": ids,
        "decoded": [backend.decode(i, skip_special_tokens=False) for i in ids],
        "corpus": encode_corpus(backend, corpus, add_special_tokens=False),
    }


def minilm(tokenizer_json, corpus):
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.no_truncation()
    return {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "ids": [tok.encode(s).ids for s in STRINGS],
        "corpus": encode_corpus(tok, corpus),
    }


def main():
    gguf_path, minilm_dir, corpus_path, out = (Path(a) for a in sys.argv[1:5])
    corpus = corpus_path.read_text(encoding="utf-8")
    ref = {
        "strings": STRINGS,
        "smollm2": smollm2(gguf_path, corpus),
        "minilm": minilm(minilm_dir / "tokenizer.json", corpus),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
