// layer_norm, batch_norm and dropout: forward and VJP side by side.
//
// Both norms see their input as groups of elements sharing one mean and variance: element
// (n, g, s) lies at (n * groups + g) * inner + s, and group g holds outer * inner elements.
//   layer_norm: outer = 1, groups = the rows, inner = prod(normalized_shape); weight indexed by s
//   batch_norm: outer = N, groups = C, inner = H * W ...;                     weight indexed by g
// With xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) and dxhat = grad * weight, the
// input gradient under batch statistics is
//   dx = rstd * (dxhat - mean_group(dxhat) - xhat * mean_group(dxhat * xhat)),
// and rstd * dxhat under fixed (running) statistics; dweight = sum grad * xhat, dbias = sum grad
// over everything a weight entry touches. The forward keeps mean and rstd (in double, one per
// group) in the operator's definition for the VJP.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/normalization.h>

#include "kernels/random.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace zkynet::op {

namespace {

std::string describe(const Tensor& t) { return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())); }

void require_floating(const Tensor& x, std::string_view op, std::string_view what) {
  if (!is_floating(x.dtype())) {
    throw TypeError(std::string(op) + ": " + std::string(what) + " " + describe(x) +
                    " must be float32 or float64");
  }
}

// ---- grouped statistics, shared by both norms ---------------------------------------------

struct Groups {
  std::int64_t outer = 1;
  std::int64_t groups = 1;
  std::int64_t inner = 1;
  std::int64_t count() const { return outer * inner; }  // elements per group
};

// Which index a weight / bias entry follows: s (layer_norm) or g (batch_norm).
enum class AffineAxis { Inner, Group };

// Calls f(i, s) for every element i of group g (s: its position along the inner axis).
template <class F>
void for_group(const Groups& l, std::int64_t g, F&& f) {
  for (std::int64_t n = 0; n < l.outer; ++n) {
    const std::int64_t base = (n * l.groups + g) * l.inner;
    for (std::int64_t s = 0; s < l.inner; ++s) f(base + s, s);
  }
}

// Calls body(g) for every group, groups split across the thread pool.
template <class Body>
void for_each_group(const Groups& l, Body&& body) {
  const std::int64_t grain = std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(l.count(), 1));
  parallel_for(
      l.groups,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t g = begin; g < end; ++g) body(g);
      },
      grain);
}

// The mean and biased variance of every group (two passes, in double). x is contiguous.
void moments(const Tensor& x, const Groups& l, std::vector<double>& mean, std::vector<double>& var) {
  mean.assign(static_cast<std::size_t>(l.groups), 0.0);
  var.assign(static_cast<std::size_t>(l.groups), 0.0);
  const double n = static_cast<double>(l.count());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    for_each_group(l, [&](std::int64_t g) {
      double sum = 0.0;
      for_group(l, g, [&](std::int64_t i, std::int64_t) { sum += static_cast<double>(p[i]); });
      const double m = sum / n;
      double sq = 0.0;
      for_group(l, g, [&](std::int64_t i, std::int64_t) {
        const double d = static_cast<double>(p[i]) - m;
        sq += d * d;
      });
      mean[static_cast<std::size_t>(g)] = m;
      var[static_cast<std::size_t>(g)] = sq / n;
    });
  });
}

std::vector<double> inverse_std(const std::vector<double>& var, double eps) {
  std::vector<double> rstd(var.size());
  for (std::size_t g = 0; g < var.size(); ++g) rstd[g] = 1.0 / std::sqrt(var[g] + eps);
  return rstd;
}

// y = (x - mean) * rstd * weight + bias; weight and bias may be null. x is contiguous.
Tensor normalize(const Tensor& x, const Tensor* weight, const Tensor* bias, const Groups& l, AffineAxis axis,
                 const std::vector<double>& mean, const std::vector<double>& rstd) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const Tensor w = weight ? weight->contiguous() : Tensor();
  const Tensor b = bias ? bias->contiguous() : Tensor();
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    const T* wp = weight ? w.data<T>() : nullptr;
    const T* bp = bias ? b.data<T>() : nullptr;
    T* y = out.data<T>();
    for_each_group(l, [&](std::int64_t g) {
      const double m = mean[static_cast<std::size_t>(g)];
      const double r = rstd[static_cast<std::size_t>(g)];
      for_group(l, g, [&](std::int64_t i, std::int64_t s) {
        const std::int64_t k = axis == AffineAxis::Inner ? s : g;
        double v = (static_cast<double>(p[i]) - m) * r;
        if (wp) v *= static_cast<double>(wp[k]);
        if (bp) v += static_cast<double>(bp[k]);
        y[i] = static_cast<T>(v);
      });
    });
  });
  return out;
}

