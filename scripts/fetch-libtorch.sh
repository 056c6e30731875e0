#!/usr/bin/env bash
# Provision a CPU-capable libtorch 2.11.0 (the version tch 0.24.0 binds) from the PyPI torch wheel.
#
# The Linux x86_64 torch wheel is a CUDA build but carries a complete libtorch. We keep torch/lib and torch/include,
# drop the CUDA-only libraries (a GPU machine's own torch libraries can be loaded at run time instead), and add the two
# small CUDA runtime libraries that libtorch_cpu links against. Idempotent; every wheel is sha256-verified.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/third_party/libtorch"
stamp="$dest/.complete-2.11.0"
[ -f "$stamp" ] && { echo "libtorch 2.11.0 already in $dest"; exit 0; }

# The exact wheels are pinned (cp311 tag whatever the local Python: only the C++ parts are used).
dl=$(mktemp -d); trap 'rm -rf "$dl"' EXIT
echo "downloading torch 2.11.0 and the CUDA runtime stubs libtorch_cpu links against ..."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dl" \
  torch==2.11.0 'nvidia-cuda-runtime==13.0.96.*' 'nvidia-cuda-cupti==13.0.85.*'

# Verify each wheel against the hash pinned in scripts/libtorch.sha256.
( cd "$dl" && sha256sum -c "$root/scripts/libtorch.sha256" --ignore-missing --strict ) \
  || { echo "checksum mismatch for a downloaded wheel" >&2; exit 1; }
for f in "$dl"/*.whl; do
  grep -q "  $(basename "$f")\$" "$root/scripts/libtorch.sha256" \
    || { echo "no pinned sha256 for $(basename "$f") in scripts/libtorch.sha256" >&2; exit 1; }
done

tmp="$dest.partial"; rm -rf "$tmp"; mkdir -p "$tmp"
( cd "$tmp"
  unzip -q "$dl"/torch-2.11.0-*.whl 'torch/lib/*' 'torch/include/*'
  unzip -q "$dl"/nvidia_cuda_runtime-*.whl 'nvidia/cu13/lib/libcudart.so.13'
  unzip -q "$dl"/nvidia_cuda_cupti-*.whl 'nvidia/cu13/lib/libcupti.so.13'
  rm -f torch/lib/libtorch_cuda*.so torch/lib/libc10_cuda.so torch/lib/libtorch_nvshmem.so torch/lib/libtorch_python.so )
rm -rf "$dest"; mv "$tmp" "$dest"
touch "$stamp"
echo "libtorch 2.11.0 ready in $dest ($(du -sh "$dest" | cut -f1))"
