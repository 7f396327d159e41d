// The indexing and selection kernels (select.h): the CPU loops, and the hand-off to
// cuda/select.cu (or the elementwise CUDA maps) when the data is on a CUDA device.
#include "select.h"

#include <zkynet/framework/error.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/strided.h>

#include "accumulate.h"
#include "cuda/api.h"
#include "functors.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>
#include <vector>

namespace zkynet::kernels {

namespace {

bool on_device(const Tensor& t) { return !t.device().is_cpu(); }

// `t` on `device` (a copy when it is elsewhere).
Tensor on(const Tensor& t, Device device) { return t.device() == device ? t : t.to(device); }

// A contiguous tensor seen as outer x n x inner around one axis; a 0-d one is 1 x 1 x 1.
struct Blocks {
  std::int64_t outer = 1;
  std::int64_t n = 1;
  std::int64_t inner = 1;
};

Blocks blocks_around(const Shape& shape, std::int64_t axis) {
  Blocks b;
  if (shape.empty()) return b;
  for (std::int64_t i = 0; i < axis; ++i) b.outer *= shape[static_cast<std::size_t>(i)];
  b.n = shape[static_cast<std::size_t>(axis)];
  for (std::size_t i = static_cast<std::size_t>(axis) + 1; i < shape.size(); ++i) b.inner *= shape[i];
  return b;
}

// The indices of a CPU index tensor, row-major.
std::vector<std::int64_t> host_indices(const Tensor& index) {
  const Tensor t = on(index, Device::cpu()).contiguous();
  const std::int64_t* p = t.data<std::int64_t>();
  return std::vector<std::int64_t>(p, p + t.numel());
}

// index_select's index (1-d of k, or 0-d) as a view over out's shape (x's with `axis` of k),
// stride 0 outside the axis: cuda::gather's and cuda::scatter's form of it.
Tensor index_over(const Tensor& index, const Shape& x_shape, std::int64_t axis, Device device) {
  Shape out = x_shape;
  Shape along(x_shape.size(), 1);
  out[static_cast<std::size_t>(axis)] = along[static_cast<std::size_t>(axis)] = index.numel();
  return on(index, device).reshape(along).expand(out);
}

// Calls f(T{}) with T the elementwise functor's element type for dtype (floating only when
// F says so); the CPU half of an elementwise selection kernel.
template <class F, std::size_t N>
Tensor map_on_host(const std::array<Tensor, N>& operands, DType dtype, const F& f, std::string_view op) {
  const auto run = [&](auto zero) {
    using T = decltype(zero);
    return map<T, N>(operands, f, op);
  };
  if constexpr (requires { F::floating; }) {
    return dispatch_floating(dtype, run);
  } else {
    return dispatch_dtype(dtype, run);
  }
}

template <class F>
Tensor map1(const Tensor& a, DType dtype, const F& f, std::string_view op) {
  if (on_device(a)) return cuda::map_unary(a, dtype, f, op);
  return map_on_host<F, 1>({a}, dtype, f, op);
}

template <class F>
Tensor map2(const Tensor& a, const Tensor& b, DType dtype, const F& f, std::string_view op) {
  if (on_device(a) || on_device(b)) return cuda::map_binary(a, b, dtype, f, op);
  return map_on_host<F, 2>({a, b}, dtype, f, op);
}

template <class F>
Tensor map3(const Tensor& a, const Tensor& b, const Tensor& c, DType dtype, const F& f, std::string_view op) {
  if (on_device(a) || on_device(b) || on_device(c)) return cuda::map_ternary(a, b, c, dtype, f, op);
  return map_on_host<F, 3>({a, b, c}, dtype, f, op);
}

}  // namespace

// ---- index tensors ------------------------------------------------------------------------

void check_indices(const Tensor& index, std::int64_t size, std::string_view op, const std::string& what) {
  std::int64_t bad = 0;
  bool found = false;
  if (on_device(index)) {
    const std::int64_t at = cuda::first_index_out_of_range(index, size);
    if (at >= 0) {
      bad = index.contiguous().reshape({index.numel()}).slice(0, at, at + 1).cpu().data<std::int64_t>()[0];
      found = true;
    }
  } else {
    const Tensor t = index.contiguous();
    const std::int64_t* p = t.data<std::int64_t>();
    for (std::int64_t k = 0; k < t.numel() && !found; ++k) {
      found = p[k] < 0 || p[k] >= size;
      bad = p[k];
    }
  }
  if (found) {
    throw IndexError(std::string(op) + ": index " + std::to_string(bad) + " is out of range for " + what +
                     " of size " + std::to_string(size));
  }
}

// ---- gathering and their scatter-add adjoints ---------------------------------------------

Tensor index_select(const Tensor& x, std::int64_t axis, const Tensor& index) {
  if (on_device(x)) return cuda::gather(x, axis, index_over(index, x.shape(), axis, x.device()));
  const std::vector<std::int64_t> idx = host_indices(index);
  const Blocks b = blocks_around(x.shape(), axis);
  const auto k = static_cast<std::int64_t>(idx.size());
  Shape shape = x.shape();
  shape[static_cast<std::size_t>(axis)] = k;
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(shape, x.dtype());
  dispatch_dtype(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = in.data<T>();
    T* o = out.data<T>();
    for (std::int64_t i = 0; i < b.outer; ++i) {
      for (std::int64_t j = 0; j < k; ++j) {
        std::copy_n(p + (i * b.n + idx[static_cast<std::size_t>(j)]) * b.inner, b.inner, o + (i * k + j) * b.inner);
      }
    }
  });
  return out;
}

