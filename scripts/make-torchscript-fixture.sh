#!/usr/bin/env bash
# Regenerates tests/fixtures/tiny_mlp.{pt,json} with PyTorch 2.11 (scripts/make-torchscript-fixture.py), in the same
# git-ignored venv the benchmarks use (scripts/bench/setup-python.sh: the torch 2.11.0 wheel with empty stand-ins for
# its CUDA libraries, imported with lazy binding; nothing CUDA is ever called).
#
#   scripts/make-torchscript-fixture.sh            # wheels cached in .bench/whl, or $WHL (see ../shared/RECIPES.md)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bench/setup-python.sh
scripts/bench/py.sh scripts/make-torchscript-fixture.py tests/fixtures
