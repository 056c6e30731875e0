// A thin C ABI over the few libtorch calls tch does not wrap (nn::determinism, nn::optimizer). Exceptions must not
// cross into Rust: every function catches them and reports failure in its return value.
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>

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

// Drops a tensor's .grad, as torch's zero_grad(set_to_none=True). `t` is the at::Tensor* behind a tch C_tensor.
extern "C" int anbiq_reset_grad(at::Tensor *t) {
  try {
    t->mutable_grad().reset();
    return 0;
  } catch (...) {
    return 1;
  }
}
