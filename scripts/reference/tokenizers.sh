#!/usr/bin/env bash
# Regenerates tests/fixtures/tokenizers/reference.json with Hugging Face tokenizers/transformers (see
# tokenizer_fixtures.py), from the same checksummed model files and corpus the tests read.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bash "$root/scripts/bench/setup-python.sh"
"$root/.bench/venv/bin/pip" install -q "transformers==5.24.0" accelerate gguf==0.19.0 "tokenizers==0.23.3"
for what in smollm2 minilm shakespeare; do bash "$root/scripts/fetch-data.sh" "$what"; done
bash "$root/scripts/bench/py.sh" "$root/scripts/reference/tokenizer_fixtures.py" \
    "$root/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$root/data/minilm" "$root/data/shakespeare.txt" \
    "$root/tests/fixtures/tokenizers"
"$root/.bench/venv/bin/pip" install -q sentencepiece==0.2.3
bash "$root/scripts/bench/py.sh" "$root/scripts/reference/spm_fixtures.py" "$root/data/shakespeare.txt"
