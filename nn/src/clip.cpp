#include <zkynet/framework/error.h>
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

}  // namespace

double clip_grad_norm(const std::vector<Parameter>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
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
  for (const auto& g : grads) {
    const Tensor c = g.contiguous();
    norms.push_back(dispatch_floating(c.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* d = c.data<T>();
      return p_norm(d, d + c.numel(), norm_type, [](T v) { return std::abs(static_cast<double>(v)); });
    }));
  }
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
      Tensor scaled = g.contiguous();  // accumulated gradients are contiguous: g itself
      dispatch_floating(scaled.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* d = scaled.data<T>();
        const T c = static_cast<T>(coef);
        for (std::int64_t k = 0; k < scaled.numel(); ++k) d[k] = d[k] * c;
      });
      if (!scaled.shares_storage_with(g)) g.copy_(scaled);
    }
  }
  return total;
}

}  // namespace zkynet::optim
