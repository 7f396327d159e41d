// The layer_norm and batch_norm kernels on the CPU (normalization.h says what each computes);
// groups split across the thread pool. CUDA operands go to cuda/normalization.cu, after a check
// that every operand lies on the data's device.
// NOTE: every sum runs sequentially in double, in the order of for_group(): the results are
// bit-for-bit those of the operators before the kernels moved here; keep the order.
#include "normalization.h"

#include <zkynet/framework/parallel.h>

#include "cuda/api.h"
#include "same_device.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace zkynet::kernels {

namespace {

// Calls f(i, s) for every element i of group g (s: its position along the inner axis).
template <class F>
void for_group(const NormGroups& l, std::int64_t g, F&& f) {
  for (std::int64_t n = 0; n < l.outer; ++n) {
    const std::int64_t base = (n * l.groups + g) * l.inner;
    for (std::int64_t s = 0; s < l.inner; ++s) f(base + s, s);
  }
}

// Calls body(g) for every group, groups split across the thread pool.
template <class Body>
void for_each_group(const NormGroups& l, Body&& body) {
  const std::int64_t grain = std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(l.count(), 1));
  parallel_for(
      l.groups,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t g = begin; g < end; ++g) body(g);
      },
      grain);
}

// t = (1 - momentum) t + momentum v, in place (t: 1-d, any stride, float32 or float64).
void blend_into(const Tensor& t, const double* v, std::size_t size, double momentum) {
  dispatch_floating(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    const std::int64_t stride = t.strides()[0];
    for (std::size_t c = 0; c < size; ++c) {
      T& r = p[static_cast<std::int64_t>(c) * stride];
      r = static_cast<T>((1.0 - momentum) * static_cast<double>(r) + momentum * v[c]);
    }
  });
}

}  // namespace

Moments moments(const Tensor& x_in, const NormGroups& l, std::string_view op) {
  if (x_in.device().is_cuda()) return cuda::moments(x_in, l, op);
  const Tensor x = x_in.contiguous();
  Moments out{Tensor::zeros({l.groups}, DType::Float64), Tensor::zeros({l.groups}, DType::Float64)};
  double* mean = out.mean.data<double>();
  double* var = out.var.data<double>();
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
      mean[g] = m;
      var[g] = sq / n;
    });
  });
  return out;
}

Tensor inverse_std(const Tensor& var_in, double eps, std::string_view op) {
  if (var_in.device().is_cuda()) return cuda::inverse_std(var_in, eps, op);
  const Tensor var = var_in.to(DType::Float64).contiguous();
  Tensor out = Tensor::empty(var.shape(), DType::Float64);
  const double* v = var.data<double>();
  double* rstd = out.data<double>();
  for (std::int64_t g = 0; g < var.numel(); ++g) rstd[g] = 1.0 / std::sqrt(v[g] + eps);
  return out;
}

Tensor normalize(const Tensor& x_in, const Tensor& weight, const Tensor& bias, const NormGroups& l, AffineAxis axis,
                 const Tensor& mean_in, const Tensor& rstd_in, std::string_view op) {
  detail::require_same_device(op, x_in.device(), weight, bias, mean_in, rstd_in);
  if (x_in.device().is_cuda()) return cuda::normalize(x_in, weight, bias, l, axis, mean_in, rstd_in, op);
  const Tensor x = x_in.contiguous();
  const Tensor mean_t = mean_in.contiguous();
  const Tensor rstd_t = rstd_in.contiguous();
  const double* mean = mean_t.data<double>();
  const double* rstd = rstd_t.data<double>();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    const T* wp = w.defined() ? w.data<T>() : nullptr;
    const T* bp = b.defined() ? b.data<T>() : nullptr;
    T* y = out.data<T>();
    for_each_group(l, [&](std::int64_t g) {
      const double m = mean[g];
      const double r = rstd[g];
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

NormGrads normalize_backward(const Tensor& grad_in, const Tensor& x_in, const Tensor& weight, const NormGroups& l,
                             AffineAxis axis, const Tensor& mean_in, const Tensor& rstd_in, bool batch_stats,
                             std::array<bool, 3> needs, std::string_view op) {
  detail::require_same_device(op, x_in.device(), grad_in, weight, mean_in, rstd_in);
  if (x_in.device().is_cuda()) {
    return cuda::normalize_backward(grad_in, x_in, weight, l, axis, mean_in, rstd_in, batch_stats, needs, op);
  }
  const Tensor grad = grad_in.contiguous();
  const Tensor x = x_in.contiguous();
  const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  const Tensor mean_t = mean_in.contiguous();
  const Tensor rstd_t = rstd_in.contiguous();
  const double* mean = mean_t.data<double>();
  const double* rstd = rstd_t.data<double>();
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
    const T* wp = w.defined() ? w.data<T>() : nullptr;
    auto xhat = [&](std::int64_t i, std::int64_t g) { return (static_cast<double>(xp[i]) - mean[g]) * rstd[g]; };
    auto wt = [&](std::int64_t k) { return wp ? static_cast<double>(wp[k]) : 1.0; };
    if (needs[0]) {
      T* dx = out.input.data<T>();
      for_each_group(l, [&](std::int64_t g) {
        const double r = rstd[g];
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

void update_running_stats(const Tensor& running_mean, const Tensor& running_var, const Moments& batch,
                          std::int64_t count, double momentum, std::string_view op) {
  detail::require_same_device(op, batch.mean.device(), running_mean, running_var, batch.var);
  if (batch.mean.device().is_cuda()) {
    return cuda::update_running_stats(running_mean, running_var, batch, count, momentum, op);
  }
  const Tensor mean_t = batch.mean.contiguous();
  const Tensor var_t = batch.var.contiguous();
  const double* mean = mean_t.data<double>();
  const double* var = var_t.data<double>();
  const auto channels = static_cast<std::size_t>(var_t.numel());
  const double n = static_cast<double>(count);
  std::vector<double> unbiased(channels);
  for (std::size_t c = 0; c < channels; ++c) unbiased[c] = var[c] * n / (n - 1.0);
  blend_into(running_mean, mean, channels, momentum);
  blend_into(running_var, unbiased.data(), channels, momentum);
}

}  // namespace zkynet::kernels
