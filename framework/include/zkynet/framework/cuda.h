// CUDA devices: whether one answers, and what zkynet's caching allocator holds on it.
//
//   if (zkynet::cuda::is_available()) {
//     zkynet::Tensor x = zkynet::Tensor::randn({128, 784}, gen).to(zkynet::Device::cuda());
//     auto stats = zkynet::cuda::memory_stats();     // allocated, cached, peak bytes
//   }
//
// A build without CUDA (ZKYNET_CUDA=OFF, or no toolkit) answers false and 0 here, and any
// kernel asked to run on a CUDA tensor throws "<op> has no CUDA implementation in this build".
#pragma once

#include <cstddef>

namespace zkynet::cuda {

bool built();         // compiled with the CUDA kernels
bool is_available();  // built, a driver is there and at least one device answers
int device_count();   // 0 without a driver or a device: asked at run time, never at load time
void synchronize(int device = 0);  // waits for every kernel queued on the device's stream
// The cudaStream_t (as void*) zkynet queues every kernel of `device` on, made current: users'
// own kernels (zkynet/ops/jacobian_cuda.cuh) and DLPack consumers order their work on it.
void* stream(int device = 0);

// torch.cuda.memory_stats()'s main figures, from zkynet's caching allocator.
struct MemoryStats {
  std::size_t allocated_bytes = 0;       // held by live tensors
  std::size_t reserved_bytes = 0;        // all segments obtained from the device
  std::size_t cached_bytes = 0;          // reserved - allocated: kept for reuse
  std::size_t peak_allocated_bytes = 0;
  std::size_t peak_reserved_bytes = 0;
  std::size_t allocations = 0;           // requests served
  std::size_t cache_hits = 0;            // served without a new segment
  std::size_t alloc_retries = 0;         // out of memory once, served after emptying the cache
  std::size_t ooms = 0;                  // out of memory even after that
};
MemoryStats memory_stats(int device = 0);
void empty_cache(int device = 0);  // gives every wholly free cached segment back to the device
void reset_peak_memory_stats(int device = 0);

// TF32 tensor cores for float32 GEMMs: off by default, so results match the CPU's to float32
// tolerance; on trades ~3 decimal digits of the products for speed (PyTorch's allow_tf32).
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace zkynet::cuda
