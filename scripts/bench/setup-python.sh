#!/usr/bin/env bash
# Sets up the PyTorch-eager baseline for scripts/bench.sh: a git-ignored venv with the same torch 2.11.0 wheel anbiq's
# libtorch comes from, importable on a CPU-only machine.
#
# The only torch 2.11.0 wheel on PyPI is a CUDA build whose libtorch links cuBLAS, cuDNN, NCCL, … Instead of
# downloading gigabytes of them we give the dynamic loader empty stand-ins with the right sonames and symbol versions,
# and import torch with lazy binding (scripts/bench/py.sh): nothing CUDA is ever called. libcudart and libcupti come
# from their small real wheels. Also serves scripts/bench-lm.sh and scripts/make-torchscript-fixture.sh. Idempotent.
#
#   scripts/bench/setup-python.sh [DIR]      # DIR defaults to .bench (git-ignored); wheels cached in DIR/whl or $WHL
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/.bench}
whl=${WHL:-$dir/whl}
mkdir -p "$dir" "$whl"
[ -f "$dir/.complete-2.11.0" ] && exit 0

if ! ls "$whl"/torch-2.11.0-*.whl >/dev/null 2>&1; then
    echo "bench: downloading torch 2.11.0 (≈530 MB) and the CUDA runtime wheels ..." >&2
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$whl" \
        torch==2.11.0 'nvidia-cuda-runtime==13.0.96.*' 'nvidia-cuda-cupti==13.0.85.*'
    (cd "$whl" && sha256sum -c "$root/scripts/libtorch.sha256" --ignore-missing --strict)
fi
rm -rf "$dir/venv"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q --no-deps "$whl"/torch-2.11.0-*.whl "$whl"/nvidia_cuda_runtime-13.0.96-*.whl \
    "$whl"/nvidia_cuda_cupti-13.0.85-*.whl
"$dir/venv/bin/pip" install -q numpy typing_extensions sympy filelock jinja2 networkx fsspec

# Empty libraries named like the CUDA ones torch links against, each defining the symbol version torch asks for.
stubs="$dir/cuda-stubs"
mkdir -p "$stubs"
: >"$stubs/empty.c"
stub() { # soname [version node]
    echo "${2:-$1} { local: *; };" >"$stubs/$1.map"
    gcc -shared -fPIC -o "$stubs/$1" "$stubs/empty.c" -Wl,-soname,"$1" -Wl,--version-script,"$stubs/$1.map"
}
for lib in libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libcufft.so.12 libcusparse.so.12; do stub "$lib"; done
for lib in libcufile.so.0 libcusparseLt.so.0 libnccl.so.2 libcurand.so.10; do stub "$lib"; done
stub libnvshmem_host.so.3 NVSHMEM
"$root/scripts/bench/py.sh" -c 'import torch; assert torch.__version__.startswith("2.11.0"), torch.__version__'
touch "$dir/.complete-2.11.0"