Tensor index_select_backward(const Tensor& grad, const Shape& x_shape, std::int64_t axis, const Tensor& index) {
  if (on_device(grad)) {
    return cuda::scatter(grad, axis, index_over(index, x_shape, axis, grad.device()), x_shape, true);
  }
  const std::vector<std::int64_t> idx = host_indices(index);
  const Blocks b = blocks_around(x_shape, axis);
  const auto k = static_cast<std::int64_t>(idx.size());
  const Tensor g = grad.contiguous();
  Tensor dx = Tensor::zeros(x_shape, grad.dtype());
  dispatch_floating(grad.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = g.data<T>();
    T* d = dx.data<T>();
    for (std::int64_t i = 0; i < b.outer; ++i) {
      for (std::int64_t j = 0; j < k; ++j) {
        T* dst = d + (i * b.n + idx[static_cast<std::size_t>(j)]) * b.inner;
        const T* src = gp + (i * k + j) * b.inner;
        for (std::int64_t e = 0; e < b.inner; ++e) dst[e] += src[e];
      }
    }
  });
  return dx;
}

namespace {

// Calls body(index position, x position) for every element of index; x's position is that of
// index's coordinates, with the axis coordinate replaced by the index value.
template <class Body>
void visit_gather(const Shape& x_strides, const Shape& index_shape, const std::vector<std::int64_t>& idx,
                  std::int64_t axis, Body&& body) {
  Shape outer = x_strides;
  const std::int64_t axis_stride = outer[static_cast<std::size_t>(axis)];
  outer[static_cast<std::size_t>(axis)] = 0;
  const Shape index_strides = contiguous_strides(index_shape);
  detail::for_each_strided<2>(index_shape, {&index_strides, &outer}, [&](const std::array<std::int64_t, 2>& off) {
    body(off[0], off[1] + idx[static_cast<std::size_t>(off[0])] * axis_stride);
  });
}

}  // namespace

Tensor gather(const Tensor& x, std::int64_t axis, const Tensor& index) {
  if (on_device(x)) return cuda::gather(x, axis, on(index, x.device()));
  const std::vector<std::int64_t> idx = host_indices(index);
  Tensor out = Tensor::empty(index.shape(), x.dtype());
  dispatch_dtype(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    T* o = out.data<T>();
    visit_gather(x.strides(), index.shape(), idx, axis, [&](std::int64_t i, std::int64_t xi) { o[i] = p[xi]; });
  });
  return out;
}

Tensor gather_backward(const Tensor& grad, const Shape& x_shape, std::int64_t axis, const Tensor& index) {
  if (on_device(grad)) return cuda::scatter(grad, axis, on(index, grad.device()), x_shape, true);
  const std::vector<std::int64_t> idx = host_indices(index);
  const Tensor g = grad.contiguous();
  Tensor dx = Tensor::zeros(x_shape, grad.dtype());
  dispatch_floating(grad.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = g.data<T>();
    T* d = dx.data<T>();
    visit_gather(dx.strides(), index.shape(), idx, axis, [&](std::int64_t i, std::int64_t xi) { d[xi] += gp[i]; });
  });
  return dx;
}

Tensor embedding(const Tensor& indices, const Tensor& weight) {
  const std::int64_t dim = weight.shape()[1];
  Shape shape = indices.shape();
  shape.push_back(dim);
  if (on_device(weight)) return index_select(weight, 0, indices.reshape({indices.numel()})).reshape(shape);
  const std::vector<std::int64_t> idx = host_indices(indices);
  const Tensor w = weight.contiguous();
  Tensor out = Tensor::empty(shape, weight.dtype());
  dispatch_dtype(weight.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = w.data<T>();
    T* o = out.data<T>();
    for (std::size_t i = 0; i < idx.size(); ++i) {
      std::copy_n(p + idx[i] * dim, dim, o + static_cast<std::int64_t>(i) * dim);
    }
  });
  return out;
}

