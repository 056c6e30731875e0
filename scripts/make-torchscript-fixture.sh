#!/usr/bin/env bash
# Regenerates tests/fixtures/tiny_mlp.{pt,json} with PyTorch 2.11 (scripts/make-torchscript-fixture.py).
#
# The only torch 2.11.0 wheel on PyPI is a CUDA build; `import torch` needs its CUDA libraries to be loadable even
# on the CPU. Instead of gigabytes of cuBLAS/cuDNN/NCCL we give the dynamic loader empty stand-ins with the right
# sonames and symbol versions, and import torch with lazy binding: nothing CUDA is ever called. libcudart and
# libcupti come from their (small) real wheels.
#
#   scripts/make-torchscript-fixture.sh            # uses /tmp/whl (see ../shared/RECIPES.md) or downloads there
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/anbiq-torchscript}
WHL=${WHL:-/tmp/whl}
mkdir -p "$WORK" "$WHL"

ls "$WHL"/torch-2.11.0-*.whl >/dev/null 2>&1 ||
    python3 -m pip download -q --no-deps -d "$WHL" torch==2.11.0 'nvidia-cuda-runtime==13.0.96.*' \
        'nvidia-cuda-cupti==13.0.85.*'
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q --no-deps "$WHL"/torch-2.11.0-*.whl "$WHL"/nvidia_cuda_runtime-13.0.96-*.whl \
        "$WHL"/nvidia_cuda_cupti-13.0.85-*.whl
    "$WORK/venv/bin/pip" install -q numpy typing_extensions sympy filelock jinja2 networkx fsspec
fi

# Empty libraries named like the CUDA ones torch links against, each defining the symbol version torch asks for.
STUBS="$WORK/cuda-stubs"
mkdir -p "$STUBS"
: >"$STUBS/empty.c"
stub() { # soname [version node]
    echo "${2:-$1} { local: *; };" >"$STUBS/$1.map"
    gcc -shared -fPIC -o "$STUBS/$1" "$STUBS/empty.c" -Wl,-soname,"$1" -Wl,--version-script,"$STUBS/$1.map"
}
for lib in libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libcufft.so.12 libcusparse.so.12; do stub "$lib"; done
for lib in libcufile.so.0 libcusparseLt.so.0 libnccl.so.2 libcurand.so.10; do stub "$lib"; done
stub libnvshmem_host.so.3 NVSHMEM

LD_LIBRARY_PATH="$STUBS" "$WORK/venv/bin/python" -c '
import os, runpy, sys
sys.setdlopenflags(os.RTLD_LAZY | os.RTLD_GLOBAL)  # resolve CUDA symbols only if called: never
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
' scripts/make-torchscript-fixture.py tests/fixtures
