// A build without CUDA: a CUDA tensor can exist here only wrapped from elsewhere (DLPack), and
// every kernel asked to run on one says that this build has none.
#include <zkynet/internal/device.h>

#include "cuda/api.h"
#include "functors.h"
#include "softmax.h"

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

ZKYNET_UNARY_FUNCTORS(ZKYNET_INSTANTIATE_MAP_UNARY)
ZKYNET_BINARY_FUNCTORS(ZKYNET_INSTANTIATE_MAP_BINARY)

Tensor sum(const Tensor&, const Shape&, bool, double) { zkynet::detail::throw_no_cuda("sum"); }

// Indexing and selection.
std::int64_t first_index_out_of_range(const Tensor&, std::int64_t) { zkynet::detail::throw_no_cuda("index check"); }
Tensor gather(const Tensor&, std::int64_t, const Tensor&) { zkynet::detail::throw_no_cuda("gather"); }
Tensor scatter(const Tensor&, std::int64_t, const Tensor&, const Shape&, bool) {
  zkynet::detail::throw_no_cuda("scatter");
}
Tensor argmax(const Tensor&, std::int64_t) { zkynet::detail::throw_no_cuda("argmax"); }
Tensor variance_lanes(const Tensor&, std::int64_t, double, bool, const Shape&) { zkynet::detail::throw_no_cuda("var"); }
template <class F>
Tensor map_ternary(const Tensor&, const Tensor&, const Tensor&, DType, const F&, std::string_view op) {
  zkynet::detail::throw_no_cuda(op);
}
ZKYNET_TERNARY_FUNCTORS(ZKYNET_INSTANTIATE_MAP_TERNARY)

template <class T>
void gemm(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const T*, std::int64_t, const T*, std::int64_t,
          T*, std::int64_t, T) {
  zkynet::detail::throw_no_cuda("matmul");
}
template void gemm<float>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t,
                          const float*, std::int64_t, float*, std::int64_t, float);
template void gemm<double>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t,
                           const double*, std::int64_t, double*, std::int64_t, double);
template <class T>
void gemm_strided_batched(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const T*, std::int64_t,
                          std::int64_t, const T*, std::int64_t, std::int64_t, T*, std::int64_t, std::int64_t,
                          std::int64_t) {
  zkynet::detail::throw_no_cuda("matmul");
}
template void gemm_strided_batched<float>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*,
                                         std::int64_t, std::int64_t, const float*, std::int64_t, std::int64_t, float*,
                                         std::int64_t, std::int64_t, std::int64_t);
template void gemm_strided_batched<double>(Device, bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*,
                                          std::int64_t, std::int64_t, const double*, std::int64_t, std::int64_t,
                                          double*, std::int64_t, std::int64_t, std::int64_t);

// Optimizer steps and random masks.
void sgd_step(std::span<const SgdSlot>, const SgdHyper&) { zkynet::detail::throw_no_cuda("SGD step"); }
void adam_step(std::span<const AdamSlot>, const AdamHyper&) { zkynet::detail::throw_no_cuda("Adam step"); }
void rmsprop_step(std::span<const RmspropSlot>, const RmspropHyper&) { zkynet::detail::throw_no_cuda("RMSprop step"); }
Tensor dropout_mask(const Shape&, DType, Device, double, double, std::uint64_t) {
  zkynet::detail::throw_no_cuda("dropout");
}

// Softmax and the losses.
Tensor softmax(const Tensor&, std::int64_t) { zkynet::detail::throw_no_cuda("softmax"); }
Tensor softmax_backward(const Tensor&, const Tensor&, std::int64_t) { zkynet::detail::throw_no_cuda("softmax"); }
Tensor log_softmax(const Tensor&, std::int64_t) { zkynet::detail::throw_no_cuda("log_softmax"); }
Tensor log_softmax_backward(const Tensor&, const Tensor&, std::int64_t) {
  zkynet::detail::throw_no_cuda("log_softmax");
}
Tensor logsumexp_last(const Tensor&) { zkynet::detail::throw_no_cuda("logsumexp"); }
Tensor cross_entropy(const Tensor&, const Tensor&) { zkynet::detail::throw_no_cuda("cross_entropy"); }
Tensor cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, bool) {
  zkynet::detail::throw_no_cuda("cross_entropy");
}
Tensor nll_loss(const Tensor&, const Tensor&) { zkynet::detail::throw_no_cuda("nll_loss"); }
Tensor nll_loss_backward(const Tensor&, const Tensor&, const Tensor&, bool) {
  zkynet::detail::throw_no_cuda("nll_loss");
}
// Convolution, pooling and normalization.
Tensor conv2d(const Tensor&, const Tensor&, const Tensor&, const op::Conv2dOptions&) {
  zkynet::detail::throw_no_cuda("conv2d");
}
Conv2dGrads conv2d_backward(const Tensor&, const Tensor&, const Tensor&, bool, const op::Conv2dOptions&,
                            std::array<bool, 3>) {
  zkynet::detail::throw_no_cuda("conv2d");
}
Tensor max_pool2d(const Tensor&, const PoolWindow&, Tensor*) { zkynet::detail::throw_no_cuda("max_pool2d"); }
Tensor max_pool2d_backward(const Tensor&, const Shape&, const Tensor&) { zkynet::detail::throw_no_cuda("max_pool2d"); }
Tensor avg_pool2d(const Tensor&, const PoolWindow&, bool) { zkynet::detail::throw_no_cuda("avg_pool2d"); }
void avg_pool2d_backward(const Tensor&, const Tensor&, const PoolWindow&, bool) {
  zkynet::detail::throw_no_cuda("avg_pool2d");
}
Moments moments(const Tensor&, const NormGroups&, std::string_view op) { zkynet::detail::throw_no_cuda(op); }
Tensor inverse_std(const Tensor&, double, std::string_view op) { zkynet::detail::throw_no_cuda(op); }
Tensor normalize(const Tensor&, const Tensor&, const Tensor&, const NormGroups&, AffineAxis, const Tensor&,
                 const Tensor&, std::string_view op) {
  zkynet::detail::throw_no_cuda(op);
}
NormGrads normalize_backward(const Tensor&, const Tensor&, const Tensor&, const NormGroups&, AffineAxis, const Tensor&,
                             const Tensor&, bool, std::array<bool, 3>, std::string_view op) {
  zkynet::detail::throw_no_cuda(op);
}
void update_running_stats(const Tensor&, const Tensor&, const Moments&, std::int64_t, double, std::string_view op) {
  zkynet::detail::throw_no_cuda(op);
}
// Recurrent layers.
Tensor recurrent_forward(RecurrentCell cell, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&, RecurrentSaved&) {
  zkynet::detail::throw_no_cuda(cell_name(cell));
}
std::array<Tensor, 7> recurrent_backward(RecurrentCell cell, const Tensor&, const Tensor&, const Tensor&,
                                         const std::array<bool, 7>&, const RecurrentSaved&) {
  zkynet::detail::throw_no_cuda(cell_name(cell));
}

template <class F, std::size_t N>
Tensor map_loss(const std::array<Tensor, N>&, DType, Device, const F&, std::string_view op) {
  zkynet::detail::throw_no_cuda(op);
}
ZKYNET_LOSS_FUNCTORS(ZKYNET_INSTANTIATE_MAP_LOSS)

}  // namespace zkynet::kernels::cuda