Tensor embedding_backward(const Tensor& grad, const Tensor& indices, const Shape& weight_shape) {
  const std::int64_t dim = weight_shape[1];
  if (on_device(grad)) {
    return index_select_backward(grad.reshape({indices.numel(), dim}), weight_shape, 0,
                                 indices.reshape({indices.numel()}));
  }
  const std::vector<std::int64_t> idx = host_indices(indices);
  const Tensor g = grad.contiguous();
  Tensor dw = Tensor::zeros(weight_shape, grad.dtype());
  dispatch_floating(grad.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = g.data<T>();
    T* d = dw.data<T>();
    for (std::size_t i = 0; i < idx.size(); ++i) {
      T* dst = d + idx[i] * dim;
      const T* src = gp + static_cast<std::int64_t>(i) * dim;
      for (std::int64_t e = 0; e < dim; ++e) dst[e] += src[e];
    }
  });
  return dw;
}

Tensor slice_backward(const Tensor& grad, const Shape& shape, std::int64_t axis, std::int64_t start,
                      std::int64_t stop, std::int64_t step) {
  Tensor dx = Tensor::zeros(shape, grad.dtype(), grad.device());
  dx.slice(axis, start, stop, step).copy_(grad);
  return dx;
}

// ---- elementwise selection ----------------------------------------------------------------

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  const DType dtype = result_dtype(a, b, "where");
  const Tensor mask = map1(condition, condition.dtype(), fn::Truth{}, "where");
  return map3(mask, a, b, dtype, fn::Where{}, "where");
}

Tensor where_backward(const Tensor& grad, const Tensor& condition, bool to_a) {
  const Tensor mask = map1(condition, condition.dtype(), fn::Truth{}, "where");
  if (to_a) return map2(mask, grad, grad.dtype(), fn::WhereTrue{}, "where");
  return map2(mask, grad, grad.dtype(), fn::WhereFalse{}, "where");
}

Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  const fn::Clamp f{lo.value_or(0.0), hi.value_or(0.0), lo.has_value(), hi.has_value()};
  return map1(x, x.dtype(), f, "clamp");
}

Tensor clamp_backward(const Tensor& grad, const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  const fn::ClampBackward f{lo.value_or(0.0), hi.value_or(0.0), lo.has_value(), hi.has_value()};
  return map2(grad, x, x.dtype(), f, "clamp");
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  return map2(a, b, result_dtype(a, b, "maximum"), fn::Maximum{}, "maximum");
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return map2(a, b, result_dtype(a, b, "minimum"), fn::Minimum{}, "minimum");
}

Tensor extremum_backward(const Tensor& grad, const Tensor& x, const Tensor& y, bool larger) {
  if (larger) return map3(grad, x, y, grad.dtype(), fn::MaximumShare{}, "maximum");
  return map3(grad, x, y, grad.dtype(), fn::MinimumShare{}, "minimum");
}

// ---- along an axis ------------------------------------------------------------------------

