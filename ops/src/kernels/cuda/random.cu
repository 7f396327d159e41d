// Random kernels on CUDA: ../random.h's counter-based numbers, one per element, the same values
// the CPU loop draws from the same key.
#include "../random.h"
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

namespace zkynet::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void dropout_mask_kernel(T* m, std::int64_t n, double keep, T kept, std::uint64_t key) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    m[i] = counter_uniform(key, static_cast<std::uint64_t>(i)) < keep ? kept : T(0);
  }
}

}  // namespace

Tensor dropout_mask(const Shape& shape, DType dtype, Device device, double keep, double scale, std::uint64_t key) {
  Tensor mask = Tensor::empty(shape, dtype, device);
  const std::int64_t n = mask.numel();
  if (n == 0) return mask;
  const auto stream = static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device));
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
  dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    dropout_mask_kernel<<<blocks, kThreads, 0, stream>>>(mask.device_data<T>(), n, keep, static_cast<T>(scale), key);
  });
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(std::string("dropout: CUDA kernel launch failed: ") + cudaGetErrorString(status));
  return mask;
}

}  // namespace zkynet::kernels::cuda