struct NormGrads {
  Tensor input, weight, bias;  // undefined where not asked for
};

// The gradients of normalize() given its output's gradient; `batch_stats`: whether mean and
// rstd were the input's own statistics (so that they depend on it) or fixed ones.
NormGrads normalize_backward(const Tensor& grad_in, const Tensor& x_in, const Tensor* weight, const Groups& l,
                             AffineAxis axis, const std::vector<double>& mean, const std::vector<double>& rstd,
                             bool batch_stats, std::array<bool, 3> needs) {
  const Tensor grad = grad_in.contiguous();
  const Tensor x = x_in.contiguous();
  const Tensor w = weight ? weight->contiguous() : Tensor();
  const std::int64_t affine_size = axis == AffineAxis::Inner ? l.inner : l.groups;
  NormGrads out;
  if (needs[0]) out.input = Tensor::empty(x.shape(), x.dtype());
  if (needs[1]) out.weight = Tensor::empty({affine_size}, x.dtype());
  if (needs[2]) out.bias = Tensor::empty({affine_size}, x.dtype());
  const double n = static_cast<double>(l.count());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = grad.data<T>();
    const T* xp = x.data<T>();
    const T* wp = weight ? w.data<T>() : nullptr;
    auto xhat = [&](std::int64_t i, std::int64_t g) {
      return (static_cast<double>(xp[i]) - mean[static_cast<std::size_t>(g)]) * rstd[static_cast<std::size_t>(g)];
    };
    auto wt = [&](std::int64_t k) { return wp ? static_cast<double>(wp[k]) : 1.0; };
    if (needs[0]) {
      T* dx = out.input.data<T>();
      for_each_group(l, [&](std::int64_t g) {
        const double r = rstd[static_cast<std::size_t>(g)];
        double mean_dxhat = 0.0;
        double mean_dxhat_xhat = 0.0;
        if (batch_stats) {
          for_group(l, g, [&](std::int64_t i, std::int64_t s) {
            const double d = static_cast<double>(gp[i]) * wt(axis == AffineAxis::Inner ? s : g);
            mean_dxhat += d;
            mean_dxhat_xhat += d * xhat(i, g);
          });
          mean_dxhat /= n;
          mean_dxhat_xhat /= n;
        }
        for_group(l, g, [&](std::int64_t i, std::int64_t s) {
          const double d = static_cast<double>(gp[i]) * wt(axis == AffineAxis::Inner ? s : g);
          dx[i] = static_cast<T>(batch_stats ? r * (d - mean_dxhat - xhat(i, g) * mean_dxhat_xhat) : r * d);
        });
      });
    }
    if (!needs[1] && !needs[2]) return;
    T* dw = needs[1] ? out.weight.data<T>() : nullptr;
    T* db = needs[2] ? out.bias.data<T>() : nullptr;
    if (axis == AffineAxis::Group) {
      for_each_group(l, [&](std::int64_t g) {
        double sw = 0.0;
        double sb = 0.0;
        for_group(l, g, [&](std::int64_t i, std::int64_t) {
          sw += static_cast<double>(gp[i]) * xhat(i, g);
          sb += static_cast<double>(gp[i]);
        });
        if (dw) dw[g] = static_cast<T>(sw);
        if (db) db[g] = static_cast<T>(sb);
      });
      return;
    }
    // AffineAxis::Inner: entry s sums over every (n, g).
    const std::int64_t rows = l.outer * l.groups;
    parallel_for(
        l.inner,
        [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t s = begin; s < end; ++s) {
            double sw = 0.0;
            double sb = 0.0;
            for (std::int64_t row = 0; row < rows; ++row) {
              const std::int64_t i = row * l.inner + s;
              sw += static_cast<double>(gp[i]) * xhat(i, row % l.groups);
              sb += static_cast<double>(gp[i]);
            }
            if (dw) dw[s] = static_cast<T>(sw);
            if (db) db[s] = static_cast<T>(sb);
          }
        },
        std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(rows, 1)));
  });
  return out;
}

