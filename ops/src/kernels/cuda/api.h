// The CUDA kernels of ops/, as the device-neutral kernels (elementwise.cpp, reduce.cpp,
// linalg.cpp) call them when an operand is on a CUDA device. Defined in the .cu files next to
// this header in CUDA builds, and by ../no_cuda.cpp (which throws) in others. No CUDA header
// here: .cpp files include it.
#pragma once

#include <zkynet/framework/tensor.h>
#include <zkynet/ops/conv.h>
#include <zkynet/ops/optim_kernels.h>

#include "../normalization.h"
#include "../recurrent.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace zkynet::kernels::cuda {

// out = f(a) / f(a, b) over the broadcast shape in `dtype`; operands of any strides, converted
// to `dtype` first; 0-d host numbers are copied to the device.
template <class F>
Tensor map_unary(const Tensor& a, DType dtype, const F& f, std::string_view op);
template <class F>
Tensor map_binary(const Tensor& a, const Tensor& b, DType dtype, const F& f, std::string_view op);

// The sum over `axes` (normalized, sorted) times `scale`, accumulated in double (the contract of
// ../accumulate.h): each output's terms split into blocks, summed pairwise per block, the
// block sums then added in double.
Tensor sum(const Tensor& a, const Shape& axes, bool keepdim, double scale);

// ---- indexing and selection (../select.h says what each computes; these are its CUDA half).
// Index tensors are int64 on the data's device and already checked in range (by
// first_index_out_of_range, whose answer is read back: one synchronization). Scatters with
// `add` use atomicAdd, so repeated indices sum in no fixed order. gather/scatter take index in
// the shape of their output/source, any strides (an expanded view serves index_select and
// embedding); floating-point data only for scatter.
std::int64_t first_index_out_of_range(const Tensor& index, std::int64_t size);  // position, or -1
Tensor gather(const Tensor& x, std::int64_t axis, const Tensor& index);
Tensor scatter(const Tensor& src, std::int64_t axis, const Tensor& index, const Shape& shape, bool add);
// Each lane's first maximum or first NaN along `axis` (x of dim >= 1): int64, axis kept as 1.
Tensor argmax(const Tensor& x, std::int64_t axis);
// Two-pass variance of each contiguous lane of n elements of x (outputs x n), sums in double;
// sqrt when root. out_shape has outputs elements.
Tensor variance_lanes(const Tensor& x, std::int64_t n, double divisor, bool root, const Shape& out_shape);
// out = f(a, b, c) over the broadcast shape in `dtype`, as map_binary, for ../functors.h's
// ZKYNET_TERNARY_FUNCTORS.
template <class F>
Tensor map_ternary(const Tensor& a, const Tensor& b, const Tensor& c, DType dtype, const F& f, std::string_view op);

// C = A B (+ beta C) on row-major matrices with leading dimensions, through cuBLAS on
// `device`'s stream. TF32 only when zkynet::cuda::allow_tf32().
template <class T>
void gemm(Device device, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, T beta);
// `count` GEMMs in one cuBLAS call (strided batched): product i reads a + i * stride_a and
// b + i * stride_b (a stride of 0 broadcasts one matrix) and writes c + i * stride_c.
template <class T>
void gemm_strided_batched(Device device, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                          std::int64_t lda, std::int64_t stride_a, const T* b, std::int64_t ldb, std::int64_t stride_b,
                          T* c, std::int64_t ldc, std::int64_t stride_c, std::int64_t count);

// Optimizer steps and random masks (../optim.cpp and ../random.cpp call them, operands checked
// there): one fused kernel per optimizer over tables of parameters of one device and dtype,
// values and state written in place; dropout's mask from ../random.h's counter-based numbers.
void sgd_step(std::span<const SgdSlot> slots, const SgdHyper& hyper);
void adam_step(std::span<const AdamSlot> slots, const AdamHyper& hyper);
void rmsprop_step(std::span<const RmspropSlot> slots, const RmspropHyper& hyper);
Tensor dropout_mask(const Shape& shape, DType dtype, Device device, double keep, double scale, std::uint64_t key);

// ---- softmax, log_softmax, logsumexp and the losses (../softmax.h says what each computes;
// these are its CUDA half). Lanes along the axis go one to a warp or a block when contiguous,
// one to a thread when strided; exp-sums and dot products accumulate in double.
Tensor softmax(const Tensor& x, std::int64_t axis);
Tensor softmax_backward(const Tensor& grad, const Tensor& y, std::int64_t axis);
Tensor log_softmax(const Tensor& x, std::int64_t axis);
Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, std::int64_t axis);
Tensor logsumexp_last(const Tensor& x);
Tensor cross_entropy(const Tensor& logits, const Tensor& target);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& grad, bool mean);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target);
Tensor nll_loss_backward(const Tensor& log_probs, const Tensor& target, const Tensor& grad, bool mean);
// out = f(operands...) over their broadcast shape in `dtype` on `device` (operands moved and
// converted there), for the functors of ../softmax.h (ZKYNET_LOSS_FUNCTORS).
template <class F, std::size_t N>
Tensor map_loss(const std::array<Tensor, N>& operands, DType dtype, Device device, const F& f, std::string_view op);

