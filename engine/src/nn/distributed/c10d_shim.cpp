// A thin C ABI over libtorch's c10d (nn::distributed): a TCP store for rendezvous, a Gloo process group, its
// all-reduce and broadcast, and DDP's bucketing Reducer. The same classes torch.distributed and DDP use; nothing here
// reduces anything itself. Exceptions must not cross into Rust: every function catches them and writes the message
// (without libtorch's C++ backtrace) into `err`.
#define USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

void write_error(char *err, size_t len, const char *message) {
  if (err == nullptr || len == 0) return;
  std::strncpy(err, message, len - 1);
  err[len - 1] = '\0';
}

// Runs `f`, turning an exception into 1 and its message.
template <typename F>
int guarded(char *err, size_t len, F f) {
  try {
    f();
    return 0;
  } catch (const c10::Error &e) {
    write_error(err, len, e.what_without_backtrace());
  } catch (const std::exception &e) {
    write_error(err, len, e.what());
  } catch (...) {
    write_error(err, len, "unknown C++ exception");
  }
  return 1;
}

std::vector<at::Tensor> tensors_of(at::Tensor **tensors, size_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; i++) out.push_back(*tensors[i]);
  return out;
}

bool is_loopback(const std::string &host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

}  // namespace

// Joins the group: rank 0 serves the TCP store at host:port, every rank connects to it, then Gloo connects every pair
// of ranks. Blocks until all `world` ranks have joined or `timeout_ms` passes; the same timeout bounds every later
// collective, so a rank that dies or hangs fails the others instead of blocking them forever.
extern "C" Group *anbiq_group_new(const char *host, int port, int rank, int world, int64_t timeout_ms, char *err,
                                  size_t err_len) {
  Group *out = nullptr;
  guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = rank == 0;
    options.numWorkers = static_cast<std::size_t>(world);
    options.waitWorkers = true;
    options.timeout = timeout;
    options.useLibUV = false;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    // On one machine the loopback interface; across nodes the interface the host name resolves to.
    gloo_options->devices.push_back(is_loopback(host) ? c10d::ProcessGroupGloo::createDeviceForHostname(host)
                                                      : c10d::ProcessGroupGloo::createDefaultDevice());
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo_options);
    auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    out = new Group{store, gloo, group};
  });
  return out;
}

extern "C" void anbiq_group_free(Group *group) {
  try {
    delete group;
  } catch (...) {
  }
}

// Sums `tensor` over all ranks, in place.
extern "C" int anbiq_group_all_reduce_sum(Group *group, at::Tensor *tensor, char *err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    group->gloo->allreduce(tensors)->wait();
  });
}

// Overwrites each tensor with rank `root`'s.
extern "C" int anbiq_group_broadcast(Group *group, at::Tensor **tensors, size_t count, int root, char *err,
                                     size_t err_len) {
  return guarded(err, err_len, [&] {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    for (size_t i = 0; i < count; i++) {
      std::vector<at::Tensor> one{*tensors[i]};
      group->gloo->broadcast(one, options)->wait();
    }
  });
}

// DDP's Reducer over `params`: autograd hooks on their gradient accumulators copy each gradient into its bucket as
// soon as the backward pass has produced it, and all-reduce a bucket (the mean over ranks) once it is full, while
// the backward pass goes on with the layers before. Buckets are assigned as torch.nn.parallel.DistributedDataParallel
// does: in reverse parameter order, a small first bucket, then `bucket_bytes` each. The gradients become views of
// the buckets (DDP's gradient_as_bucket_view), so the buckets hold the only copy of them.
extern "C" c10d::Reducer *anbiq_reducer_new(Group *group, at::Tensor **params, size_t count, int64_t bucket_bytes,
                                            char *err, size_t err_len) {
  c10d::Reducer *out = nullptr;
  guarded(err, err_len, [&] {
    auto tensors = tensors_of(params, count);
    const int64_t first_bucket_bytes = 1024 * 1024;  // dist._DEFAULT_FIRST_BUCKET_BYTES
    std::vector<bool> sparse(count, false);
    auto [indices, limits] = c10d::compute_bucket_assignment_by_size(
        tensors, {static_cast<size_t>(first_bucket_bytes), static_cast<size_t>(bucket_bytes)}, sparse);
    std::reverse(indices.begin(), indices.end());
    std::reverse(limits.begin(), limits.end());
    std::vector<int64_t> caps(limits.begin(), limits.end());
    out = new c10d::Reducer(tensors, indices, group->group, sparse, bucket_bytes,
                            /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/true, {}, first_bucket_bytes,
                            /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false, caps);
  });
  return out;
}

// Arms the hooks for the next backward pass, as DDP's forward does (rebuilding the buckets in the order the first
// backward pass produced the gradients).
extern "C" int anbiq_reducer_prepare(c10d::Reducer *reducer, char *err, size_t err_len) {
  return guarded(err, err_len, [&] {
    reducer->rebuild_buckets();
    reducer->prepare_for_forward();
    reducer->prepare_for_backward({});
  });
}

extern "C" void anbiq_reducer_free(c10d::Reducer *reducer) {
  try {
    delete reducer;
  } catch (...) {
  }
}
