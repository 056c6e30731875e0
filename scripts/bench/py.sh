#!/usr/bin/env bash
# Runs Python from the baseline venv (scripts/bench/setup-python.sh) with the CUDA stand-ins and lazy binding.
#   scripts/bench/py.sh SCRIPT.py ARGS...   |   scripts/bench/py.sh -c CODE
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${BENCH_DIR:-$root/.bench}
export LD_LIBRARY_PATH="$dir/cuda-stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$dir/venv/bin/python" -c '
import os, runpy, sys
sys.setdlopenflags(os.RTLD_LAZY | os.RTLD_GLOBAL)  # resolve CUDA symbols only if called: never
if sys.argv[1] == "-c":
    exec(sys.argv[2])
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
' "$@"
