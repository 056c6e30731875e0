#!/usr/bin/env bash
# Regenerates tests/fixtures/tiny-bert and tests/fixtures/minilm with transformers' BertModel (see bert_fixtures.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bash "$root/scripts/bench/setup-python.sh"
"$root/.bench/venv/bin/pip" install -q "transformers==5.24.0" "tokenizers==0.23.3" safetensors
bash "$root/scripts/fetch-data.sh" minilm
bash "$root/scripts/fetch-data.sh" shakespeare
bash "$root/scripts/bench/py.sh" "$root/scripts/reference/bert_fixtures.py" "$root/data/minilm" "$root/data/shakespeare.txt"
