// Losses: forward and VJP side by side, the loops in kernels/softmax.cpp (CPU) and
// kernels/cuda/softmax.cu. cross_entropy fuses log_softmax and nll_loss (its VJP is softmax
// minus the one-hot target); binary_cross_entropy_with_logits works from the logits with
// log1p(exp(-|x|)), never forming sigmoid(x) and its logarithm.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>

#include "kernels/softmax.h"

#include <string>

namespace zkynet::op {

namespace {

std::string describe(const Tensor& t) { return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())); }

void require_floating(const Tensor& t, std::string_view op, std::string_view what) {
  if (!is_floating(t.dtype())) {
    throw TypeError(std::string(op) + ": " + std::string(what) + " " + describe(t) + " must be floating-point");
  }
}

// ---- reductions shared by the losses ------------------------------------------------------

// Combines per-element losses as `r` asks; the mean of no elements is NaN, as in PyTorch.
Tensor reduce(const Tensor& per, Reduction r) {
  switch (r) {
    case Reduction::None: return per;
    case Reduction::Sum: return kernels::sum(per);
    case Reduction::Mean: break;
  }
  const Tensor total = kernels::sum(per);
  if (per.numel() == 0) return kernels::div(total, Tensor::scalar(0.0, total.dtype()));
  return kernels::scale(total, 1.0 / static_cast<double>(per.numel()));
}

// The gradient reaching each per-element loss: the output's gradient itself (None), or the
// 0-d gradient of the reduced output, divided by the count for Mean.
Tensor per_element_grad(const Tensor& grad, std::int64_t count, Reduction r) {
  if (r != Reduction::Mean || count == 0) return grad;
  return kernels::scale(grad, 1.0 / static_cast<double>(count));
}

// ---- class targets (cross_entropy, nll_loss) ----------------------------------------------

struct ClassShape {
  std::int64_t n = 1;  // samples
  std::int64_t c = 0;  // classes
  bool batched = true;
};

// Checks scores (N, C) with target (N,), or scores (C,) with a 0-d target.
ClassShape class_shape(const Tensor& scores, const Tensor& target, std::string_view op, std::string_view what) {
  require_floating(scores, op, what);
  if (target.dtype() != DType::Int64) {
    throw TypeError(std::string(op) + ": target " + describe(target) +
                    " must be an int64 tensor of class indices");
  }
  ClassShape s;
  if (scores.dim() == 2) {
    s.n = scores.shape()[0];
    s.c = scores.shape()[1];
    if (target.shape() != Shape{s.n}) {
      throw ShapeError(std::string(op) + ": " + std::string(what) + " " + shape_str(scores.shape()) + " and target " +
                       shape_str(target.shape()) + ": target must have shape " + shape_str(Shape{s.n}));
    }
  } else if (scores.dim() == 1) {
    s.c = scores.shape()[0];
    s.batched = false;
    if (target.dim() != 0) {
      throw ShapeError(std::string(op) + ": " + std::string(what) + " " + shape_str(scores.shape()) + " and target " +
                       shape_str(target.shape()) + ": an unbatched input takes a 0-d target");
    }
  } else {
    throw ShapeError(std::string(op) + ": " + std::string(what) + " " + shape_str(scores.shape()) +
                     " must be (N, C) or (C,)");
  }
  return s;
}

// Checks that every target is a class index in [0, C) (on a device: one read back).
void check_class_indices(const Tensor& target, const ClassShape& s, std::string_view op) {
  const std::int64_t n = kernels::first_class_out_of_range(target, s.c);
  if (n < 0) return;
  const std::int64_t index = target.cpu().contiguous().data<std::int64_t>()[n];  // the error's path only
  const std::string where = s.batched ? "target[" + std::to_string(n) + "]" : std::string("target");
  throw IndexError(std::string(op) + ": class index " + std::to_string(index) + " (" + where +
                   ") is out of range for C = " + std::to_string(s.c) + " classes");
}

// The scores as (N, C) and the target as (N,): an unbatched pair is one sample.
Tensor as_rows(const Tensor& scores, const ClassShape& s) { return s.batched ? scores : scores.reshape({1, s.c}); }
Tensor as_samples(const Tensor& target, const ClassShape& s) { return s.batched ? target : target.reshape({1}); }
// The kernels' per-sample result (N,) as the loss's shape: a 0-d loss for an unbatched pair.
Tensor per_sample(const Tensor& per, const ClassShape& s) { return s.batched ? per : per.reshape({}); }

struct CrossEntropyDef {
  static constexpr std::string_view name = "cross_entropy";
  static constexpr std::array<std::string_view, 2> inputs{"logits", "target"};
  Reduction reduction = Reduction::Mean;

  // loss_n = log(sum_j exp(x_nj - m_n)) - (x_n,t_n - m_n), m_n the row's maximum.
  Tensor forward(const Tensor& logits, const Tensor& target) const {
    const ClassShape s = class_shape(logits, target, name, "logits");
    check_class_indices(target, s, name);
    const Tensor per = kernels::cross_entropy(as_rows(logits, s), as_samples(target, s));
    return reduce(per_sample(per, s), reduction);
  }