// ---- optional weight and bias --------------------------------------------------------------

// The input names of a norm with or without weight and bias.
template <bool W, bool B>
constexpr auto affine_inputs() {
  if constexpr (W && B) {
    return std::array<std::string_view, 3>{"input", "weight", "bias"};
  } else if constexpr (W) {
    return std::array<std::string_view, 2>{"input", "weight"};
  } else if constexpr (B) {
    return std::array<std::string_view, 2>{"input", "bias"};
  } else {
    return std::array<std::string_view, 1>{"input"};
  }
}

// weight and bias among the operands after the input (null when absent).
template <bool W, bool B, class... P>
std::pair<const Tensor*, const Tensor*> affine_operands(const P&... params) {
  static_assert(sizeof...(P) == std::size_t{W} + std::size_t{B});
  const std::array<const Tensor*, sizeof...(P) + 1> p{&params..., nullptr};
  return {W ? p[0] : nullptr, B ? p[W ? 1 : 0] : nullptr};
}

// Maps {input, weight, bias} gradients onto the operator's inputs.
template <bool W, bool B>
std::array<Tensor, 1 + W + B> affine_grads(NormGrads g, const Shape& affine_shape) {
  std::array<Tensor, 1 + W + B> out;
  out[0] = std::move(g.input);
  if constexpr (W) out[1] = g.weight.defined() ? g.weight.reshape(affine_shape) : Tensor();
  if constexpr (B) out[W ? 2 : 1] = g.bias.defined() ? g.bias.reshape(affine_shape) : Tensor();
  return out;
}

template <bool W, bool B, std::size_t N>
std::array<bool, 3> affine_needs(const VjpContext<N>& c) {
  return {c.needs[0], W && c.needs[1], B && c.needs[W ? 2 : 1]};
}

template <bool W, bool B, std::size_t N>
const Tensor* context_weight(const VjpContext<N>& c) {
  if constexpr (W) {
    return &c.in(1);
  } else {
    return nullptr;
  }
}

// weight or bias: `want` shape and the input's dtype.
void check_affine(const Tensor* t, std::string_view what, const Shape& want, const Tensor& x, std::string_view op,
                  std::string_view want_name) {
  if (!t) return;
  if (t->shape() != want) {
    throw ShapeError(std::string(op) + ": input " + shape_str(x.shape()) + " with " + std::string(what) + " " +
                     shape_str(t->shape()) + ": " + std::string(what) + " must have shape " + shape_str(want) + " (" +
                     std::string(want_name) + ")");
  }
  if (t->dtype() != x.dtype()) {
    throw TypeError(std::string(op) + ": input " + describe(x) + " and " + std::string(what) + " " + describe(*t) +
                    ": dtypes differ");
  }
}

// Applies the definition make<W, B>() builds to x and whichever of weight and bias are defined.
template <class Make>
NodeRef apply_affine(Make&& make, const NodeRef& x, const NodeRef& weight, const NodeRef& bias) {
  if (weight.defined() && bias.defined()) return apply(make.template operator()<true, true>(), x, weight, bias);
  if (weight.defined()) return apply(make.template operator()<true, false>(), x, weight);
  if (bias.defined()) return apply(make.template operator()<false, true>(), x, bias);
  return apply(make.template operator()<false, false>(), x);
}

// ---- layer_norm ----------------------------------------------------------------------------

