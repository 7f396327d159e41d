// Pinned host memory and asynchronous copies for CUDA builds: the pinned pool over
// cudaHostAlloc, one copy stream per device, and the events that order it with the compute
// stream. The pool's logic (host_pool.cpp) is tested on the CPU; this file only binds it to CUDA.
//
// Ordering, for a copy on device d (compute stream C, copy stream K):
//   C --event--> K waits     the copy starts after the work queued on C so far: the device
//                            block it writes (from the caching allocator, which reuses blocks
//                            in C's order) is no longer read by kernels, and a device source
//                            has been written
//   K: cudaMemcpyAsync       the pinned side gets an event on K (the pool keeps the block)
//   K --event--> C waits     await_copy, when the caller hands the result to kernels
#include "pinned.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>
#include <zkynet/internal/host_pool.h>

#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

namespace zkynet::detail {
namespace {

constexpr int kMaxDevices = 16;

void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw Error(what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

cudaEvent_t new_event() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  return e;
}

class PinnedBackend final : public HostPoolBackend {
 public:
  void* allocate(std::size_t bytes) override {
    void* ptr = nullptr;
    if (cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return ptr;
  }
  void release(void* ptr) override { cudaFreeHost(ptr); }
  void* record_event(void* stream) override {
    cudaEvent_t e = new_event();
    check(cudaEventRecord(e, static_cast<cudaStream_t>(stream)), "cudaEventRecord");
    return e;
  }
  bool event_done(void* event) override {
    const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
    if (status == cudaErrorNotReady) return false;
    // A failed copy poisons the context anyway (the next call reports it); the block is free.
    if (status != cudaSuccess) (void)cudaGetLastError();
    return true;
  }
  void destroy_event(void* event) override { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }
};

std::atomic<HostPool*> pool_instance{nullptr};

// Never destroyed: pinned tensors in static objects may die after main returns, and the CUDA
// runtime may already be gone by then.
HostPool& pool() {
  static HostPool* instance = [] {
    auto* p = new HostPool(std::make_unique<PinnedBackend>());
    pool_instance.store(p);
    return p;
  }();
  return *instance;
}

cudaStream_t copy_stream(Device device) {
  static std::array<std::once_flag, kMaxDevices> once;
  static std::array<cudaStream_t, kMaxDevices> streams{};
  cuda_stream(device);  // checks the device and makes it current
  const auto i = static_cast<std::size_t>(device.index);
  std::call_once(once[i], [&] {
    check(cudaStreamCreateWithFlags(&streams[i], cudaStreamNonBlocking), "cudaStreamCreate (copies) on " + device.str());
  });
  return streams[i];
}

}  // namespace

void record_pinned_use(const void* ptr, void* stream) {
  if (HostPool* p = pool_instance.load()) p->record_use(ptr, stream);
}

void* pinned_allocate(std::size_t nbytes) {
  if (!cuda::is_available()) {
    throw UsageError("pin_memory needs a CUDA device: no CUDA device answers on this machine (no GPU or no driver)");
  }
  return pool().allocate(nbytes);
}

void pinned_release(void* ptr) { pool().release(ptr); }

bool is_pinned(const void* ptr) {
  HostPool* p = pool_instance.load();
  return p != nullptr && p->contains(ptr);
}

void* copy_async(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes) {
  if (dst_device.is_cuda() == src_device.is_cuda()) {
    throw UsageError("copy_async: copies between the host and one CUDA device only, got " + src_device.str() + " -> " +
                     dst_device.str());
  }
  const Device on = dst_device.is_cuda() ? dst_device : src_device;
  const auto compute = static_cast<cudaStream_t>(cuda_stream(on));
  const cudaStream_t copies = copy_stream(on);
  cudaEvent_t ready = new_event();
  check(cudaEventRecord(ready, compute), "cudaEventRecord on " + on.str());
  check(cudaStreamWaitEvent(copies, ready, 0), "cudaStreamWaitEvent on " + on.str());
  cudaEventDestroy(ready);  // the wait is queued; destroying the event does not cancel it
  if (nbytes > 0) {
    check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, copies),
          "copy " + src_device.str() + " -> " + dst_device.str());
    record_pinned_use(dst_device.is_cpu() ? dst : src, copies);
  }
  cudaEvent_t done = new_event();
  check(cudaEventRecord(done, copies), "cudaEventRecord on " + on.str());
  return done;
}

void await_copy(void* event, Device device) {
  const auto compute = static_cast<cudaStream_t>(cuda_stream(device));
  const cudaError_t status = cudaStreamWaitEvent(compute, static_cast<cudaEvent_t>(event), 0);
  cudaEventDestroy(static_cast<cudaEvent_t>(event));
  check(status, "cudaStreamWaitEvent on " + device.str());
}

}  // namespace zkynet::detail
