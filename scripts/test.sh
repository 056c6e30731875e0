#!/usr/bin/env bash
# The test suite, from a fresh clone: installs what it needs (libtorch, real MNIST), then runs every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/fetch-data.sh mnist
cargo test --workspace "$@"
