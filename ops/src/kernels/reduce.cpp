#include <zkynet/framework/error.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/ops/kernels.h>

#include "accumulate.h"
#include "cuda/api.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

namespace zkynet::kernels {

Shape reduction_axes(const Shape& axes, std::int64_t ndim, std::string_view op) {
  Shape out;
  if (axes.empty()) {
    for (std::int64_t i = 0; i < ndim; ++i) out.push_back(i);
    return out;
  }
  for (auto a : axes) {
    const std::int64_t n = a < 0 ? a + ndim : a;
    if (n < 0 || n >= ndim) {
      throw IndexError(std::string(op) + ": axis " + std::to_string(a) + " out of range for a " +
                       std::to_string(ndim) + "-d tensor");
    }
    if (std::find(out.begin(), out.end(), n) != out.end()) {
      throw IndexError(std::string(op) + ": axis " + std::to_string(a) + " repeated");
    }
    out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

using detail::Accumulator;
using detail::pairwise_sum;
using detail::strided_sum;

Shape reduced_shape(const Shape& shape, const Shape& axes, bool keepdim) {
  Shape out;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), static_cast<std::int64_t>(i)) != axes.end();
    if (!reduced) {
      out.push_back(shape[i]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

// Some axes of a strided tensor, row-major, with neighbours merged where memory allows.
struct Dims {
  std::vector<std::int64_t> size;
  std::vector<std::int64_t> stride;

  void push(std::int64_t n, std::int64_t s) {
    if (n == 1) return;
    if (!size.empty() && stride.back() == s * n) {
      size.back() *= n;
      stride.back() = s;
      return;
    }
    size.push_back(n);
    stride.push_back(s);
  }
  std::int64_t count() const {
    std::int64_t c = 1;
    for (auto n : size) c *= n;
    return c;
  }
  // The memory offset of the flat (row-major) index `flat`.
  std::int64_t offset(std::int64_t flat) const {
    std::int64_t off = 0;
    for (std::size_t d = size.size(); d-- > 0;) {
      off += (flat % size[d]) * stride[d];
      flat /= size[d];
    }
    return off;
  }
  // These dims without the innermost one.
  Dims outer() const {
    Dims o = *this;
    o.size.pop_back();
    o.stride.pop_back();
    return o;
  }
};

// Full reductions of long runs split into fixed chunks (not per thread), so the result does
// not depend on the number of threads.
constexpr std::int64_t kChunk = std::int64_t{1} << 16;

template <class T>
Accumulator<T> long_run_sum(const T* p, std::int64_t n, std::int64_t stride) {
  using Acc = Accumulator<T>;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks < 4) return strided_sum(p, n, stride);
  std::vector<Acc> partial(static_cast<std::size_t>(chunks));
  parallel_for(
      chunks,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t c = begin; c < end; ++c) {
          partial[static_cast<std::size_t>(c)] =
              strided_sum(p + c * kChunk * stride, std::min(kChunk, n - c * kChunk), stride);
        }
      },
      1);
  return pairwise_sum<Acc>(0, chunks, [&](std::int64_t c) { return partial[static_cast<std::size_t>(c)]; });
}

// Each output sums runs along the reduced axes' innermost (smallest-stride) dimension.
template <class T, class Finish>
void reduce_runs(const T* p, const Dims& kept, const Dims& red, T* out, const Finish& finish) {
  using Acc = Accumulator<T>;
  const std::int64_t outputs = kept.count();
  const std::int64_t run = red.size.back();
  const std::int64_t run_stride = red.stride.back();
  const Dims across = red.outer();
  const std::int64_t runs = across.count();
  if (outputs == 1 && runs == 1) {
    out[0] = finish(long_run_sum(p, run, run_stride));
    return;
  }
  const std::int64_t per_output = std::max<std::int64_t>(1, runs * run);
  parallel_for(
      outputs,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t o = begin; o < end; ++o) {
          const T* base = p + kept.offset(o);
          out[o] = finish(runs == 1 ? strided_sum(base, run, run_stride)
                                    : pairwise_sum<Acc>(0, runs, [&](std::int64_t j) {
                                        return strided_sum(base + across.offset(j), run, run_stride);
                                      }));
        }
      },
      std::max<std::int64_t>(1, kParallelGrain / per_output));
}

// The kept axes' innermost dimension is the contiguous one (e.g. a sum over the rows of a
// matrix): whole rows are added into a row of accumulators, in blocks of rows (blocked
// summation) so that no accumulator sums more than kRowBlock terms directly.
constexpr std::int64_t kRowBlock = 1024;

