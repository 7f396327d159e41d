// softmax, log_softmax and logsumexp: forward and VJP side by side. Each lane (the elements
// along the reduced axes for one position of the others) is shifted by its maximum before
// exponentiating, as PyTorch does, so large logits neither overflow nor lose precision.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/strided.h>

#include "kernels/accumulate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace zkynet::op {

namespace {

void require_floating(const Tensor& x, std::string_view op) {
  if (!is_floating(x.dtype())) {
    throw TypeError(std::string(op) + " " + shape_str(x.shape()) + ": needs a floating-point tensor, got " +
                    std::string(dtype_name(x.dtype())));
  }
}

// A contiguous tensor seen as outer x n x inner: lane k starts at
// (k / inner) * n * inner + k % inner, and its n elements lie `inner` apart.
struct Lanes {
  std::int64_t outer = 1;
  std::int64_t n = 1;
  std::int64_t inner = 1;
};

// The lanes along `axis` of x (a 0-d tensor is one lane of one element, as in PyTorch).
Lanes lanes_along(const Tensor& x, std::int64_t axis, std::string_view op) {
  const std::int64_t a = kernels::reduction_axes({axis}, std::max<std::int64_t>(x.dim(), 1), op)[0];
  Lanes l;
  if (x.dim() == 0) return l;
  const Shape& s = x.shape();
  for (std::int64_t i = 0; i < a; ++i) l.outer *= s[static_cast<std::size_t>(i)];
  l.n = s[static_cast<std::size_t>(a)];
  for (std::int64_t i = a + 1; i < x.dim(); ++i) l.inner *= s[static_cast<std::size_t>(i)];
  return l;
}

// Calls body(start, k) for every lane k, lanes split across the thread pool.
template <class Body>
void for_each_lane(const Lanes& l, Body&& body) {
  const std::int64_t grain = std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(l.n, 1));
  parallel_for(
      l.outer * l.inner,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t k = begin; k < end; ++k) body((k / l.inner) * l.n * l.inner + k % l.inner, k);
      },
      grain);
}

// The lane's maximum: softmax's and log_softmax's shift. As in PyTorch, a lane holding +inf
// (inf - inf) or only -inf (-inf + inf) then gives NaN throughout, as does one holding NaN.
template <class T>
T lane_max(const T* p, std::int64_t n, std::int64_t stride) {
  T m = -std::numeric_limits<T>::infinity();
  for (std::int64_t j = 0; j < n; ++j) m = std::max(m, p[j * stride]);
  return m;
}

// logsumexp's shift: the lane's maximum, or 0 when that is infinite (all -inf, or some +inf),
// which keeps exp(x - shift) defined, with PyTorch's logsumexp results for infinite lanes
// (-inf and +inf).
template <class T>
T lane_shift(const T* p, std::int64_t n, std::int64_t stride) {
  const T m = lane_max(p, n, stride);
  return std::isfinite(m) ? m : T(0);
}

// sum_j exp(p[j] - shift), summed as kernels/accumulate.h says.
template <class T>
double lane_sum_exp(const T* p, std::int64_t n, std::int64_t stride, T shift) {
  return kernels::detail::pairwise_sum<double>(
      0, n, [&](std::int64_t j) { return std::exp(static_cast<double>(p[j * stride] - shift)); });
}

struct SoftmaxDef {
  static constexpr std::string_view name = "softmax";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis = -1;

  Tensor forward(const Tensor& x) const {
    require_floating(x, name);
    const Lanes l = lanes_along(x, axis, name);
    const Tensor in = x.contiguous();
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    dispatch_floating(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = in.data<T>();
      T* y = out.data<T>();
      for_each_lane(l, [&](std::int64_t start, std::int64_t) {
        const T shift = lane_max(p + start, l.n, l.inner);
        double total = 0.0;
        for (std::int64_t j = 0; j < l.n; ++j) {
          const std::int64_t i = start + j * l.inner;
          const double e = std::exp(static_cast<double>(p[i] - shift));
          y[i] = static_cast<T>(e);
          total += e;
        }
        for (std::int64_t j = 0; j < l.n; ++j) {
          const std::int64_t i = start + j * l.inner;
          y[i] = static_cast<T>(static_cast<double>(y[i]) / total);
        }
      });
    });
    return out;
  }

  // dx = y * (g - sum_lane(g * y)).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Lanes l = lanes_along(c.in(0), axis, name);
    const Tensor g = c.grad.contiguous();
    const Tensor y = c.output.contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype());
    dispatch_floating(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = g.data<T>();
      const T* yp = y.data<T>();
      T* d = dx.data<T>();
      for_each_lane(l, [&](std::int64_t start, std::int64_t) {
        double dot = 0.0;
        for (std::int64_t j = 0; j < l.n; ++j) {
          const std::int64_t i = start + j * l.inner;
          dot += static_cast<double>(gp[i]) * static_cast<double>(yp[i]);
        }
        for (std::int64_t j = 0; j < l.n; ++j) {
          const std::int64_t i = start + j * l.inner;
          d[i] = static_cast<T>(static_cast<double>(yp[i]) * (static_cast<double>(gp[i]) - dot));
        }
      });
    });
    return {dx};
  }
};