namespace {

// x's shape without `axis`, or with it as 1 when keepdim; a 0-d x gives 0-d.
Shape along_shape(const Shape& shape, std::int64_t axis, bool keepdim) {
  Shape out;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (static_cast<std::int64_t>(i) != axis) {
      out.push_back(shape[i]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

// The position in each lane of its first maximum (or first NaN), for lanes k = 0, 1, ...
template <class T>
std::vector<std::int64_t> lane_argmax(const T* p, const Blocks& l) {
  std::vector<std::int64_t> best(static_cast<std::size_t>(l.outer * l.inner));
  for (std::int64_t k = 0; k < l.outer * l.inner; ++k) {
    const T* lane = p + (k / l.inner) * l.n * l.inner + k % l.inner;
    std::int64_t b = 0;
    for (std::int64_t j = 1; j < l.n && !fn::is_nan(lane[b * l.inner]); ++j) {
      const T v = lane[j * l.inner];
      if (fn::is_nan(v) || v > lane[b * l.inner]) b = j;
    }
    best[static_cast<std::size_t>(k)] = b;
  }
  return best;
}

// The device's argmax positions with the axis kept (x as a vector when 0-d), and that x.
std::pair<Tensor, Tensor> device_argmax(const Tensor& x, std::int64_t axis) {
  const Tensor v = x.dim() == 0 ? x.reshape({1}) : x;
  return {cuda::argmax(v, axis), v};
}

}  // namespace

Tensor argmax_along(const Tensor& x, std::int64_t axis, bool keepdim) {
  const Shape out_shape = along_shape(x.shape(), axis, keepdim);
  if (on_device(x)) return device_argmax(x, axis).first.reshape(out_shape);
  const Blocks l = blocks_around(x.shape(), axis);
  const Tensor in = x.contiguous();
  const auto best = dispatch_dtype(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return lane_argmax(in.data<T>(), l);
  });
  return Tensor::from_vector(best, out_shape);
}

Tensor max_along(const Tensor& x, std::int64_t axis, bool keepdim) {
  const Shape out_shape = along_shape(x.shape(), axis, keepdim);
  if (on_device(x)) {
    const auto [best, v] = device_argmax(x, axis);
    return cuda::gather(v, axis, best).reshape(out_shape);
  }
  const Blocks l = blocks_around(x.shape(), axis);
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(out_shape, x.dtype());
  dispatch_dtype(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = in.data<T>();
    T* o = out.data<T>();
    const auto best = lane_argmax(p, l);
    for (std::int64_t k = 0; k < l.outer * l.inner; ++k) {
      o[k] = p[(k / l.inner) * l.n * l.inner + k % l.inner + best[static_cast<std::size_t>(k)] * l.inner];
    }
  });
  return out;
}

Tensor max_along_backward(const Tensor& grad, const Tensor& x, std::int64_t axis, bool keepdim) {
  if (on_device(x)) {
    const auto [best, v] = device_argmax(x, axis);
    return cuda::scatter(on(grad, x.device()).reshape(best.shape()), axis, best, v.shape(), false).reshape(x.shape());
  }
  (void)keepdim;  // grad holds one value per lane either way
  const Blocks l = blocks_around(x.shape(), axis);
  const Tensor in = x.contiguous();
  const Tensor g = grad.contiguous();
  Tensor dx = Tensor::zeros(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = g.data<T>();
    T* d = dx.data<T>();
    const auto best = lane_argmax(in.data<T>(), l);
    for (std::int64_t k = 0; k < l.outer * l.inner; ++k) {
      d[(k / l.inner) * l.n * l.inner + k % l.inner + best[static_cast<std::size_t>(k)] * l.inner] = gp[k];
    }
  });
  return dx;
}

// ---- var, std -----------------------------------------------------------------------------

namespace {

// The divisor of the summed squared deviations: N - 1 (unbiased) or N, never negative.
double divisor(std::int64_t n, bool unbiased) {
  return static_cast<double>(std::max<std::int64_t>(0, n - (unbiased ? 1 : 0)));
}

bool reduced(const Shape& axes, std::int64_t i) { return std::find(axes.begin(), axes.end(), i) != axes.end(); }

}  // namespace

Tensor variance(const Tensor& x, const Shape& axes, bool keepdim, bool unbiased, bool root) {
  Shape perm;
  Shape out_shape;
  std::int64_t n = 1;
  for (std::int64_t i = 0; i < x.dim(); ++i) {
    const std::int64_t d = x.shape()[static_cast<std::size_t>(i)];
    if (!reduced(axes, i)) {
      perm.push_back(i);
      out_shape.push_back(d);
    } else {
      n *= d;
      if (keepdim) out_shape.push_back(1);
    }
  }
  if (x.dim() > 0) {
    for (auto a : axes) perm.push_back(a);
  }
  // Each output's elements as one contiguous lane.
  const Tensor in = x.permute(perm).contiguous();
  const double den = divisor(n, unbiased);
  if (on_device(x)) return cuda::variance_lanes(in, n, den, root, out_shape);
  Tensor out = Tensor::empty(out_shape, x.dtype());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = in.data<T>();
    T* o = out.data<T>();
    for (std::int64_t k = 0; k < out.numel(); ++k) {
      const T* lane = p + k * n;
      const double mean = detail::strided_sum(lane, n, 1) / static_cast<double>(n);
      const double ss = detail::pairwise_sum<double>(0, n, [&](std::int64_t j) {
        const double dev = static_cast<double>(lane[j]) - mean;
        return dev * dev;
      });
      const double v = ss / den;
      o[k] = static_cast<T>(root ? std::sqrt(v) : v);
    }
  });
  return out;
}

Tensor variance_backward(const Tensor& grad, const Tensor& x, const Shape& axes, bool unbiased) {
  std::int64_t n = 1;
  for (auto a : axes) n *= x.dim() == 0 ? 1 : x.shape()[static_cast<std::size_t>(a)];
  const Tensor m = mean(x, x.dim() == 0 ? Shape{} : axes, true);
  return map3(grad, x, m, x.dtype(), fn::VarianceBackward{2.0 / divisor(n, unbiased)}, "var");
}

Tensor std_backward(const Tensor& grad, const Tensor& sd) { return map2(grad, sd, sd.dtype(), fn::StdBackward{}, "std"); }

}  // namespace zkynet::kernels
