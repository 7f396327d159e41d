// Tensor kernels: eager computations on Tensors, no graph. Operators call these in their
// forward and backward; users may call them directly.
//
//   Tensor c = kernels::add(a, b);            // broadcasting, like numpy
//   Tensor g = kernels::sum_to(grad, a.shape());   // undo broadcasting in a gradient
#pragma once

#include <zkynet/framework/tensor.h>

#include <span>
#include <string_view>

namespace zkynet::kernels {

// numpy broadcasting; throws ShapeError naming `op` when shapes do not fit.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);
// The dtype of a binary result: equal dtypes, or the tensor's when the other is a 0-d scalar.
DType result_dtype(const Tensor& a, const Tensor& b, std::string_view op);
// The same rule over any number of operands: non-scalar operands must agree.
DType result_dtype(std::span<const Tensor* const> operands, std::string_view op);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, double factor);  // a * factor in a's dtype
// Comparisons (broadcasting): 1 where the relation holds, else 0, in the operands' dtype.
Tensor greater(const Tensor& a, const Tensor& b);
Tensor greater_equal(const Tensor& a, const Tensor& b);
Tensor less(const Tensor& a, const Tensor& b);
Tensor less_equal(const Tensor& a, const Tensor& b);
Tensor equal(const Tensor& a, const Tensor& b);
Tensor not_equal(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& a);
Tensor square(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor sign(const Tensor& a);
// grad * (1 - out^2): tanh's derivative from its output.
Tensor tanh_backward(const Tensor& grad, const Tensor& out);
// grad * out * (1 - out): sigmoid's derivative from its output (finite at any input).
Tensor sigmoid_backward(const Tensor& grad, const Tensor& out);
// grad where input > 0 or NaN (torch), else 0.
Tensor relu_backward(const Tensor& grad, const Tensor& input);

// Sums over `axes` (all when empty); negative axes count from the end.
Tensor sum(const Tensor& a, const Shape& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const Shape& axes = {}, bool keepdim = false);
// Sums a broadcast result back to `shape` (the adjoint of broadcasting).
Tensor sum_to(const Tensor& a, const Shape& shape);
// Normalizes axes (negative, duplicates) of a reduction over an ndim-d tensor; empty = all.
Shape reduction_axes(const Shape& axes, std::int64_t ndim, std::string_view op);

// Matrix product with numpy's matmul rules for 1-d and 2-d operands, and batched
// (broadcast) leading dimensions for 3-d and more. GEMM runs in BLAS.
Tensor matmul(const Tensor& a, const Tensor& b);
// matmul with either operand transposed (last two axes), without copying it.
Tensor matmul_t(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b);
// x W^T + b (torch.nn.functional.linear): x (..., in), weight (out, in), bias (out) or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// Column sums of a floating-point matrix: (rows, cols) -> (cols).
Tensor sum_rows(const Tensor& m);

}  // namespace zkynet::kernels
