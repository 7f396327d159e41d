// The kernels of the indexing and selection operators (ops/src/indexing.cpp and select.cpp call
// them), device-neutral: each runs on the CPU (select.cpp here) or, when its data is on a CUDA
// device, on that device (cuda/select.cu). Shapes, dtypes and axes are checked by the operators
// (axes arrive normalized); index tensors are int64, checked in range with check_indices first.
//
//   kernels::check_indices(index, x.shape()[a], "index_select", "axis 1");
//   const Tensor y = kernels::index_select(x, a, index);
//   const Tensor dx = kernels::index_select_backward(grad, x.shape(), a, index);
//
// The gathering kernels' adjoints scatter-add, so repeated indices sum their contributions; on
// CUDA they add with atomics, so a float sum over repeated indices has no fixed order (and may
// differ in the last bits from run to run). max and argmax pick the first maximum of a lane, or
// its first NaN, as torch does. var and std are two-pass (mean, then squared deviations), both
// sums in double (accumulate.h's contract).
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace zkynet::kernels {

// ---- index tensors ------------------------------------------------------------------------

// Throws IndexError "<op>: index i is out of range for <what> of size <size>" for the first
// (row-major) index outside [0, size). On CUDA the verdict is read back: one synchronization.
void check_indices(const Tensor& index, std::int64_t size, std::string_view op, const std::string& what);

// ---- gathering and their scatter-add adjoints (index moved to the data's device) ----------

// x's slices along `axis` at the positions in index (1-d, or 0-d for one): out's axis has
// index's length.
Tensor index_select(const Tensor& x, std::int64_t axis, const Tensor& index);
// dx[.., index[j], ..] += grad[.., j, ..], dx of x_shape.
Tensor index_select_backward(const Tensor& grad, const Shape& x_shape, std::int64_t axis, const Tensor& index);
// out[i..] = x[i.. with coordinate `axis` replaced by index[i..]]; out has index's shape.
Tensor gather(const Tensor& x, std::int64_t axis, const Tensor& index);
// dx[i.. with coordinate `axis` replaced by index[i..]] += grad[i..], dx of x_shape.
Tensor gather_backward(const Tensor& grad, const Shape& x_shape, std::int64_t axis, const Tensor& index);
// Rows of weight (V, D) at indices (any shape): indices.shape + (D).
Tensor embedding(const Tensor& indices, const Tensor& weight);
// dweight[indices[i]] += grad[i], row by row: (V, D) = weight_shape.
Tensor embedding_backward(const Tensor& grad, const Tensor& indices, const Shape& weight_shape);
// Zeros of `shape` (on grad's device) with grad written into slice(axis, start, stop, step).
Tensor slice_backward(const Tensor& grad, const Shape& shape, std::int64_t axis, std::int64_t start,
                      std::int64_t stop, std::int64_t step);

// ---- elementwise selection (broadcasting operands, functors in functors.h) ----------------

// a where condition is nonzero (NaN included), else b, in result_dtype(a, b).
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
// grad where condition is nonzero (to_a) or where it is zero (!to_a), else 0; broadcast shape.
Tensor where_backward(const Tensor& grad, const Tensor& condition, bool to_a);
// x limited to [lo, hi] (either may be absent) in x's dtype; NaN stays NaN. Bounds beyond
// int64's range saturate for int64 tensors.
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi);
// grad where lo <= x <= hi (bounds included, NaN excluded), else 0.
Tensor clamp_backward(const Tensor& grad, const Tensor& x, std::optional<double> lo, std::optional<double> hi);
// Elementwise larger (smaller) of a and b, NaN-propagating, in result_dtype(a, b).
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// The share of grad that goes to x in maximum(x, y) (larger) or minimum(x, y): all of it where
// x wins, half on ties, none where y wins (torch 1.13). Broadcast shape.
Tensor extremum_backward(const Tensor& grad, const Tensor& x, const Tensor& y, bool larger);

// ---- along an axis (`axis` normalized; a 0-d x is one lane of one element) -----------------

// The position of each lane's first maximum (or first NaN): int64, x's shape without the axis
// (or with it as 1 when keepdim).
Tensor argmax_along(const Tensor& x, std::int64_t axis, bool keepdim);
// The element argmax_along picks, in x's dtype.
Tensor max_along(const Tensor& x, std::int64_t axis, bool keepdim);
// Zeros of x's shape with grad at the positions argmax_along picks.
Tensor max_along_backward(const Tensor& grad, const Tensor& x, std::int64_t axis, bool keepdim);

// Variance over `axes` (normalized and sorted; {0} for a 0-d x) divided by N - 1 (unbiased) or
// N, never below 0; its square root when `root`.
Tensor variance(const Tensor& x, const Shape& axes, bool keepdim, bool unbiased, bool root);
// 2 (x - mean) / divisor times grad (grad in x's shape with the reduced axes as 1).
Tensor variance_backward(const Tensor& grad, const Tensor& x, const Shape& axes, bool unbiased);
// grad / (2 sd), and 0 where sd is 0 (torch's convention): std's gradient passed to var's.
Tensor std_backward(const Tensor& grad, const Tensor& sd);

}  // namespace zkynet::kernels
