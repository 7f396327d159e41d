// The softmax and loss kernels on the CPU (softmax.h says what each computes), or on CUDA
// (cuda/softmax.cu) when the main operand is there. Lanes split across the thread pool.
// NOTE: softmax, its VJPs and cross_entropy sum each lane sequentially in double, log_softmax
// and logsumexp pairwise: the results are bit-for-bit those of the operators before the
// kernels moved here; keep each loop's order when changing one.
#include "softmax.h"

#include <zkynet/framework/error.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/ops/strided.h>

#include "accumulate.h"
#include "cuda/api.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace zkynet::kernels {

namespace {

bool on_device(const Tensor& t) { return !t.device().is_cpu(); }

constexpr std::string_view kBce = "binary_cross_entropy_with_logits";

using detail::Lanes;
using detail::lanes_along;

// Calls body(start, k) for every lane k, lanes split across the thread pool.
template <class Body>
void for_each_lane(const Lanes& l, Body&& body) {
  const std::int64_t grain = std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(l.n, 1));
  parallel_for(
      l.count(),
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

// sum_j exp(p[j] - shift), summed as accumulate.h says.
template <class T>
double lane_sum_exp(const T* p, std::int64_t n, std::int64_t stride, T shift) {
  return detail::pairwise_sum<double>(
      0, n, [&](std::int64_t j) { return std::exp(static_cast<double>(p[j * stride] - shift)); });
}

// Each row of a contiguous (N, C) tensor, rows split across the thread pool.
template <class Body>
void for_each_row(std::int64_t rows, std::int64_t cols, Body&& body) {
  parallel_for(
      rows,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t n = begin; n < end; ++n) body(n);
      },
      std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(cols, 1)));
}

// Sample n's gradient: grad[n], or the shared 0-d grad (over N when `mean`, in T).
template <class T>
T sample_grad(const T* g, std::int64_t n, bool shared, std::int64_t count, bool mean) {
  if (!shared) return g[n];
  return mean ? static_cast<T>(g[0] / static_cast<T>(count)) : g[0];
}

}  // namespace

// ---- softmax, log_softmax, logsumexp ------------------------------------------------------

Tensor softmax(const Tensor& x, std::int64_t axis) {
  if (on_device(x)) return cuda::softmax(x, axis);
  const Lanes l = lanes_along(x.shape(), axis);
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

Tensor softmax_backward(const Tensor& grad, const Tensor& y_in, std::int64_t axis) {
  if (on_device(y_in)) return cuda::softmax_backward(grad, y_in, axis);
  const Lanes l = lanes_along(y_in.shape(), axis);
  const Tensor g = grad.cpu().contiguous();
  const Tensor y = y_in.contiguous();
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
  return dx;
}

Tensor log_softmax(const Tensor& x, std::int64_t axis) {
  if (on_device(x)) return cuda::log_softmax(x, axis);
  const Lanes l = lanes_along(x.shape(), axis);
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

Tensor log_softmax_backward(const Tensor& grad, const Tensor& y_in, std::int64_t axis) {
  if (on_device(y_in)) return cuda::log_softmax_backward(grad, y_in, axis);
  const Lanes l = lanes_along(y_in.shape(), axis);
  const Tensor g = grad.cpu().contiguous();
  const Tensor y = y_in.contiguous();
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
  return dx;
}

Tensor logsumexp_last(const Tensor& x) {
  if (on_device(x)) return cuda::logsumexp_last(x);
  const Shape& s = x.shape();
  const Shape out_shape(s.begin(), s.end() - 1);
  const std::int64_t n = s.back();
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(out_shape, x.dtype());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = in.data<T>();
    T* o = out.data<T>();
    for_each_lane(Lanes{out.numel(), n, 1}, [&](std::int64_t start, std::int64_t k) {
      const T shift = lane_shift(p + start, n, 1);
      o[k] = static_cast<T>(static_cast<double>(shift) + std::log(lane_sum_exp(p + start, n, 1, shift)));
    });
  });
  return out;
}

// ---- class targets ------------------------------------------------------------------------

