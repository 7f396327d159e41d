// clamp, maximum, minimum, max, argmax, var and std: forward and VJP side by side, with
// torch 1.13's conventions at ties, bounds and NaNs (see select.h); the loops are in
// kernels/select.cpp (and cuda/select.cu).
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/select.h>

#include "kernels/select.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

namespace zkynet::op {

namespace {

std::string describe(const Tensor& t) { return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())); }

// ---- clamp -------------------------------------------------------------------------------

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
    return kernels::clamp(x, lo, hi);
  }

  // The gradient where min <= x <= max (bounds included, NaN excluded), else 0.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    return {kernels::clamp_backward(c.grad, c.in(0), lo, hi)};
  }
};

// ---- maximum, minimum --------------------------------------------------------------------

// Elementwise max (Larger = true) or min of a and b, NaN-propagating; the gradient is split
// in halves on ties, as torch 1.13 does. Where either is NaN, both receive it (torch too).
template <bool Larger>
struct ExtremumDef {
  static constexpr std::string_view name = Larger ? "maximum" : "minimum";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};

  Tensor forward(const Tensor& a, const Tensor& b) const {
    return Larger ? kernels::maximum(a, b) : kernels::minimum(a, b);
  }

  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const bool need_a = c.needs[0] && is_floating(c.in(0).dtype());
    const bool need_b = c.needs[1] && is_floating(c.in(1).dtype());
    if (!need_a && !need_b) return {Tensor(), Tensor()};
    // Each operand's share, computed against the other, summed to its shape.
    const auto share = [&](std::size_t i) {
      const Tensor g = kernels::extremum_backward(c.grad, c.in(i), c.in(1 - i), Larger);
      return kernels::sum_to(g, c.in(i).shape()).to(c.in(i).dtype());
    };
    return {need_a ? share(0) : Tensor(), need_b ? share(1) : Tensor()};
  }
};

// ---- max, argmax -------------------------------------------------------------------------

// The normalized axis of max and argmax; a 0-d x is one lane of one element, as in torch.
std::int64_t lane_axis(const Tensor& x, std::int64_t axis, std::string_view op) {
  const std::int64_t a = kernels::reduction_axes({axis}, std::max<std::int64_t>(x.dim(), 1), op)[0];
  if (x.dim() > 0 && x.shape()[static_cast<std::size_t>(a)] == 0) {
    throw IndexError(std::string(op) + " " + shape_str(x.shape()) + ": cannot reduce axis " + std::to_string(axis) +
                     " of size 0");
  }
  return a;
}

struct MaxDef {
  static constexpr std::string_view name = "max";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const { return kernels::max_along(x, lane_axis(x, axis, name), keepdim); }

  // The gradient goes to the element argmax picks; the rest get 0.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& x = c.in(0);
    if (!is_floating(x.dtype())) return {Tensor()};
    return {kernels::max_along_backward(c.grad, x, lane_axis(x, axis, name), keepdim)};
  }
};

struct ArgmaxDef {
  static constexpr std::string_view name = "argmax";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const { return kernels::argmax_along(x, lane_axis(x, axis, name), keepdim); }

  // Positions are piecewise constant: no gradient.
  std::array<Tensor, 1> vjp(const VjpContext<1>&) const { return {Tensor()}; }
};

// ---- var, std ----------------------------------------------------------------------------

// var's and std's shared geometry: the reduced axes, and x's shape with them as 1.
struct Spread {
  Shape axes;  // normalized reduced axes (a 0-d x has {0})
  Shape kept;  // x's shape with reduced axes as 1 (x's shape when 0-d)
};

Spread spread_of(const Tensor& x, const Shape& axes, std::string_view op) {
  if (!is_floating(x.dtype())) {
    throw TypeError(std::string(op) + " " + shape_str(x.shape()) + ": needs a floating-point tensor, got " +
                    std::string(dtype_name(x.dtype())));
  }
  Spread s;
  s.axes = kernels::reduction_axes(axes, std::max<std::int64_t>(x.dim(), 1), op);
  s.kept = x.shape();
  for (std::int64_t i = 0; i < x.dim(); ++i) {
    if (std::find(s.axes.begin(), s.axes.end(), i) != s.axes.end()) s.kept[static_cast<std::size_t>(i)] = 1;
  }
  return s;
}

struct VarDef {
  static constexpr std::string_view name = "var";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool unbiased = true;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const {
    const Spread s = spread_of(x, axes, name);
    return kernels::variance(x, s.axes, keepdim, unbiased, false);
  }

  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Spread s = spread_of(c.in(0), axes, name);
    return {kernels::variance_backward(c.grad.reshape(s.kept), c.in(0), s.axes, unbiased)};
  }
};

struct StdDef {
  static constexpr std::string_view name = "std";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool unbiased = true;
  bool keepdim = false;

  Tensor forward(const Tensor& x) const {
    const Spread s = spread_of(x, axes, name);
    return kernels::variance(x, s.axes, keepdim, unbiased, true);
  }

  // d std = d var / (2 std), and 0 where std is 0 (torch's convention).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Spread s = spread_of(c.in(0), axes, name);
    const Tensor gvar = kernels::std_backward(c.grad.reshape(s.kept), c.output.reshape(s.kept));
    return {kernels::variance_backward(gvar, c.in(0), s.axes, unbiased)};
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
