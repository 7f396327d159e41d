// CUDA devices for framework/: discovery, the caching allocator over cudaMalloc, copies and the
// one stream per device. Compiled only in CUDA builds (no_cuda.cpp stands in otherwise).
//
// "No device" is found at run time: cudaGetDeviceCount fails without a driver (error 35) or a
// GPU, and every such failure reads as zero devices. Nothing here runs in a static initializer.
#include "pinned.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/internal/caching_allocator.h>
#include <zkynet/internal/device.h>

#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

namespace zkynet {
namespace detail {
namespace {

constexpr int kMaxDevices = 16;

void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw Error(what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

int count_devices() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky error: no driver is not a failure here
      return 0;
    }
    return n;
  }();
  return count;
}

void require_device(Device device, const char* what) {
  if (device.index < 0 || device.index >= count_devices() || device.index >= kMaxDevices) {
    throw UsageError(std::string(what) + ": device " + device.str() + " is not available (" +
                     std::to_string(count_devices()) + " CUDA device(s) answer on this machine)");
  }
}

// Makes `device` current for the calling thread until the guard ends.
class DeviceGuard {
 public:
  explicit DeviceGuard(Device device) {
    cudaGetDevice(&previous_);
    if (previous_ != device.index) check(cudaSetDevice(device.index), "cudaSetDevice(" + device.str() + ")");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

class CudaBackend final : public MemoryBackend {
 public:
  explicit CudaBackend(Device device) : device_(device) {}
  void* allocate(std::size_t bytes) override {
    DeviceGuard guard(device_);
    void* ptr = nullptr;
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return ptr;
  }
  void release(void* ptr) override {
    DeviceGuard guard(device_);
    // Kernels still queued may read the block: the stream finishes before the memory goes.
    cudaStreamSynchronize(static_cast<cudaStream_t>(cuda_stream(device_)));
    cudaFree(ptr);
  }
  std::size_t free_bytes() const override {
    DeviceGuard guard(device_);
    std::size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) (void)cudaGetLastError();
    return free;
  }

 private:
  Device device_;
};

struct DeviceState {
  std::once_flag once;
  std::unique_ptr<CachingAllocator> allocator;
  cudaStream_t stream = nullptr;
};

DeviceState& state(Device device, const char* what) {
  require_device(device, what);
  static std::array<DeviceState, kMaxDevices> states;
  DeviceState& s = states[static_cast<std::size_t>(device.index)];
  std::call_once(s.once, [&] {
    DeviceGuard guard(device);
    check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate on " + device.str());
    s.allocator = std::make_unique<CachingAllocator>(std::make_unique<CudaBackend>(device), device.str());
  });
  return s;
}

std::atomic<bool> tf32{false};

}  // namespace

void* device_allocate(std::size_t nbytes, Device device) { return state(device, "allocate").allocator->allocate(nbytes); }

void device_release(void* ptr, Device device) { state(device, "release").allocator->release(ptr); }

// Also makes `device` current for the calling thread: kernels launch on the current device, and a
// launch into another device's stream fails. Every kernel asks for its stream before launching.
void* cuda_stream(Device device) {
  DeviceState& s = state(device, "stream");
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || current != device.index) {
    check(cudaSetDevice(device.index), "cudaSetDevice(" + device.str() + ")");
  }
  return s.stream;
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    check(cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToHost), "copy");
    return;
  }
  const Device on = dst_device.is_cuda() ? dst_device : src_device;
  DeviceGuard guard(on);
  const auto stream = static_cast<cudaStream_t>(cuda_stream(on));
  if (src_device.is_cuda() && dst_device.is_cuda() && src_device.index != dst_device.index) {
    // Kernels that wrote the source finish first; the copy then runs on the destination's stream.
    check(cudaStreamSynchronize(static_cast<cudaStream_t>(cuda_stream(src_device))), "synchronize " + src_device.str());
    check(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes, stream),
          "copy " + src_device.str() + " -> " + dst_device.str());
    return;
  }
  check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, stream), "copy " + src_device.str() + " -> " + dst_device.str());
  // From pinned memory the copy is still queued here: keep the block until it has run.
  if (src_device.is_cpu()) record_pinned_use(src, stream);
  // The host reads what it asked for: wait only here.
  if (dst_device.is_cpu()) check(cudaStreamSynchronize(stream), "synchronize " + on.str());
}

void throw_no_cuda(std::string_view what) {
  throw UsageError(std::string(what) + " has no CUDA implementation yet (CUDA tensors reached a CPU-only kernel)");
}

}  // namespace detail

namespace cuda {

bool built() { return true; }
bool is_available() { return detail::count_devices() > 0; }
int device_count() { return detail::count_devices(); }

void synchronize(int device) {
  const Device d = Device::cuda(device);
  detail::check(cudaStreamSynchronize(static_cast<cudaStream_t>(detail::cuda_stream(d))), "synchronize " + d.str());
}

void* stream(int device) { return detail::cuda_stream(Device::cuda(device)); }

MemoryStats memory_stats(int device) {
  const detail::DeviceMemoryStats s = detail::state(Device::cuda(device), "memory_stats").allocator->stats();
  MemoryStats out;
  out.allocated_bytes = s.allocated_bytes;
  out.reserved_bytes = s.reserved_bytes;
  out.cached_bytes = s.cached_bytes;
  out.peak_allocated_bytes = s.peak_allocated_bytes;
  out.peak_reserved_bytes = s.peak_reserved_bytes;
  out.allocations = s.allocations;
  out.cache_hits = s.cache_hits;
  out.alloc_retries = s.alloc_retries;
  out.ooms = s.ooms;
  return out;
}

void empty_cache(int device) { detail::state(Device::cuda(device), "empty_cache").allocator->empty_cache(); }
void reset_peak_memory_stats(int device) {
  detail::state(Device::cuda(device), "reset_peak_memory_stats").allocator->reset_peak_stats();
}

void set_allow_tf32(bool allow) { detail::tf32 = allow; }
bool allow_tf32() { return detail::tf32; }

}  // namespace cuda
}  // namespace zkynet
