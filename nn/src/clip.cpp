#include <zkynet/framework/effects.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/session.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/select.h>
#include <zkynet/optim/clip.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace zkynet::optim {

namespace {

// The p-norm of a vector's absolute values; infinity gives the largest.
template <class It, class Abs>
double p_norm(It begin, It end, double p, Abs abs_of) {
  if (std::isinf(p)) {
    double largest = 0;
    for (It it = begin; it != end; ++it) {
      const double a = abs_of(*it);
      // NOTE: written so that NaN propagates, as torch's max does.
      if (std::isnan(a) || a > largest) largest = a;
      if (std::isnan(largest)) break;
    }
    return largest;
  }
  double sum = 0;
  if (p == 1) {
    for (It it = begin; it != end; ++it) sum += abs_of(*it);
    return sum;
  }
  if (p == 2) {
    for (It it = begin; it != end; ++it) sum += abs_of(*it) * abs_of(*it);
    return std::sqrt(sum);
  }
  for (It it = begin; it != end; ++it) sum += std::pow(abs_of(*it), p);
  return std::pow(sum, 1 / p);
}

// One gradient's p-norm, computed by kernels on the gradient's device: |g|^p in float64 (exact
// squares of float32 values), summed in double as every kernels::sum is (pairwise); for
// infinity the largest |g|, NaN if any is NaN (op::max picks a lane's first NaN, as torch).
double grad_norm(const Tensor& g, double p) {
  if (g.numel() == 0) return 0.0;
  const Tensor d = g.to(DType::Float64);
  const Tensor a = kernels::mul(d, kernels::sign(d));  // |g|: sign(NaN) is 0, and NaN * 0 stays NaN
  if (std::isinf(p)) {
    const NoGradGuard no_grad;
    return std::abs(op::max(a.reshape({-1}), 0).value().item());  // abs: -0 (all zeros) as 0
  }
  if (p == 1) return kernels::sum(a).item();
  if (p == 2) return std::sqrt(kernels::sum(kernels::square(d)).item());
  return std::pow(kernels::sum(kernels::pow(a, Tensor::scalar(p))).item(), 1 / p);
}

}  // namespace

double clip_grad_norm(const std::vector<Parameter>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  if (capturing_effects()) {
    record_effect("clip_grad_norm", [params, max_norm, norm_type, error_if_nonfinite] {
      clip_grad_norm(params, max_norm, norm_type, error_if_nonfinite);
    });
  }
  if (!(norm_type > 0)) {
    throw UsageError("clip_grad_norm: norm_type must be positive (or infinity), got " + std::to_string(norm_type));
  }
  std::vector<Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;

  std::vector<double> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(grad_norm(g, norm_type));
  const double total = p_norm(norms.begin(), norms.end(), norm_type, [](double v) { return v; });
  if (error_if_nonfinite && !std::isfinite(total)) {
    throw UsageError("clip_grad_norm: the total norm of order " + std::to_string(norm_type) +
                     " of the gradients is non-finite (" + std::to_string(total) +
                     "), so they cannot be clipped; pass error_if_nonfinite = false to clip anyway");
  }
  const double coef = std::min(max_norm / (total + 1e-6), 1.0);
  // NOTE: a NaN coefficient (NaN gradients) must still reach the gradients, as in torch.
  if (!(coef == 1.0)) {
    for (auto& g : grads) {
      // g * coef in g's dtype (coef rounded to it first), written back into the gradient.
      g.copy_(kernels::mul(g, Tensor::scalar(coef, g.dtype())));
    }
  }
  return total;
}

}  // namespace zkynet::optim
