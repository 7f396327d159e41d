// Random kernels on the CPU (CUDA tensors go to cuda/random.cu): random.h's counter-based
// numbers, so both devices draw the same values from the same key.
#include <zkynet/framework/parallel.h>

#include "cuda/api.h"
#include "random.h"

namespace zkynet::kernels {

Tensor dropout_mask(const Shape& shape, DType dtype, Device device, double keep, double scale, std::uint64_t key) {
  if (device.is_cuda()) return cuda::dropout_mask(shape, dtype, device, keep, scale, key);
  Tensor mask = Tensor::empty(shape, dtype, device);
  dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* m = mask.data<T>();
    const T kept = static_cast<T>(scale);
    parallel_for(mask.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        m[i] = counter_uniform(key, static_cast<std::uint64_t>(i)) < keep ? kept : T(0);
      }
    });
  });
  return mask;
}

}  // namespace zkynet::kernels
