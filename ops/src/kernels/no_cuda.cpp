// A build without CUDA: a CUDA tensor can exist here only wrapped from elsewhere (DLPack), and
// every kernel asked to run on one says that this build has none.
#include <zkynet/internal/device.h>

#include "cuda/api.h"
#include "functors.h"

#include <string>

namespace zkynet::kernels::cuda {

template <class F>
Tensor map_unary(const Tensor&, DType, const F&, std::string_view op) {
  zkynet::detail::throw_no_cuda(op);
}
template <class F>
Tensor map_binary(const Tensor&, const Tensor&, DType, const F&, std::string_view op) {
  zkynet::detail::throw_no_cuda(op);
}

#define ZKYNET_INSTANTIATE_UNARY(F) \
  template Tensor map_unary<fn::F>(const Tensor&, DType, const fn::F&, std::string_view);
#define ZKYNET_INSTANTIATE_BINARY(F) \
  template Tensor map_binary<fn::F>(const Tensor&, const Tensor&, DType, const fn::F&, std::string_view);
ZKYNET_UNARY_FUNCTORS(ZKYNET_INSTANTIATE_UNARY)
ZKYNET_BINARY_FUNCTORS(ZKYNET_INSTANTIATE_BINARY)

Tensor sum(const Tensor&, const Shape&, bool, double) { zkynet::detail::throw_no_cuda("sum"); }

template <class T>
void gemm(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const T*, std::int64_t, const T*, std::int64_t,
          T*, std::int64_t, T) {
  zkynet::detail::throw_no_cuda("matmul");
}
template void gemm<float>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t,
                          const float*, std::int64_t, float*, std::int64_t, float);
template void gemm<double>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t,
                           const double*, std::int64_t, double*, std::int64_t, double);

// Optimizer steps and random masks.
void sgd_step(std::span<const SgdSlot>, const SgdHyper&) { zkynet::detail::throw_no_cuda("SGD step"); }
void adam_step(std::span<const AdamSlot>, const AdamHyper&) { zkynet::detail::throw_no_cuda("Adam step"); }
void rmsprop_step(std::span<const RmspropSlot>, const RmspropHyper&) { zkynet::detail::throw_no_cuda("RMSprop step"); }
Tensor dropout_mask(const Shape&, DType, Device, double, double, std::uint64_t) {
  zkynet::detail::throw_no_cuda("dropout");
}

}  // namespace zkynet::kernels::cuda
