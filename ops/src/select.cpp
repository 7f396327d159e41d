// clamp, maximum, minimum, max, argmax, var and std: forward and VJP side by side, with
// torch 1.13's conventions at ties, bounds and NaNs (see select.h).
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/select.h>
#include <zkynet/ops/strided.h>

#include "kernels/accumulate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

namespace zkynet::op {

namespace {

std::string describe(const Tensor& t) { return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())); }

template <class T>
bool is_nan(T v) {
  return v != v;  // NOLINT: false for integers
}

// ---- clamp -------------------------------------------------------------------------------

// A bound in x's element type; for int64, bounds beyond its range saturate (no UB cast).
template <class T>
T bound_as(double v) {
  if constexpr (std::is_integral_v<T>) {
    constexpr double top = 9223372036854775807.0;  // 2^63: rounds up from INT64_MAX
    if (v >= top) return std::numeric_limits<T>::max();
    if (v < -top) return std::numeric_limits<T>::min();
  }
  return static_cast<T>(v);
}

struct ClampDef {
  static constexpr std::string_view name = "clamp";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::optional<double> lo;
  std::optional<double> hi;

  void check(const Tensor& x) const {
    if (!lo && !hi) throw UsageError("clamp: at least one of min and max must be given");
    if (is_floating(x.dtype())) return;
    for (const auto& bound : {lo, hi}) {
      if (bound && *bound != std::trunc(*bound)) {
        throw TypeError("clamp: x " + describe(x) + " and the fractional bound " + std::to_string(*bound) +
                        ": torch would promote to floating point; convert x with .to()");
      }
    }
  }

  Tensor forward(const Tensor& x) const {
    check(x);
    return dispatch_dtype(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const bool has_lo = lo.has_value();
      const bool has_hi = hi.has_value();
      const T l = has_lo ? bound_as<T>(*lo) : T(0);
      const T h = has_hi ? bound_as<T>(*hi) : T(0);
      // As torch 1.13: with both bounds given, a NaN bound makes every value NaN (it was left
      // out); a lone NaN bound changes nothing.
      const bool nan_bound = has_lo && has_hi && (is_nan(l) || is_nan(h));
      return kernels::map<T, 1>(
          {x},
          [=](T v) {
            if (is_nan(v) || nan_bound) return nan_bound ? std::numeric_limits<T>::quiet_NaN() : v;
            if (has_lo && v < l) v = l;
            if (has_hi && v > h) v = h;
            return v;
          },
          name);
    });
  }

  // The gradient where min <= x <= max (bounds included, NaN excluded), else 0.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    return {dispatch_floating(c.in(0).dtype(), [&](auto zero) {
      using T = decltype(zero);
      const bool has_lo = lo.has_value();
      const bool has_hi = hi.has_value();
      const T l = has_lo ? static_cast<T>(*lo) : T(0);
      const T h = has_hi ? static_cast<T>(*hi) : T(0);
      return kernels::map<T, 2>(
          {c.grad, c.in(0)},
          [=](T g, T v) { return (!has_lo || v >= l) && (!has_hi || v <= h) && !is_nan(v) ? g : T(0); }, name);
    })};
  }
};

// ---- maximum, minimum --------------------------------------------------------------------

// Elementwise max (Larger = true) or min of a and b, NaN-propagating; the gradient is split
// in halves on ties, as torch 1.13 does. Where either is NaN, both receive it (torch too).
template <bool Larger>
struct ExtremumDef {
  static constexpr std::string_view name = Larger ? "maximum" : "minimum";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};

  template <class T>
  static bool beats(T x, T y) {
    return Larger ? x > y : x < y;
  }

  Tensor forward(const Tensor& a, const Tensor& b) const {
    return dispatch_dtype(kernels::result_dtype(a, b, name), [&](auto zero) {
      using T = decltype(zero);
      return kernels::map<T, 2>(
          {a, b},
          [](T x, T y) {
            if (is_nan(x)) return x;
            if (is_nan(y)) return y;
            return beats(y, x) ? y : x;
          },
          name);
    });
  }

  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const bool need_a = c.needs[0] && is_floating(c.in(0).dtype());
    const bool need_b = c.needs[1] && is_floating(c.in(1).dtype());
    if (!need_a && !need_b) return {Tensor(), Tensor()};
    return dispatch_floating(c.grad.dtype(), [&](auto zero) -> std::array<Tensor, 2> {
      using T = decltype(zero);
      // Share of the gradient that goes to the first of (x, y).
      const auto share = [](T g, T x, T y) { return x == y ? g / T(2) : beats(y, x) ? T(0) : g; };
      Tensor da;
      Tensor db;
      if (need_a) {
        da = kernels::map<T, 3>({c.grad, c.in(0), c.in(1)}, share, name);
        da = kernels::sum_to(da, c.in(0).shape()).to(c.in(0).dtype());
      }
      if (need_b) {
        db = kernels::map<T, 3>({c.grad, c.in(1), c.in(0)}, share, name);
        db = kernels::sum_to(db, c.in(1).shape()).to(c.in(1).dtype());
      }
      return {da, db};
    });
  }
};

