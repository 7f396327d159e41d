// The kernels of softmax, log_softmax, logsumexp and the losses (ops/src/softmax.cpp and
// loss.cpp call them), device-neutral: each runs on the CPU (softmax.cpp here) or, when its
// main operand is on a CUDA device, on that device (cuda/softmax.cu). Shapes, dtypes and
// axes are checked by the operators; these take them as given.
//
//   const Tensor y = kernels::softmax(x, 1);                    // lanes along axis 1
//   const Tensor dx = kernels::softmax_backward(grad, y, 1);
//
// A lane is the elements along the axis for one position of the others. Lanes are shifted as
// PyTorch shifts them: softmax, log_softmax and cross_entropy by the lane's maximum even when
// it is infinite (a lane holding +inf, or only -inf, gives NaN throughout), logsumexp by the
// maximum only when finite, else by 0 (giving -inf and +inf for such lanes). Exp-sums and dot
// products accumulate in double (accumulate.h's contract).
#pragma once

#include <zkynet/framework/tensor.h>
#include <zkynet/internal/host_device.h>

#include <cmath>
#include <cstdint>

namespace zkynet::kernels {

// ---- softmax, log_softmax, logsumexp ------------------------------------------------------

namespace detail {

// A contiguous tensor seen as outer x n x inner around one axis: lane k starts at
// (k / inner) * n * inner + k % inner, and its n elements lie `inner` apart.
struct Lanes {
  std::int64_t outer = 1;
  std::int64_t n = 1;
  std::int64_t inner = 1;

  std::int64_t count() const { return outer * inner; }
};

inline Lanes lanes_along(const Shape& s, std::int64_t axis) {
  Lanes l;
  if (s.empty()) return l;
  for (std::int64_t i = 0; i < axis; ++i) l.outer *= s[static_cast<std::size_t>(i)];
  l.n = s[static_cast<std::size_t>(axis)];
  for (std::size_t i = static_cast<std::size_t>(axis) + 1; i < s.size(); ++i) l.inner *= s[i];
  return l;
}

}  // namespace detail

// exp(x - m) / sum exp(x - m) along `axis` (normalized; a 0-d x is one lane of one element).
Tensor softmax(const Tensor& x, std::int64_t axis);
// grad y - y sum_lane(grad y): softmax's VJP from its output y.
Tensor softmax_backward(const Tensor& grad, const Tensor& y, std::int64_t axis);
// (x - m) - log(sum exp(x - m)) along `axis`.
Tensor log_softmax(const Tensor& x, std::int64_t axis);
// grad - exp(y) sum_lane(grad): log_softmax's VJP from its output y.
Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, std::int64_t axis);
// log(sum exp(x)) over the last axis of x (x's shape without that axis).
Tensor logsumexp_last(const Tensor& x);
// grad exp(x - out), grad and out broadcast to x's shape.
Tensor logsumexp_backward(const Tensor& grad, const Tensor& x, const Tensor& out);

// ---- class targets: logits or log-probabilities (N, C), int64 targets (N,) ----------------

// The position of the first target outside [0, classes), or -1 when all are class indices.
std::int64_t first_class_out_of_range(const Tensor& target, std::int64_t classes);
// log(sum_j exp(x_nj - m_n)) - (x_n,t_n - m_n), per sample: (N,).
Tensor cross_entropy(const Tensor& logits, const Tensor& target);
// g_n (softmax(x_n)_j - [j == t_n]): (N, C). `grad` holds each sample's gradient (N,), or is
// 0-d and shared by all, divided by N in the logits' dtype when `mean`.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& grad, bool mean);
// -log_probs[n, t_n], per sample: (N,).
Tensor nll_loss(const Tensor& log_probs, const Tensor& target);
// -g_n at [n, t_n], zero elsewhere: (N, C); `grad` as for cross_entropy_backward.
Tensor nll_loss_backward(const Tensor& log_probs, const Tensor& target, const Tensor& grad, bool mean);

// ---- elementwise losses (same-shape input and target; grad may broadcast) -----------------

Tensor mse_loss(const Tensor& input, const Tensor& target);
// d/dinput (d/dtarget is its negation).
Tensor mse_loss_backward(const Tensor& grad, const Tensor& input, const Tensor& target);
Tensor bce_with_logits(const Tensor& input, const Tensor& target);
Tensor bce_with_logits_backward_input(const Tensor& grad, const Tensor& input, const Tensor& target);
Tensor bce_with_logits_backward_target(const Tensor& grad, const Tensor& input);

// The elementwise formulas above, written once for the CPU loops and the CUDA kernels.
namespace fn {

struct MseLoss { template <class T> ZKYNET_HD T operator()(T x, T y) const { return (x - y) * (x - y); } };
struct MseLossBackward {
  template <class T> ZKYNET_HD T operator()(T g, T x, T y) const { return T(2) * g * (x - y); }
};
// (1 - y) x + max(-x, 0) + log(1 + exp(-|x|)): torch's (1 - y) x + m + log(exp(-m) + exp(-x - m)),
// m = max(-x, 0), with log1p. Equal to max(x, 0) - x y + ... for finite x, it gives torch's
// results at infinite logits (+inf with y = 0: inf, where x y was inf * 0 = NaN).
// NOTE: `-x < 0 ? 0 : -x` is std::max(-x, 0) spelled for the device (NaN stays NaN).
struct BceWithLogits {
  template <class T> ZKYNET_HD T operator()(T x, T y) const {
    using std::abs, std::exp, std::log1p;
    return (T(1) - y) * x + (-x < T(0) ? T(0) : -x) + log1p(exp(-abs(x)));
  }
};
// g (sigmoid(x) - y), sigmoid from exp(-|x|) so that neither side overflows.
struct BceWithLogitsBackwardInput {
  template <class T> ZKYNET_HD T operator()(T g, T x, T y) const {
    using std::abs, std::exp;
    const T e = exp(-abs(x));
    const T sig = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    return g * (sig - y);
  }
};
struct BceWithLogitsBackwardTarget { template <class T> ZKYNET_HD T operator()(T g, T x) const { return -g * x; } };
struct LogsumexpBackward {
  template <class T> ZKYNET_HD T operator()(T g, T x, T out) const { using std::exp; return g * exp(x - out); }
};

}  // namespace fn

// Every functor above with its arity, for the CUDA kernels' explicit instantiations.
#define ZKYNET_LOSS_FUNCTORS(X) \
  X(MseLoss, 2) X(MseLossBackward, 3) X(BceWithLogits, 2) X(BceWithLogitsBackwardInput, 3) \
  X(BceWithLogitsBackwardTarget, 2) X(LogsumexpBackward, 3)

}  // namespace zkynet::kernels