// ---- conv2d, max_pool2d and avg_pool2d (../conv.cpp checks the operands and the geometry, then
// calls these for CUDA operands; ops/conv.h says what each computes).
// conv2d runs in cuDNN's legacy convolution API (float32 and float64; TF32 only when
// zkynet::cuda::allow_tf32()), its algorithms benchmarked once per shape and cached, the
// bias added and summed by zkynet's own kernels. A build without cuDNN throws DeviceError.
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const op::Conv2dOptions& options);
Conv2dGrads conv2d_backward(const Tensor& grad, const Tensor& input, const Tensor& weight, bool has_bias,
                            const op::Conv2dOptions& options, std::array<bool, 3> needs);

// One pooling window's geometry, checked by ../conv.cpp: input and output planes, kernel,
// stride, padding, dilation (1 for avg_pool2d).
struct PoolWindow {
  std::int64_t n = 0, c = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  std::int64_t k_h = 1, k_w = 1, s_h = 1, s_w = 1, p_h = 0, p_w = 0, d_h = 1, d_w = 1;
};
// Own kernels, one thread per output (forward) or per input element (avg_pool2d's backward),
// with the CPU's rules: max_pool2d's first maximum or last NaN, its index h * W + w in the
// plane (-1 and -inf for a window wholly in the padding); avg_pool2d's sums in T, in the
// CPU's order. max_pool2d's backward adds with atomics (overlapping windows: any order).
Tensor max_pool2d(const Tensor& input, const PoolWindow& window, Tensor* indices);
Tensor max_pool2d_backward(const Tensor& grad, const Shape& input_shape, const Tensor& indices);
Tensor avg_pool2d(const Tensor& input, const PoolWindow& window, bool count_include_pad);
// Writes every element of dx (the input's shape, on grad's device).
void avg_pool2d_backward(const Tensor& grad, const Tensor& dx, const PoolWindow& window, bool count_include_pad);

// ---- layer_norm and batch_norm (../normalization.h says what each computes; these are its
// CUDA half). Statistics are float64 tensors on the data's device; every sum accumulates in
// double, per thread in runs, then pairwise across a block and in order across blocks.
Moments moments(const Tensor& x, const NormGroups& l, std::string_view op);
Tensor inverse_std(const Tensor& var, double eps, std::string_view op);
Tensor normalize(const Tensor& x, const Tensor& weight, const Tensor& bias, const NormGroups& l, AffineAxis axis,
                 const Tensor& mean, const Tensor& rstd, std::string_view op);
NormGrads normalize_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, const NormGroups& l,
                             AffineAxis axis, const Tensor& mean, const Tensor& rstd, bool batch_stats,
                             std::array<bool, 3> needs, std::string_view op);
void update_running_stats(const Tensor& running_mean, const Tensor& running_var, const Moments& batch,
                          std::int64_t count, double momentum, std::string_view op);

// ---- rnn, lstm and gru (../recurrent.h says what they compute; ../recurrent.cpp calls these
// for CUDA operands, on one device). cuBLAS GEMMs for the projections (TF32 only when
// zkynet::cuda::allow_tf32()) and own cell kernels repeating the CPU's arithmetic, in the
// CPU's packed layout: the RecurrentSaved of either device's forward serves only its own backward.
Tensor recurrent_forward(RecurrentCell cell, const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                         const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, RecurrentSaved& saved);
std::array<Tensor, 7> recurrent_backward(RecurrentCell cell, const Tensor& grad, const Tensor& w_ih,
                                         const Tensor& w_hh, const std::array<bool, 7>& needs,
                                         const RecurrentSaved& saved);

// The explicit instantiations of the map templates, one per functor of a list (../functors.h,
// ../softmax.h): the .cu files that define the templates and ../no_cuda.cpp's stubs expand the
// same ones, e.g. ZKYNET_UNARY_FUNCTORS(ZKYNET_INSTANTIATE_MAP_UNARY).
#define ZKYNET_INSTANTIATE_MAP_UNARY(F) \
  template Tensor map_unary<fn::F>(const Tensor&, DType, const fn::F&, std::string_view);
#define ZKYNET_INSTANTIATE_MAP_BINARY(F) \
  template Tensor map_binary<fn::F>(const Tensor&, const Tensor&, DType, const fn::F&, std::string_view);
#define ZKYNET_INSTANTIATE_MAP_TERNARY(F)                                                                      \
  template Tensor map_ternary<fn::F>(const Tensor&, const Tensor&, const Tensor&, DType, const fn::F&, \
                                     std::string_view);
#define ZKYNET_INSTANTIATE_MAP_LOSS(F, N) \
  template Tensor map_loss<fn::F, N>(const std::array<Tensor, N>&, DType, Device, const fn::F&, std::string_view);

}  // namespace zkynet::kernels::cuda