// ---- max, argmax -------------------------------------------------------------------------

// A contiguous tensor seen as outer x n x inner around the reduced axis.
struct Lanes {
  std::int64_t outer = 1;
  std::int64_t n = 1;
  std::int64_t inner = 1;
  Shape out_shape;  // the reduced shape (keepdim as asked)
};

// The lanes along `axis` of x; a 0-d x is one lane of one element, as in torch.
Lanes lanes_along(const Tensor& x, std::int64_t axis, bool keepdim, std::string_view op) {
  const std::int64_t a = kernels::reduction_axes({axis}, std::max<std::int64_t>(x.dim(), 1), op)[0];
  Lanes l;
  if (x.dim() == 0) return l;
  const Shape& s = x.shape();
  for (std::int64_t i = 0; i < x.dim(); ++i) {
    const std::int64_t d = s[static_cast<std::size_t>(i)];
    if (i < a) l.outer *= d;
    if (i > a) l.inner *= d;
    if (i == a) {
      l.n = d;
      if (keepdim) l.out_shape.push_back(1);
    } else {
      l.out_shape.push_back(d);
    }
  }
  if (l.n == 0) {
    throw IndexError(std::string(op) + " " + shape_str(s) + ": cannot reduce axis " + std::to_string(axis) +
                     " of size 0");
  }
  return l;
}

// The position in each lane of its first maximum (or first NaN), for lanes k = 0, 1, ...
template <class T>
std::vector<std::int64_t> lane_argmax(const T* p, const Lanes& l) {
  std::vector<std::int64_t> best(static_cast<std::size_t>(l.outer * l.inner));
  for (std::int64_t k = 0; k < l.outer * l.inner; ++k) {
    const T* lane = p + (k / l.inner) * l.n * l.inner + k % l.inner;
    std::int64_t b = 0;
    for (std::int64_t j = 1; j < l.n && !is_nan(lane[b * l.inner]); ++j) {
      const T v = lane[j * l.inner];
      if (is_nan(v) || v > lane[b * l.inner]) b = j;
    }
    best[static_cast<std::size_t>(k)] = b;
  }
  return best;
}

struct MaxDef {
  static constexpr std::string_view name = "max";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const {
    const Lanes l = lanes_along(x, axis, keepdim, name);
    const Tensor in = x.contiguous();
    Tensor out = Tensor::empty(l.out_shape, x.dtype());
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

  // The gradient goes to the element argmax picks; the rest get 0.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& x = c.in(0);
    if (!is_floating(x.dtype())) return {Tensor()};
    const Lanes l = lanes_along(x, axis, keepdim, name);
    const Tensor in = x.contiguous();
    const Tensor g = c.grad.contiguous();
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
    return {dx};
  }
};

struct ArgmaxDef {
  static constexpr std::string_view name = "argmax";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const {
    const Lanes l = lanes_along(x, axis, keepdim, name);
    const Tensor in = x.contiguous();
    const auto best = dispatch_dtype(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      return lane_argmax(in.data<T>(), l);
    });
    return Tensor::from_vector(best, l.out_shape);
  }

  // Positions are piecewise constant: no gradient.
  std::array<Tensor, 1> vjp(const VjpContext<1>&) const { return {Tensor()}; }
};

// ---- var, std ----------------------------------------------------------------------------

// var's and std's shared geometry: the reduced axes and the element count per output.
struct Spread {
  Shape axes;      // normalized reduced axes (a 0-d x has {0})
  Shape kept;      // x's shape with reduced axes as 1 (x's shape when 0-d)
  Shape out;       // the output shape (keepdim as asked)
  std::int64_t n;  // elements per output
};

Spread spread_of(const Tensor& x, const Shape& axes, bool keepdim, std::string_view op) {
  if (!is_floating(x.dtype())) {
    throw TypeError(std::string(op) + " " + shape_str(x.shape()) + ": needs a floating-point tensor, got " +
                    std::string(dtype_name(x.dtype())));
  }
  Spread s;
  s.axes = kernels::reduction_axes(axes, std::max<std::int64_t>(x.dim(), 1), op);
  s.kept = x.shape();
  s.n = 1;
  for (std::int64_t i = 0; i < x.dim(); ++i) {
    const bool r = std::find(s.axes.begin(), s.axes.end(), i) != s.axes.end();
    const std::int64_t d = x.shape()[static_cast<std::size_t>(i)];
    if (r) {
      s.n *= d;
      s.kept[static_cast<std::size_t>(i)] = 1;
      if (keepdim) s.out.push_back(1);
    } else {
      s.out.push_back(d);
    }
  }
  return s;
}