template <class T, class Finish>
void reduce_rows(const T* p, const Dims& kept, const Dims& red, T* out, const Finish& finish) {
  using Acc = Accumulator<T>;
  const std::int64_t cols = kept.size.back();
  const std::int64_t col_stride = kept.stride.back();
  const Dims outer = kept.outer();
  const std::int64_t rows = red.count();
  parallel_for(
      outer.count(),
      [&](std::int64_t begin, std::int64_t end) {
        std::vector<Acc> total(static_cast<std::size_t>(cols));
        std::vector<Acc> block(static_cast<std::size_t>(cols));
        for (std::int64_t k = begin; k < end; ++k) {
          const T* base = p + outer.offset(k);
          std::fill(total.begin(), total.end(), Acc(0));
          for (std::int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
            std::fill(block.begin(), block.end(), Acc(0));
            for (std::int64_t r = r0; r < std::min(rows, r0 + kRowBlock); ++r) {
              const T* row = base + red.offset(r);
              Acc* b = block.data();
              if (col_stride == 1) {
                for (std::int64_t j = 0; j < cols; ++j) b[j] += static_cast<Acc>(row[j]);
              } else {
                for (std::int64_t j = 0; j < cols; ++j) b[j] += static_cast<Acc>(row[j * col_stride]);
              }
            }
            for (std::int64_t j = 0; j < cols; ++j) total[static_cast<std::size_t>(j)] += block[static_cast<std::size_t>(j)];
          }
          T* o = out + k * cols;
          for (std::int64_t j = 0; j < cols; ++j) o[j] = finish(total[static_cast<std::size_t>(j)]);
        }
      },
      std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(1, rows * cols)));
}

// The sum over `axes` times `scale` (1 for sum, 1/count for mean), accumulated as accumulate.h
// says and rounded to the dtype once, at the end.
Tensor scaled_sum(const Tensor& a, const Shape& axes, bool keepdim, double scale) {
  if (!a.device().is_cpu()) return cuda::sum(a, axes, keepdim, scale);
  Tensor out = Tensor::empty(reduced_shape(a.shape(), axes, keepdim), a.dtype());
  Dims kept;
  Dims red;
  for (std::int64_t i = 0; i < a.dim(); ++i) {
    const bool reduced = std::binary_search(axes.begin(), axes.end(), i);
    (reduced ? red : kept).push(a.shape()[static_cast<std::size_t>(i)], a.strides()[static_cast<std::size_t>(i)]);
  }
  const bool empty = a.numel() == 0;
  if (red.size.empty()) {  // nothing to add up: each output is one element
    red.size.push_back(1);
    red.stride.push_back(1);
  }
  dispatch_dtype(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    using Acc = Accumulator<T>;
    T* o = out.data<T>();
    const auto finish = [scale](Acc s) {
      if constexpr (std::is_floating_point_v<T>) return static_cast<T>(static_cast<double>(s) * scale);
      return static_cast<T>(s);
    };
    if (empty) {
      std::fill(o, o + out.numel(), finish(Acc(0)));
    } else if (!kept.size.empty() && kept.stride.back() < red.stride.back()) {
      reduce_rows(a.data<T>(), kept, red, o, finish);
    } else {
      reduce_runs(a.data<T>(), kept, red, o, finish);
    }
  });
  return out;
}

std::int64_t reduced_count(const Tensor& a, const Shape& axes) {
  std::int64_t count = 1;
  for (auto ax : axes) count *= a.shape()[static_cast<std::size_t>(ax)];
  return count;
}

}  // namespace

Tensor sum(const Tensor& a, const Shape& axes, bool keepdim) {
  return scaled_sum(a, reduction_axes(axes, a.dim(), "sum"), keepdim, 1.0);
}

Tensor mean(const Tensor& a, const Shape& axes_in, bool keepdim) {
  if (!is_floating(a.dtype())) throw TypeError("mean " + shape_str(a.shape()) + ": needs a floating-point tensor");
  const Shape axes = reduction_axes(axes_in, a.dim(), "mean");
  const std::int64_t count = reduced_count(a, axes);
  // The mean of nothing is NaN, as in numpy and PyTorch.
  const double scale = count ? 1.0 / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
  return scaled_sum(a, axes, keepdim, scale);
}

Tensor sum_to(const Tensor& a, const Shape& shape) {
  if (a.shape() == shape) return a;
  if (a.shape().size() < shape.size()) {
    throw ShapeError("sum_to: cannot reduce " + shape_str(a.shape()) + " to the larger shape " + shape_str(shape));
  }
  const std::size_t lead = a.shape().size() - shape.size();
  Shape axes;
  for (std::size_t i = 0; i < a.shape().size(); ++i) {
    if (i < lead || (shape[i - lead] == 1 && a.shape()[i] != 1)) axes.push_back(static_cast<std::int64_t>(i));
  }
  if (axes.empty()) return a.reshape(shape);
  return sum(a, axes, false).reshape(shape);
}

}  // namespace zkynet::kernels
