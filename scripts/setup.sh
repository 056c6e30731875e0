#!/usr/bin/env bash
# Everything a fresh machine needs before building anbiq: libtorch 2.11.0 (into third_party/, git-ignored).
# Idempotent: a second run checks and returns in well under a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required ($2)" >&2; exit 1; }; }
need cargo "install Rust with rustup: https://rustup.rs"
need python3 "used to download the torch wheel with pip"
need unzip "apt-get install unzip"
python3 -m pip --version >/dev/null 2>&1 || { echo "setup: python3 -m pip is required" >&2; exit 1; }
bash "$root/scripts/fetch-libtorch.sh"
