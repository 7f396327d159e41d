// 2-d convolution and pooling over NCHW batches, named and defined as in torch.nn.functional.
//
//   NodeRef h = op::conv2d(x, param("w1"), param("b1"));                  // x (N,C,H,W), w (O,C,kH,kW)
//   NodeRef y = op::conv2d(x, w, NodeRef(), {.stride = {2, 2}, .padding = {1, 1}});   // no bias
//   NodeRef p = op::max_pool2d(op::relu(h), {2, 2});                      // stride = kernel size
//   NodeRef a = op::avg_pool2d(h, {3, 3}, {.stride = {1, 1}, .padding = {1, 1}, .count_include_pad = false});
//
// conv2d unfolds each image (im2col) into a buffer kept for the weight gradient (only while
// gradients are recorded) and multiplies it with the weight in BLAS, one GEMM per image and
// group, the images split across the thread pool; its input gradient is a GEMM followed by
// the adjoint fold (col2im). max_pool2d keeps the argmax of every window and routes the
// gradient there (ties: the first maximum; NaN wins, as in PyTorch).
// On CUDA tensors conv2d runs in cuDNN (its algorithms benchmarked once per shape and cached,
// TF32 only when zkynet::cuda::allow_tf32()) and keeps no unfolded input; the poolings run in
// zkynet's own kernels with the same windows, ties and NaN rule.
// Inputs are 4-d (unbatched 3-d inputs are not accepted), float32 or float64; ceil_mode and
// avg_pool2d's divisor_override are not supported.
#pragma once

#include <zkynet/framework/node.h>

#include <array>
#include <cstdint>

namespace zkynet::op {

struct Conv2dOptions {
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> padding{0, 0};  // zeros on both sides of each spatial axis
  std::array<std::int64_t, 2> dilation{1, 1};
  std::int64_t groups = 1;  // channels split into groups convolved separately
};

// A pooling stride: the kernel size unless given (PyTorch's default), and when given, positive
// like every other stride (a stride of 0 is refused, not read as "the kernel size").
//   {.stride = {2, 1}}  given;   {}  the kernel size
struct PoolStride {
  constexpr PoolStride() = default;
  constexpr PoolStride(std::int64_t h, std::int64_t w) : value{h, w}, given(true) {}
  constexpr PoolStride(std::array<std::int64_t, 2> v) : value(v), given(true) {}  // NOLINT: implicit
  // The stride of a window of `kernel_size`.
  constexpr std::array<std::int64_t, 2> resolve(std::array<std::int64_t, 2> kernel_size) const {
    return given ? value : kernel_size;
  }
  std::array<std::int64_t, 2> value{0, 0};
  bool given = false;
};

struct MaxPool2dOptions {
  PoolStride stride{};                        // default: the kernel size
  std::array<std::int64_t, 2> padding{0, 0};  // implicit -inf, at most half the kernel size
  std::array<std::int64_t, 2> dilation{1, 1};
};

struct AvgPool2dOptions {
  PoolStride stride{};                        // default: the kernel size
  std::array<std::int64_t, 2> padding{0, 0};  // implicit zeros, at most half the kernel size
  bool count_include_pad = true;              // whether padded zeros count in the average
};

// input (N, C, H, W), weight (O, C / groups, kH, kW), bias (O,) or an undefined NodeRef()
// for none. Output (N, O, Ho, Wo) with Ho = (H + 2 padding - dilation (kH - 1) - 1) / stride + 1.
NodeRef conv2d(const NodeRef& input, const NodeRef& weight, const NodeRef& bias = NodeRef(),
               const Conv2dOptions& options = {});
// The maximum of every kernel_size window; output (N, C, Ho, Wo) sized as for conv2d.
NodeRef max_pool2d(const NodeRef& input, std::array<std::int64_t, 2> kernel_size, const MaxPool2dOptions& options = {});
// The mean of every kernel_size window.
NodeRef avg_pool2d(const NodeRef& input, std::array<std::int64_t, 2> kernel_size, const AvgPool2dOptions& options = {});

}  // namespace zkynet::op

namespace zkynet::kernels {

// The eager kernels behind the operators (no graph). Shapes are checked as by the operators.

// conv2d's forward; when `columns` is given, the unfolded input is stored there for
// conv2d_backward (with a row of ones per group when there is a bias).
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const op::Conv2dOptions& options,
              Tensor* columns = nullptr);

struct Conv2dGrads {
  Tensor input, weight, bias;  // undefined where not asked for
};
// Gradients of conv2d given the output's gradient. `columns` is what the forward stored (with
// the same has_bias); when undefined it is recomputed. needs: input, weight, bias.
Conv2dGrads conv2d_backward(const Tensor& grad, const Tensor& input, const Tensor& weight, bool has_bias,
                            const Tensor& columns, const op::Conv2dOptions& options, std::array<bool, 3> needs);

// max_pool2d's forward; `indices` (when given) receives each maximum's flat position h * W + w
// in its input plane, int64, shaped like the output.
Tensor max_pool2d(const Tensor& input, std::array<std::int64_t, 2> kernel_size, const op::MaxPool2dOptions& options,
                  Tensor* indices = nullptr);
Tensor max_pool2d_backward(const Tensor& grad, const Shape& input_shape, const Tensor& indices);

Tensor avg_pool2d(const Tensor& input, std::array<std::int64_t, 2> kernel_size, const op::AvgPool2dOptions& options);
Tensor avg_pool2d_backward(const Tensor& grad, const Shape& input_shape, std::array<std::int64_t, 2> kernel_size,
                           const op::AvgPool2dOptions& options);

}  // namespace zkynet::kernels
