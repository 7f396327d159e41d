// Losses: forward and VJP side by side. cross_entropy fuses log_softmax and nll_loss (its
// VJP is softmax minus the one-hot target); binary_cross_entropy_with_logits works from the
// logits with log1p(exp(-|x|)), never forming sigmoid(x) and its logarithm.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/strided.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

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

// The target's class indices, each checked to lie in [0, C).
std::vector<std::int64_t> class_indices(const Tensor& target, const ClassShape& s, std::string_view op) {
  const Tensor t = target.contiguous();
  const std::int64_t* p = t.data<std::int64_t>();
  std::vector<std::int64_t> idx(p, p + t.numel());
  for (std::size_t n = 0; n < idx.size(); ++n) {
    if (idx[n] < 0 || idx[n] >= s.c) {
      const std::string where = s.batched ? "target[" + std::to_string(n) + "]" : std::string("target");
      throw IndexError(std::string(op) + ": class index " + std::to_string(idx[n]) + " (" + where +
                       ") is out of range for C = " + std::to_string(s.c) + " classes");
    }
  }
  return idx;
}

Shape per_sample_shape(const ClassShape& s) { return s.batched ? Shape{s.n} : Shape{}; }

// The gradient reaching sample n's loss, read from the output gradient `g`.
template <class T>
T sample_grad(const T* g, std::int64_t n, const ClassShape& s, Reduction r) {
  if (r == Reduction::None) return g[n];
  return r == Reduction::Mean ? static_cast<T>(g[0] / static_cast<T>(s.n)) : g[0];
}

struct CrossEntropyDef {
  static constexpr std::string_view name = "cross_entropy";
  static constexpr std::array<std::string_view, 2> inputs{"logits", "target"};
  Reduction reduction = Reduction::Mean;

  // loss_n = log(sum_j exp(x_nj - m_n)) - (x_n,t_n - m_n), m_n the row's maximum.
  Tensor forward(const Tensor& logits, const Tensor& target) const {
    const ClassShape s = class_shape(logits, target, name, "logits");
    const std::vector<std::int64_t> idx = class_indices(target, s, name);
    const Tensor x = logits.contiguous();
    Tensor per = Tensor::empty(per_sample_shape(s), logits.dtype());
    dispatch_floating(logits.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = x.data<T>();
      T* out = per.data<T>();
      parallel_for(s.n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t n = begin; n < end; ++n) {
          const T* row = p + n * s.c;
          T m = -std::numeric_limits<T>::infinity();
          for (std::int64_t j = 0; j < s.c; ++j) m = std::max(m, row[j]);
          const T shift = m;  // +inf or all -inf: NaN, as torch's log_softmax
          double total = 0.0;
          for (std::int64_t j = 0; j < s.c; ++j) total += std::exp(static_cast<double>(row[j] - shift));
          out[n] = static_cast<T>(std::log(total) - static_cast<double>(row[idx[static_cast<std::size_t>(n)]] - shift));
        }
      }, std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(s.c, 1)));
    });
    return reduce(per, reduction);
  }

  // dx_nj = g_n * (softmax(x_n)_j - [j == t_n]).
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    if (!c.needs[0]) return {Tensor(), Tensor()};
    const ClassShape s = class_shape(c.in(0), c.in(1), name, "logits");
    const std::vector<std::int64_t> idx = class_indices(c.in(1), s, name);
    const Tensor x = c.in(0).contiguous();
    const Tensor g = c.grad.contiguous();
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    dispatch_floating(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = x.data<T>();
      const T* gp = g.data<T>();
      T* d = dx.data<T>();
      parallel_for(s.n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t n = begin; n < end; ++n) {
          const T* row = p + n * s.c;
          T* drow = d + n * s.c;
          T m = -std::numeric_limits<T>::infinity();
          for (std::int64_t j = 0; j < s.c; ++j) m = std::max(m, row[j]);
          const T shift = m;  // +inf or all -inf: NaN, as torch's log_softmax
          double total = 0.0;
          for (std::int64_t j = 0; j < s.c; ++j) total += std::exp(static_cast<double>(row[j] - shift));
          const double gn = static_cast<double>(sample_grad(gp, n, s, reduction));
          for (std::int64_t j = 0; j < s.c; ++j) {
            drow[j] = static_cast<T>(gn * std::exp(static_cast<double>(row[j] - shift)) / total);
          }
          drow[idx[static_cast<std::size_t>(n)]] -= static_cast<T>(gn);
        }
      }, std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(s.c, 1)));
    });
    return {dx, Tensor()};
  }
};