Groups layer_norm_groups(const Tensor& x, const Shape& normalized_shape, const Tensor* w, const Tensor* b) {
  constexpr std::string_view op = "layer_norm";
  require_floating(x, op, "input");
  if (normalized_shape.empty()) {
    throw ShapeError("layer_norm: input " + shape_str(x.shape()) + ": normalized_shape must have at least one dimension");
  }
  const auto k = static_cast<std::int64_t>(normalized_shape.size());
  if (x.dim() < k || !std::equal(normalized_shape.begin(), normalized_shape.end(), x.shape().end() - k)) {
    throw ShapeError("layer_norm: input " + shape_str(x.shape()) + " does not end with normalized_shape " +
                     shape_str(normalized_shape));
  }
  check_affine(w, "weight", normalized_shape, x, op, "normalized_shape");
  check_affine(b, "bias", normalized_shape, x, op, "normalized_shape");
  Groups l;
  l.inner = shape_numel(normalized_shape);
  l.groups = shape_numel(Shape(x.shape().begin(), x.shape().end() - k));
  return l;
}

template <bool W, bool B>
struct LayerNormDef {
  static constexpr std::string_view name = "layer_norm";
  static constexpr auto inputs = affine_inputs<W, B>();
  Shape normalized_shape;
  double eps = 1e-5;
  mutable std::vector<double> mean;  // per row, kept by forward for the VJP
  mutable std::vector<double> rstd;

  template <class... P>
  Tensor forward(const Tensor& x_in, const P&... params) const {
    const auto [w, b] = affine_operands<W, B>(params...);
    const Groups l = layer_norm_groups(x_in, normalized_shape, w, b);
    const Tensor x = x_in.contiguous();
    std::vector<double> var;
    moments(x, l, mean, var);
    rstd = inverse_std(var, eps);
    return normalize(x, w, b, l, AffineAxis::Inner, mean, rstd);
  }

  std::array<Tensor, 1 + W + B> vjp(const VjpContext<1 + W + B>& c) const {
    const Tensor* w = context_weight<W, B>(c);
    const Groups l = layer_norm_groups(c.in(0), normalized_shape, w, nullptr);
    return affine_grads<W, B>(
        normalize_backward(c.grad, c.in(0), w, l, AffineAxis::Inner, mean, rstd, true, affine_needs<W, B>(c)),
        normalized_shape);
  }
};

// ---- batch_norm ----------------------------------------------------------------------------

Groups batch_norm_groups(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor* w,
                         const Tensor* b, bool training) {
  constexpr std::string_view op = "batch_norm";
  require_floating(x, op, "input");
  if (x.dim() < 2) {
    throw ShapeError("batch_norm: input " + shape_str(x.shape()) +
                     " must have at least 2 dimensions (N, C, ...), channels on axis 1");
  }
  Groups l;
  l.outer = x.size(0);
  l.groups = x.size(1);
  for (std::int64_t d = 2; d < x.dim(); ++d) l.inner *= x.size(d);
  const Shape channels{l.groups};
  if (running_mean.defined() != running_var.defined()) {
    throw UsageError("batch_norm: running_mean and running_var must both be given or both be left out");
  }
  for (const auto& [t, what] : {std::pair{&running_mean, "running_mean"}, std::pair{&running_var, "running_var"}}) {
    if (!t->defined()) continue;
    if (t->shape() != channels) {
      throw ShapeError("batch_norm: input " + shape_str(x.shape()) + " has " + std::to_string(l.groups) +
                       " channels but " + what + " has shape " + shape_str(t->shape()) + " (must be " +
                       shape_str(channels) + ")");
    }
    require_floating(*t, op, what);
  }
  if (!training && !running_mean.defined()) {
    throw UsageError("batch_norm: input " + shape_str(x.shape()) +
                     ": evaluation mode (training = false) needs running_mean and running_var");
  }
  if (training && l.count() <= 1) {
    throw ShapeError("batch_norm: input " + shape_str(x.shape()) +
                     ": training needs more than 1 value per channel to compute batch statistics");
  }
  check_affine(w, "weight", channels, x, op, "one per channel");
  check_affine(b, "bias", channels, x, op, "one per channel");
  return l;
}

// t = (1 - momentum) t + momentum v, in place (t: 1-d, any stride, float32 or float64).
void blend_into(const Tensor& t, const std::vector<double>& v, double momentum) {
  dispatch_floating(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    const std::int64_t stride = t.strides()[0];
    for (std::size_t c = 0; c < v.size(); ++c) {
      T& r = p[static_cast<std::int64_t>(c) * stride];
      r = static_cast<T>((1.0 - momentum) * static_cast<double>(r) + momentum * v[c]);
    }
  });
}

