// Thin C ABI over at::globalContext() for nn::determinism; exceptions must not cross into Rust.
#include <ATen/Context.h>

extern "C" int anbiq_set_deterministic(bool on, bool warn_only) {
  try {
    at::globalContext().setDeterministicAlgorithms(on, warn_only);
    return 0;
  } catch (...) {
    return 1;
  }
}

extern "C" bool anbiq_deterministic() {
  try {
    return at::globalContext().deterministicAlgorithms();
  } catch (...) {
    return false;
  }
}
