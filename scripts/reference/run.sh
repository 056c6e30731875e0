#!/usr/bin/env bash
# Regenerates the committed reference fixtures of the GGUF reader (tests/fixtures/gguf/) with the `gguf` Python
# package, in a git-ignored venv (.bench/ref). Needs scripts/fetch-data.sh smollm2 for smollm2.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$root/.bench/ref
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q gguf==0.19.0 numpy blake3
"$venv/bin/python" "$root/scripts/reference/gguf_fixtures.py" "$root/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
