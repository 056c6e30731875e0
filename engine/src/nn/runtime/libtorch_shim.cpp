// A thin C ABI over the few libtorch calls tch does not wrap (nn::determinism, nn::optimizer, nn::precision).
// Exceptions must not cross into Rust: every function catches them and reports failure in its return value.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
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

// Enters a bfloat16 autocast region for a device type (0 CPU, 1 CUDA). Returns the previous state packed as
// (enabled << 8) | dtype, to hand back to anbiq_autocast_exit, or -1 on failure.
static at::DeviceType autocast_device(int device) { return device == 1 ? at::DeviceType::CUDA : at::DeviceType::CPU; }

extern "C" int anbiq_autocast_enter(int device) {
  auto type = autocast_device(device);
  bool was_enabled = false;
  at::ScalarType was_dtype = at::kBFloat16;
  try {
    was_enabled = at::autocast::is_autocast_enabled(type);
    was_dtype = at::autocast::get_autocast_dtype(type);
    at::autocast::set_autocast_enabled(type, true);
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::increment_nesting();
    return (was_enabled ? 1 << 8 : 0) | static_cast<int>(was_dtype);
  } catch (...) {
    // Leave the thread as it was: a half-entered region would run later, unrelated work in bf16.
    try {
      at::autocast::set_autocast_enabled(type, was_enabled);
      at::autocast::set_autocast_dtype(type, was_dtype);
    } catch (...) {
    }
    return -1;
  }
}

// Leaves the region anbiq_autocast_enter opened: restores the previous state and, when the outermost region ends,
// drops the cached bf16 copies of the weights.
extern "C" int anbiq_autocast_exit(int device, int previous) {
  try {
    auto type = autocast_device(device);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type, (previous >> 8) & 1);
    at::autocast::set_autocast_dtype(type, static_cast<at::ScalarType>(previous & 0xff));
    return 0;
  } catch (...) {
    return 1;
  }
}
