#include <zkynet/framework/error.h>
#include <zkynet/internal/xt.h>
#include <zkynet/ops/kernels.h>

#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>

#include <algorithm>
#include <string>

namespace zkynet::kernels {

using internal::xview;

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

}  // namespace

Tensor sum(const Tensor& a, const Shape& axes_in, bool keepdim) {
  const Shape axes = reduction_axes(axes_in, a.dim(), "sum");
  Tensor out = Tensor::empty(reduced_shape(a.shape(), axes, keepdim), a.dtype());
  dispatch_dtype(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    if (a.is_contiguous() && static_cast<std::int64_t>(axes.size()) == a.dim()) {
      const T* p = a.data<T>();
      T total = T(0);
      for (std::int64_t i = 0; i < a.numel(); ++i) total += p[i];
      *out.data<T>() = total;
      return;
    }
    std::vector<std::size_t> xaxes(axes.begin(), axes.end());
    auto dst = xview<T>(out.reshape(reduced_shape(a.shape(), axes, false)));
    // Lazy: xtensor 0.24's immediate reduction throws on a strided adaptor ("Layout not
    // supported in immediate reduction") and mis-sizes its result even on row-major ones.
    xt::noalias(dst) = xt::sum(xview<T>(a), xaxes, xt::evaluation_strategy::lazy);
  });
  return out;
}

Tensor mean(const Tensor& a, const Shape& axes_in, bool keepdim) {
  if (!is_floating(a.dtype())) throw TypeError("mean " + shape_str(a.shape()) + ": needs a floating-point tensor");
  const Shape axes = reduction_axes(axes_in, a.dim(), "mean");
  std::int64_t count = 1;
  for (auto ax : axes) count *= a.shape()[static_cast<std::size_t>(ax)];
  return scale(sum(a, axes, keepdim), count ? 1.0 / static_cast<double>(count) : 0.0);
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
