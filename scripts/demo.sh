#!/usr/bin/env bash
# The demo, from a fresh clone: installs libtorch, builds anbiq and runs workflows/quickstart.yaml on the digits set
# compiled into the binary, and writes its HTML report. Run it twice: the second run is fully cached.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cargo build --bin anbiq
./target/debug/anbiq run workflows/quickstart.yaml --report "$@"   # also writes workflows/quickstart.report.html
./target/debug/anbiq metrics workflows/quickstart.yaml
