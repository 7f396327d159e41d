// layer_norm, batch_norm and dropout: forward and VJP side by side, the loops in
// kernels/normalization.cpp (and kernels/cuda/normalization.cu for CUDA tensors).
//
// Both norms see their input as groups of elements sharing one mean and variance (see
// kernels/normalization.h): layer_norm's groups are the rows, each of prod(normalized_shape)
// elements, weight indexed along them; batch_norm's are the channels, weight indexed by channel.
// With xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) and dxhat = grad * weight, the
// input gradient under batch statistics is
//   dx = rstd * (dxhat - mean_group(dxhat) - xhat * mean_group(dxhat * xhat)),
// and rstd * dxhat under fixed (running) statistics; dweight = sum grad * xhat, dbias = sum grad
// over everything a weight entry touches. The forward keeps mean and rstd (float64, one per
// group) in the operator's definition for the VJP.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/normalization.h>

#include "kernels/normalization.h"
#include "kernels/random.h"

#include <algorithm>
#include <array>
#include <string>
#include <utility>

namespace zkynet::op {

namespace {

std::string describe(const Tensor& t) { return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())); }

void require_floating(const Tensor& x, std::string_view op, std::string_view what) {
  if (!is_floating(x.dtype())) {
    throw TypeError(std::string(op) + ": " + std::string(what) + " " + describe(x) +
                    " must be float32 or float64");
  }
}

using kernels::AffineAxis;
using kernels::NormGrads;
using Groups = kernels::NormGroups;

// An optional operand as the kernels take it: undefined when absent.
Tensor or_none(const Tensor* t) { return t ? *t : Tensor(); }

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
  mutable Tensor mean;  // per row (float64), kept by forward for the VJP
  mutable Tensor rstd;

  template <class... P>
  Tensor forward(const Tensor& x_in, const P&... params) const {
    const auto [w, b] = affine_operands<W, B>(params...);
    const Groups l = layer_norm_groups(x_in, normalized_shape, w, b);
    const Tensor x = x_in.contiguous();
    kernels::Moments m = kernels::moments(x, l, name);
    mean = std::move(m.mean);
    rstd = kernels::inverse_std(m.var, eps, name);
    return kernels::normalize(x, or_none(w), or_none(b), l, AffineAxis::Inner, mean, rstd, name);
  }

  std::array<Tensor, 1 + W + B> vjp(const VjpContext<1 + W + B>& c) const {
    const Tensor* w = context_weight<W, B>(c);
    const Groups l = layer_norm_groups(c.in(0), normalized_shape, w, nullptr);
    return affine_grads<W, B>(kernels::normalize_backward(c.grad, c.in(0), or_none(w), l, AffineAxis::Inner, mean,
                                                          rstd, true, affine_needs<W, B>(c), name),
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

template <bool W, bool B>
struct BatchNormDef {
  static constexpr std::string_view name = "batch_norm";
  static constexpr auto inputs = affine_inputs<W, B>();
  Tensor running_mean;  // shared with the caller: updated in place in training mode
  Tensor running_var;
  bool training = false;
  double momentum = 0.1;
  double eps = 1e-5;
  mutable Tensor mean;  // per channel (float64): the statistics the forward used
  mutable Tensor rstd;

  bool has_side_effects() const { return training && running_mean.defined(); }

  template <class... P>
  Tensor forward(const Tensor& x_in, const P&... params) const {
    const auto [w, b] = affine_operands<W, B>(params...);
    const Groups l = batch_norm_groups(x_in, running_mean, running_var, w, b, training);
    const Tensor x = x_in.contiguous();
    if (training) {
      kernels::Moments m = kernels::moments(x, l, name);
      rstd = kernels::inverse_std(m.var, eps, name);
      if (running_mean.defined()) kernels::update_running_stats(running_mean, running_var, m, l.count(), momentum, name);
      mean = std::move(m.mean);
    } else {
      // Copies: the running statistics may change before the VJP runs.
      mean = running_mean.clone().to(DType::Float64);
      rstd = kernels::inverse_std(running_var, eps, name);
    }
    return kernels::normalize(x, or_none(w), or_none(b), l, AffineAxis::Group, mean, rstd, name);
  }

  std::array<Tensor, 1 + W + B> vjp(const VjpContext<1 + W + B>& c) const {
    const Tensor* w = context_weight<W, B>(c);
    Groups l;
    l.outer = c.in(0).size(0);
    l.groups = c.in(0).size(1);
    for (std::int64_t d = 2; d < c.in(0).dim(); ++d) l.inner *= c.in(0).size(d);
    return affine_grads<W, B>(kernels::normalize_backward(c.grad, c.in(0), or_none(w), l, AffineAxis::Group, mean,
                                                          rstd, training, affine_needs<W, B>(c), name),
                              Shape{l.groups});
  }
};

// ---- dropout -------------------------------------------------------------------------------

struct DropoutDef {
  static constexpr std::string_view name = "dropout";
  static constexpr std::array<std::string_view, 1> inputs{"input"};
  Tensor mask;  // 0 or 1 / (1 - p), shaped and typed like the input
  static constexpr std::string_view capture_refusal =
      "dropout draws a fresh random mask at every call; a replay would reuse the captured one";

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