template <bool W, bool B>
struct BatchNormDef {
  static constexpr std::string_view name = "batch_norm";
  static constexpr auto inputs = affine_inputs<W, B>();
  Tensor running_mean;  // shared with the caller: updated in place in training mode
  Tensor running_var;
  bool training = false;
  double momentum = 0.1;
  double eps = 1e-5;
  mutable std::vector<double> mean;  // per channel: the statistics the forward used
  mutable std::vector<double> rstd;

  template <class... P>
  Tensor forward(const Tensor& x_in, const P&... params) const {
    const auto [w, b] = affine_operands<W, B>(params...);
    const Groups l = batch_norm_groups(x_in, running_mean, running_var, w, b, training);
    const Tensor x = x_in.contiguous();
    if (training) {
      std::vector<double> var;
      moments(x, l, mean, var);
      rstd = inverse_std(var, eps);
      if (running_mean.defined()) {
        const double n = static_cast<double>(l.count());
        std::vector<double> unbiased(var.size());
        for (std::size_t c = 0; c < var.size(); ++c) unbiased[c] = var[c] * n / (n - 1.0);
        blend_into(running_mean, mean, momentum);
        blend_into(running_var, unbiased, momentum);
      }
    } else {
      mean = running_mean.to_doubles();
      rstd = inverse_std(running_var.to_doubles(), eps);
    }
    return normalize(x, w, b, l, AffineAxis::Group, mean, rstd);
  }

  std::array<Tensor, 1 + W + B> vjp(const VjpContext<1 + W + B>& c) const {
    const Tensor* w = context_weight<W, B>(c);
    Groups l;
    l.outer = c.in(0).size(0);
    l.groups = c.in(0).size(1);
    for (std::int64_t d = 2; d < c.in(0).dim(); ++d) l.inner *= c.in(0).size(d);
    return affine_grads<W, B>(
        normalize_backward(c.grad, c.in(0), w, l, AffineAxis::Group, mean, rstd, training, affine_needs<W, B>(c)),
        Shape{l.groups});
  }
};

// ---- dropout -------------------------------------------------------------------------------

struct DropoutDef {
  static constexpr std::string_view name = "dropout";
  static constexpr std::array<std::string_view, 1> inputs{"input"};
  Tensor mask;  // 0 or 1 / (1 - p), shaped and typed like the input

  Tensor forward(const Tensor& x) const { return kernels::mul(x, mask); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {kernels::mul(c.grad, mask)}; }
};

}  // namespace

NodeRef layer_norm(const NodeRef& x, const Shape& normalized_shape, const NodeRef& weight, const NodeRef& bias,
                   double eps) {
  return apply_affine(
      [&]<bool W, bool B>() { return LayerNormDef<W, B>{normalized_shape, eps, {}, {}}; }, x, weight, bias);
}

NodeRef batch_norm(const NodeRef& x, const Tensor& running_mean, const Tensor& running_var, const NodeRef& weight,
                   const NodeRef& bias, bool training, double momentum, double eps) {
  return apply_affine(
      [&]<bool W, bool B>() {
        return BatchNormDef<W, B>{running_mean, running_var, training, momentum, eps, {}, {}};
      },
      x, weight, bias);
}

NodeRef dropout(const NodeRef& x, double p, bool training, Generator& gen) {
  if (!(p >= 0.0 && p <= 1.0)) {
    throw UsageError("dropout: probability p must lie in [0, 1], got " + std::to_string(p));
  }
  const Tensor& value = x.value();
  require_floating(value, "dropout", "input");
  if (!training || p == 0.0) return x;
  const double scale = p == 1.0 ? 0.0 : 1.0 / (1.0 - p);
  // One draw from the generator keys the whole mask (counter-based: element i's number depends
  // on the key and i only), so a seed gives the same mask on every device.
  Tensor mask = kernels::dropout_mask(value.shape(), value.dtype(), value.device(), 1.0 - p, scale, gen.engine()());
  return apply(DropoutDef{std::move(mask)}, x);
}

}  // namespace zkynet::op