// The divisor of the summed squared deviations: N - 1 (unbiased) or N, never negative.
double divisor(std::int64_t n, bool unbiased) {
  return static_cast<double>(std::max<std::int64_t>(0, n - (unbiased ? 1 : 0)));
}

// Variance over the reduced axes, two-pass per lane, summed as kernels/accumulate.h says
// (square root for std).
Tensor variance(const Tensor& x, const Spread& s, bool unbiased, bool root) {
  Shape perm;
  for (std::int64_t i = 0; i < x.dim(); ++i) {
    if (std::find(s.axes.begin(), s.axes.end(), i) == s.axes.end()) perm.push_back(i);
  }
  if (x.dim() > 0) {
    for (auto a : s.axes) perm.push_back(a);
  }
  const Tensor in = x.permute(perm).contiguous();
  Tensor out = Tensor::empty(s.out, x.dtype());
  const double den = divisor(s.n, unbiased);
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = in.data<T>();
    T* o = out.data<T>();
    for (std::int64_t k = 0; k < out.numel(); ++k) {
      const T* lane = p + k * s.n;
      const double mean = kernels::detail::strided_sum(lane, s.n, 1) / static_cast<double>(s.n);
      const double ss = kernels::detail::pairwise_sum<double>(0, s.n, [&](std::int64_t j) {
        const double dev = static_cast<double>(lane[j]) - mean;
        return dev * dev;
      });
      const double v = ss / den;
      o[k] = static_cast<T>(root ? std::sqrt(v) : v);
    }
  });
  return out;
}

// d var / dx = 2 (x - mean) / divisor, times `grad` (reshaped to the kept shape).
Tensor variance_backward(const Tensor& grad, const Tensor& x, const Spread& s, bool unbiased) {
  const Tensor g = grad.reshape(s.kept);
  const Tensor mean = kernels::mean(x, x.dim() == 0 ? Shape{} : s.axes, true);
  const double den = divisor(s.n, unbiased);
  return dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T scale = static_cast<T>(2.0 / den);
    return kernels::map<T, 3>({g, x, mean}, [scale](T gi, T xi, T m) { return scale * gi * (xi - m); }, "var");
  });
}

struct VarDef {
  static constexpr std::string_view name = "var";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool unbiased = true;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const { return variance(x, spread_of(x, axes, keepdim, name), unbiased, false); }

  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {variance_backward(c.grad, c.in(0), spread_of(c.in(0), axes, keepdim, name), unbiased)};
  }
};

struct StdDef {
  static constexpr std::string_view name = "std";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool unbiased = true;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const { return variance(x, spread_of(x, axes, keepdim, name), unbiased, true); }

  // d std = d var / (2 std), and 0 where std is 0 (torch's convention).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Spread s = spread_of(c.in(0), axes, keepdim, name);
    const Tensor g = c.grad.reshape(s.kept);
    const Tensor out = c.output.reshape(s.kept);
    const Tensor gvar = dispatch_floating(c.output.dtype(), [&](auto zero) {
      using T = decltype(zero);
      return kernels::map<T, 2>({g, out}, [](T gi, T sd) { return sd == T(0) ? T(0) : gi / (T(2) * sd); }, name);
    });
    return {variance_backward(gvar, c.in(0), s, unbiased)};
  }
};

}  // namespace

NodeRef clamp(const NodeRef& x, std::optional<double> min, std::optional<double> max) {
  return apply(ClampDef{min, max}, x);
}
NodeRef maximum(const NodeRef& a, const NodeRef& b) { return apply(ExtremumDef<true>{}, a, b); }
NodeRef minimum(const NodeRef& a, const NodeRef& b) { return apply(ExtremumDef<false>{}, a, b); }
NodeRef max(const NodeRef& x, std::int64_t axis, bool keepdim) { return apply(MaxDef{axis, keepdim}, x); }
NodeRef argmax(const NodeRef& x, std::int64_t axis, bool keepdim) { return apply(ArgmaxDef{axis, keepdim}, x); }
NodeRef var(const NodeRef& x, const Shape& axes, bool unbiased, bool keepdim) {
  return apply(VarDef{axes, unbiased, keepdim}, x);
}
NodeRef std(const NodeRef& x, const Shape& axes, bool unbiased, bool keepdim) {
  return apply(StdDef{axes, unbiased, keepdim}, x);
}

}  // namespace zkynet::op
