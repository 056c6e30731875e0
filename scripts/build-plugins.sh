#!/usr/bin/env bash
# Builds the shipped loss plugins into plugins/build/*.wasm: the Rust ones (plugins/<name>/, with plugins/sdk)
# for wasm32-unknown-unknown, the C ones (plugins/<name>/*.c) with clang.
#
# On a normal machine:  rustup target add wasm32-unknown-unknown, and clang with the wasm32 target and lld.
# On Debian 12 without rustup targets (as on anbiq's build machines), this script installs and uses Debian's
# rustc-web + rust-web-src (build-std, offline from the vendored library sources), lld-22 and clang-14.
#
# Usage: scripts/build-plugins.sh [--check]   (--check: also run `anbiq plugin check` on each, if anbiq is built)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
plugins="$root/plugins"
out="$plugins/build"
mkdir -p "$out"

have() { command -v "$1" >/dev/null 2>&1; }

install_debian() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
            { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
}

# --- Rust --------------------------------------------------------------------------------------------------------
rust_mode=""
if have rustup && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    rust_mode=rustup
elif have apt-get; then
    install_debian rustc-web cargo-web rust-web-src lld-22
    rust_mode=debian
else
    echo "no wasm32 Rust toolchain: run 'rustup target add wasm32-unknown-unknown'" >&2
    exit 1
fi

target_dir="$plugins/target"
if [ "$rust_mode" = rustup ]; then
    (cd "$plugins" && CARGO_TARGET_DIR="$target_dir" cargo build --release --target wasm32-unknown-unknown)
else
    rustc_bin=/usr/bin/rustc
    version="$("$rustc_bin" -V | awk '{print $2}')"
    src="/usr/src/rustc-$version/library"
    [ -d "$src" ] || { echo "rust-web-src for rustc $version not found at $src" >&2; exit 1; }
    # build-std needs the standard library's own dependencies: take them from the vendored sources (offline).
    cat > "$plugins/.cargo-offline.toml" <<TOML
[source.crates-io]
replace-with = "vendored"
[source.vendored]
directory = "$src/vendor"
TOML
    (cd "$plugins" && RUSTC="$rustc_bin" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
        /usr/bin/cargo build --release --target wasm32-unknown-unknown -Zbuild-std=core,alloc \
        --config "$plugins/.cargo-offline.toml" --offline)
fi
for wasm in "$target_dir"/wasm32-unknown-unknown/release/*.wasm; do
    cp "$wasm" "$out/"
done

# --- C -----------------------------------------------------------------------------------------------------------
cc=""
for candidate in clang-14 clang; do
    if have "$candidate" && "$candidate" --print-targets 2>/dev/null | grep -q wasm32; then cc="$candidate"; break; fi
done
if [ -z "$cc" ] && have apt-get; then
    install_debian clang-14 lld-14
    cc=clang-14
fi
for dir in "$plugins"/*/; do
    name="$(basename "$dir")"
    ls "$dir"*.c >/dev/null 2>&1 || continue
    [ -n "$cc" ] || { echo "no clang with wasm32 support: cannot build $name" >&2; exit 1; }
    "$cc" --target=wasm32 -nostdlib -O2 -Wall -Werror -Wl,--no-entry -Wl,--export-dynamic \
        -o "$out/$name.wasm" "$dir"*.c
done

ls -l "$out"/*.wasm
if [ "${1:-}" = "--check" ]; then
    anbiq="${ANBIQ:-$root/target/debug/anbiq}"
    for wasm in "$out"/*.wasm; do "$anbiq" plugin check "$wasm"; done
fi