struct LogSoftmaxDef {
  static constexpr std::string_view name = "log_softmax";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis = -1;

  // (x - shift) - log(sum exp(x - shift)).
  Tensor forward(const Tensor& x) const {
    require_floating(x, name);
    const Lanes l = lanes_along(x, axis, name);
    const Tensor in = x.contiguous();
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    dispatch_floating(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = in.data<T>();
      T* y = out.data<T>();
      for_each_lane(l, [&](std::int64_t start, std::int64_t) {
        const T shift = lane_max(p + start, l.n, l.inner);
        const double log_total = std::log(lane_sum_exp(p + start, l.n, l.inner, shift));
        for (std::int64_t j = 0; j < l.n; ++j) {
          const std::int64_t i = start + j * l.inner;
          y[i] = static_cast<T>(static_cast<double>(p[i] - shift) - log_total);
        }
      });
    });
    return out;
  }

  // dx = g - softmax(x) * sum_lane(g), with softmax(x) = exp(y).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Lanes l = lanes_along(c.in(0), axis, name);
    const Tensor g = c.grad.contiguous();
    const Tensor y = c.output.contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype());
    dispatch_floating(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = g.data<T>();
      const T* yp = y.data<T>();
      T* d = dx.data<T>();
      for_each_lane(l, [&](std::int64_t start, std::int64_t) {
        double total = 0.0;
        for (std::int64_t j = 0; j < l.n; ++j) total += static_cast<double>(gp[start + j * l.inner]);
        for (std::int64_t j = 0; j < l.n; ++j) {
          const std::int64_t i = start + j * l.inner;
          d[i] = static_cast<T>(static_cast<double>(gp[i]) - std::exp(static_cast<double>(yp[i])) * total);
        }
      });
    });
    return {dx};
  }
};

struct LogsumexpDef {
  static constexpr std::string_view name = "logsumexp";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool keepdim = false;

  // The reduced axes of x (a 0-d x counts as one axis of length 1).
  Shape reduced(const Tensor& x) const {
    return kernels::reduction_axes(axes, std::max<std::int64_t>(x.dim(), 1), name);
  }

  // x's shape with the reduced axes kept as 1.
  Shape kept_shape(const Tensor& x) const {
    Shape s = x.shape();
    if (x.dim() == 0) return s;
    for (auto a : reduced(x)) s[static_cast<std::size_t>(a)] = 1;
    return s;
  }

  // Moves the reduced axes last, so that each output element reads one contiguous lane.
  Tensor forward(const Tensor& x) const {
    require_floating(x, name);
    const Shape ax = reduced(x);
    const Tensor xv = x.dim() == 0 ? x.reshape({1}) : x;
    Shape perm;
    Shape out_shape;
    std::int64_t n = 1;
    std::int64_t outer = 1;
    for (std::int64_t i = 0; i < xv.dim(); ++i) {
      const bool r = std::find(ax.begin(), ax.end(), i) != ax.end();
      const std::int64_t size = xv.shape()[static_cast<std::size_t>(i)];
      if (r) {
        n *= size;
        if (keepdim) out_shape.push_back(1);
      } else {
        perm.push_back(i);
        outer *= size;
        out_shape.push_back(size);
      }
    }
    for (auto a : ax) perm.push_back(a);
    if (x.dim() == 0) out_shape = Shape{};
    const Tensor in = xv.permute(perm).contiguous();
    Tensor out = Tensor::empty(out_shape, x.dtype());
    dispatch_floating(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = in.data<T>();
      T* o = out.data<T>();
      const Lanes l{outer, n, 1};
      for_each_lane(l, [&](std::int64_t start, std::int64_t k) {
        const T shift = lane_shift(p + start, n, 1);
        o[k] =
            static_cast<T>(static_cast<double>(shift) + std::log(lane_sum_exp(p + start, n, 1, shift)));
      });
    });
    return out;
  }

  // dx = g * exp(x - out), g and out broadcast back over the reduced axes.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& x = c.in(0);
    const Shape kept = kept_shape(x);
    const Tensor g = c.grad.reshape(kept);
    const Tensor out = c.output.reshape(kept);
    return {dispatch_floating(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      return kernels::map<T, 3>(
          {g, x, out}, [](T gi, T xi, T oi) { return gi * std::exp(xi - oi); }, name);
    })};
  }
};

}  // namespace

NodeRef softmax(const NodeRef& x, std::int64_t axis) { return apply(SoftmaxDef{axis}, x); }
NodeRef log_softmax(const NodeRef& x, std::int64_t axis) { return apply(LogSoftmaxDef{axis}, x); }
NodeRef logsumexp(const NodeRef& x, const Shape& axes, bool keepdim) {
  return apply(LogsumexpDef{axes, keepdim}, x);
}

}  // namespace zkynet::op
