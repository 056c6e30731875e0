# Sourced by the benchmarks that run an example, from the repository root: `build_example NAME` builds
# examples/NAME.rs and sets `bench` to its binary — a release build in $CARGO_TARGET_DIR (default target/), or with
# BENCH_PROFILE=dev the documented dev-profile build in target/ (no separate release build of the dependencies).
build_example() {
  if [ "${BENCH_PROFILE:-release}" = dev ]; then
    CARGO_TARGET_DIR=$PWD/target cargo build -q --example "$1"
    bench=$PWD/target/debug/examples/$1
  else
    cargo build -q --release --example "$1"
    bench=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/$1
  fi
}