std::int64_t first_class_out_of_range(const Tensor& target, std::int64_t classes) {
  if (on_device(target)) return cuda::first_index_out_of_range(target, classes);
  const Tensor t = target.contiguous();
  const std::int64_t* p = t.data<std::int64_t>();
  for (std::int64_t n = 0; n < t.numel(); ++n) {
    if (p[n] < 0 || p[n] >= classes) return n;
  }
  return -1;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target) {
  if (on_device(logits)) return cuda::cross_entropy(logits, target);
  const std::int64_t rows = logits.shape()[0];
  const std::int64_t c = logits.shape()[1];
  const Tensor x = logits.contiguous();
  const Tensor t = target.cpu().contiguous();
  Tensor per = Tensor::empty({rows}, logits.dtype());
  dispatch_floating(logits.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    const std::int64_t* tp = t.data<std::int64_t>();
    T* out = per.data<T>();
    for_each_row(rows, c, [&](std::int64_t n) {
      const T* row = p + n * c;
      const T shift = lane_max(row, c, 1);  // +inf or all -inf: NaN, as torch's log_softmax
      double total = 0.0;
      for (std::int64_t j = 0; j < c; ++j) total += std::exp(static_cast<double>(row[j] - shift));
      out[n] = static_cast<T>(std::log(total) - static_cast<double>(row[tp[n]] - shift));
    });
  });
  return per;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& grad, bool mean) {
  if (on_device(logits)) return cuda::cross_entropy_backward(logits, target, grad, mean);
  const std::int64_t rows = logits.shape()[0];
  const std::int64_t c = logits.shape()[1];
  const Tensor x = logits.contiguous();
  const Tensor t = target.cpu().contiguous();
  const Tensor g = grad.cpu().contiguous();
  const bool shared = grad.dim() == 0;
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    const std::int64_t* tp = t.data<std::int64_t>();
    const T* gp = g.data<T>();
    T* d = dx.data<T>();
    for_each_row(rows, c, [&](std::int64_t n) {
      const T* row = p + n * c;
      T* drow = d + n * c;
      const T shift = lane_max(row, c, 1);  // +inf or all -inf: NaN, as torch's log_softmax
      double total = 0.0;
      for (std::int64_t j = 0; j < c; ++j) total += std::exp(static_cast<double>(row[j] - shift));
      const double gn = static_cast<double>(sample_grad(gp, n, shared, rows, mean));
      for (std::int64_t j = 0; j < c; ++j) {
        drow[j] = static_cast<T>(gn * std::exp(static_cast<double>(row[j] - shift)) / total);
      }
      drow[tp[n]] -= static_cast<T>(gn);
    });
  });
  return dx;
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target) {
  if (on_device(log_probs)) return cuda::nll_loss(log_probs, target);
  const std::int64_t rows = log_probs.shape()[0];
  const std::int64_t c = log_probs.shape()[1];
  const Tensor x = log_probs.contiguous();
  const Tensor t = target.cpu().contiguous();
  Tensor per = Tensor::empty({rows}, log_probs.dtype());
  dispatch_floating(log_probs.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    const std::int64_t* tp = t.data<std::int64_t>();
    T* out = per.data<T>();
    for (std::int64_t n = 0; n < rows; ++n) out[n] = -p[n * c + tp[n]];
  });
  return per;
}

Tensor nll_loss_backward(const Tensor& log_probs, const Tensor& target, const Tensor& grad, bool mean) {
  if (on_device(log_probs)) return cuda::nll_loss_backward(log_probs, target, grad, mean);
  const std::int64_t rows = log_probs.shape()[0];
  const std::int64_t c = log_probs.shape()[1];
  const Tensor t = target.cpu().contiguous();
  const Tensor g = grad.cpu().contiguous();
  const bool shared = grad.dim() == 0;
  Tensor dx = Tensor::zeros(log_probs.shape(), log_probs.dtype());
  dispatch_floating(dx.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t* tp = t.data<std::int64_t>();
    const T* gp = g.data<T>();
    T* d = dx.data<T>();
    for (std::int64_t n = 0; n < rows; ++n) d[n * c + tp[n]] = -sample_grad(gp, n, shared, rows, mean);
  });
  return dx;
}

// ---- elementwise losses -------------------------------------------------------------------

namespace {

// f over the operands' broadcast shape, in `input`'s dtype and on its device (a 0-d gradient
// may come from another device).
template <class F, std::size_t N>
Tensor map_like(const Tensor& input, const std::array<Tensor, N>& operands, std::string_view op) {
  if (on_device(input)) return cuda::map_loss<F, N>(operands, input.dtype(), input.device(), F{}, op);
  std::array<Tensor, N> host;
  for (std::size_t k = 0; k < N; ++k) host[k] = operands[k].cpu();
  return dispatch_floating(input.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return map<T, N>(host, F{}, op);
  });
}

}  // namespace

Tensor logsumexp_backward(const Tensor& grad, const Tensor& x, const Tensor& out) {
  return map_like<fn::LogsumexpBackward, 3>(x, {grad, x, out}, "logsumexp");
}
Tensor mse_loss(const Tensor& input, const Tensor& target) {
  return map_like<fn::MseLoss, 2>(input, {input, target}, "mse_loss");
}
Tensor mse_loss_backward(const Tensor& grad, const Tensor& input, const Tensor& target) {
  return map_like<fn::MseLossBackward, 3>(input, {grad, input, target}, "mse_loss");
}
Tensor bce_with_logits(const Tensor& input, const Tensor& target) {
  return map_like<fn::BceWithLogits, 2>(input, {input, target}, kBce);
}
Tensor bce_with_logits_backward_input(const Tensor& grad, const Tensor& input, const Tensor& target) {
  return map_like<fn::BceWithLogitsBackwardInput, 3>(input, {grad, input, target}, kBce);
}
Tensor bce_with_logits_backward_target(const Tensor& grad, const Tensor& input) {
  return map_like<fn::BceWithLogitsBackwardTarget, 2>(input, {grad, input}, kBce);
}

}  // namespace zkynet::kernels