struct NllLossDef {
  static constexpr std::string_view name = "nll_loss";
  static constexpr std::array<std::string_view, 2> inputs{"log_probs", "target"};
  Reduction reduction = Reduction::Mean;

  // loss_n = -log_probs[n, t_n].
  Tensor forward(const Tensor& log_probs, const Tensor& target) const {
    const ClassShape s = class_shape(log_probs, target, name, "log_probs");
    const std::vector<std::int64_t> idx = class_indices(target, s, name);
    const Tensor x = log_probs.contiguous();
    Tensor per = Tensor::empty(per_sample_shape(s), log_probs.dtype());
    dispatch_floating(log_probs.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = x.data<T>();
      T* out = per.data<T>();
      for (std::int64_t n = 0; n < s.n; ++n) out[n] = -p[n * s.c + idx[static_cast<std::size_t>(n)]];
    });
    return reduce(per, reduction);
  }

  // dx = -g_n at [n, t_n], zero elsewhere.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    if (!c.needs[0]) return {Tensor(), Tensor()};
    const ClassShape s = class_shape(c.in(0), c.in(1), name, "log_probs");
    const std::vector<std::int64_t> idx = class_indices(c.in(1), s, name);
    const Tensor g = c.grad.contiguous();
    Tensor dx = Tensor::zeros(c.in(0).shape(), c.in(0).dtype());
    dispatch_floating(dx.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = g.data<T>();
      T* d = dx.data<T>();
      for (std::int64_t n = 0; n < s.n; ++n) d[n * s.c + idx[static_cast<std::size_t>(n)]] = -sample_grad(gp, n, s, reduction);
    });
    return {dx, Tensor()};
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
    return reduce(dispatch_floating(input.dtype(), [&](auto zero) {
      using T = decltype(zero);
      return kernels::map<T, 2>({input, target}, [](T x, T y) { return (x - y) * (x - y); }, name);
    }), reduction);
  }

  // d/dinput = 2 g (input - target) = -d/dtarget.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const Tensor g = per_element_grad(c.grad, c.in(0).numel(), reduction);
    const Tensor dx = dispatch_floating(c.in(0).dtype(), [&](auto zero) {
      using T = decltype(zero);
      return kernels::map<T, 3>({g, c.in(0), c.in(1)}, [](T gi, T x, T y) { return T(2) * gi * (x - y); }, name);
    });
    return {c.needs[0] ? dx : Tensor(), c.needs[1] ? kernels::neg(dx) : Tensor()};
  }
};

struct BceWithLogitsDef {
  static constexpr std::string_view name = "binary_cross_entropy_with_logits";
  static constexpr std::array<std::string_view, 2> inputs{"input", "target"};
  Reduction reduction = Reduction::Mean;

  // loss = (1 - y) x + max(-x, 0) + log(1 + exp(-|x|)): torch's (1 - y) x + m + log(exp(-m) +
  // exp(-x - m)), m = max(-x, 0), with log1p. Equal to max(x, 0) - x y + ... for finite x, it
  // gives torch's results at infinite logits (+inf with y = 0: inf, where x y was inf * 0 = NaN).
  Tensor forward(const Tensor& input, const Tensor& target) const {
    check_pair(input, target, name);
    return reduce(dispatch_floating(input.dtype(), [&](auto zero) {
      using T = decltype(zero);
      return kernels::map<T, 2>(
          {input, target},
          [](T x, T y) { return (T(1) - y) * x + std::max(-x, T(0)) + std::log1p(std::exp(-std::abs(x))); },
          name);
    }), reduction);
  }

  // d/dx = g (sigmoid(x) - y);  d/dy = -g x.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const Tensor g = per_element_grad(c.grad, c.in(0).numel(), reduction);
    return dispatch_floating(c.in(0).dtype(), [&](auto zero) -> std::array<Tensor, 2> {
      using T = decltype(zero);
      Tensor dx;
      Tensor dy;
      if (c.needs[0]) {
        dx = kernels::map<T, 3>(
            {g, c.in(0), c.in(1)},
            [](T gi, T x, T y) {
              const T e = std::exp(-std::abs(x));  // sigmoid without overflow on either side
              const T sig = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
              return gi * (sig - y);
            },
            name);
      }
      if (c.needs[1]) dy = kernels::map<T, 2>({g, c.in(0)}, [](T gi, T x) { return -gi * x; }, name);
      return {dx, dy};
    });
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