  // dx_nj = g_n * (softmax(x_n)_j - [j == t_n]).
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    if (!c.needs[0]) return {Tensor(), Tensor()};
    const ClassShape s = class_shape(c.in(0), c.in(1), name, "logits");
    check_class_indices(c.in(1), s, name);
    const Tensor dx = kernels::cross_entropy_backward(as_rows(c.in(0), s), as_samples(c.in(1), s), c.grad,
                                                      reduction == Reduction::Mean);
    return {s.batched ? dx : dx.reshape({s.c}), Tensor()};
  }
};

struct NllLossDef {
  static constexpr std::string_view name = "nll_loss";
  static constexpr std::array<std::string_view, 2> inputs{"log_probs", "target"};
  Reduction reduction = Reduction::Mean;

  // loss_n = -log_probs[n, t_n].
  Tensor forward(const Tensor& log_probs, const Tensor& target) const {
    const ClassShape s = class_shape(log_probs, target, name, "log_probs");
    check_class_indices(target, s, name);
    const Tensor per = kernels::nll_loss(as_rows(log_probs, s), as_samples(target, s));
    return reduce(per_sample(per, s), reduction);
  }

  // dx = -g_n at [n, t_n], zero elsewhere.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    if (!c.needs[0]) return {Tensor(), Tensor()};
    const ClassShape s = class_shape(c.in(0), c.in(1), name, "log_probs");
    check_class_indices(c.in(1), s, name);
    const Tensor dx = kernels::nll_loss_backward(as_rows(c.in(0), s), as_samples(c.in(1), s), c.grad,
                                                 reduction == Reduction::Mean);
    return {s.batched ? dx : dx.reshape({s.c}), Tensor()};
  }
};

// ---- elementwise losses (mse_loss, binary_cross_entropy_with_logits) ----------------------

// Input and target: floating, same dtype, same shape.
void check_pair(const Tensor& input, const Tensor& target, std::string_view op) {
  require_floating(input, op, "input");
  require_floating(target, op, "target");
  if (input.shape() != target.shape()) {
    throw ShapeError(std::string(op) + ": input " + shape_str(input.shape()) + " and target " +
                     shape_str(target.shape()) + ": shapes differ");
  }
  if (input.dtype() != target.dtype()) {
    throw TypeError(std::string(op) + ": input " + describe(input) + " and target " + describe(target) +
                    ": dtypes differ (convert one with .to())");
  }
}

struct MseLossDef {
  static constexpr std::string_view name = "mse_loss";
  static constexpr std::array<std::string_view, 2> inputs{"input", "target"};
  Reduction reduction = Reduction::Mean;

  Tensor forward(const Tensor& input, const Tensor& target) const {
    check_pair(input, target, name);
    return reduce(kernels::mse_loss(input, target), reduction);
  }

  // d/dinput = 2 g (input - target) = -d/dtarget.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const Tensor g = per_element_grad(c.grad, c.in(0).numel(), reduction);
    const Tensor dx = kernels::mse_loss_backward(g, c.in(0), c.in(1));
    return {c.needs[0] ? dx : Tensor(), c.needs[1] ? kernels::neg(dx) : Tensor()};
  }
};

struct BceWithLogitsDef {
  static constexpr std::string_view name = "binary_cross_entropy_with_logits";
  static constexpr std::array<std::string_view, 2> inputs{"input", "target"};
  Reduction reduction = Reduction::Mean;

  // loss = (1 - y) x + max(-x, 0) + log(1 + exp(-|x|)), torch's form (kernels::fn::BceWithLogits
  // says why): +inf with y = 0 gives inf, not inf * 0 = NaN.
  Tensor forward(const Tensor& input, const Tensor& target) const {
    check_pair(input, target, name);
    return reduce(kernels::bce_with_logits(input, target), reduction);
  }

  // d/dx = g (sigmoid(x) - y);  d/dy = -g x.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const Tensor g = per_element_grad(c.grad, c.in(0).numel(), reduction);
    return {c.needs[0] ? kernels::bce_with_logits_backward_input(g, c.in(0), c.in(1)) : Tensor(),
            c.needs[1] ? kernels::bce_with_logits_backward_target(g, c.in(0)) : Tensor()};
  }
};

}  // namespace

NodeRef cross_entropy(const NodeRef& logits, const NodeRef& target, Reduction reduction) {
  return apply(CrossEntropyDef{reduction}, logits, target);
}
NodeRef nll_loss(const NodeRef& log_probs, const NodeRef& target, Reduction reduction) {
  return apply(NllLossDef{reduction}, log_probs, target);
}
NodeRef mse_loss(const NodeRef& input, const NodeRef& target, Reduction reduction) {
  return apply(MseLossDef{reduction}, input, target);
}
NodeRef binary_cross_entropy_with_logits(const NodeRef& input, const NodeRef& target, Reduction reduction) {
  return apply(BceWithLogitsDef{reduction}, input, target);
}

}  // namespace zkynet::op
