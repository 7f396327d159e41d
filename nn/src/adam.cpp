#include <zkynet/framework/error.h>
#include <zkynet/optim/adam.h>

#include <algorithm>
#include <cmath>

namespace zkynet::optim {

Adam::Adam(std::vector<Parameter> params, AdamOptions options) : Adam(std::move(params), options, false, "Adam") {}

Adam::Adam(std::vector<Parameter> params, AdamOptions options, bool decoupled_weight_decay, const char* name)
    : Optimizer(std::move(params)),
      options_(options),
      decoupled_(decoupled_weight_decay),
      name_(name),
      state_(params_.size()) {
  check_non_negative(options.lr, name, "learning rate");
  check_non_negative(options.eps, name, "eps");
  check_non_negative(options.weight_decay, name, "weight_decay");
  for (double beta : {options.betas.first, options.betas.second}) {
    if (!(beta >= 0 && beta < 1)) {
      throw UsageError(std::string(name) + ": betas must lie in [0, 1), got " + std::to_string(beta));
    }
  }
}

void Adam::set_lr(double lr) {
  check_non_negative(lr, name_, "learning rate");
  options_.lr = lr;
}

void Adam::step() {
  const auto [beta1, beta2] = options_.betas;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    const Tensor grad = gradient_for_step(p, name_);
    if (!grad.defined()) continue;
    State& s = state_[i];
    ensure_state(s.exp_avg, p, name_);
    ensure_state(s.exp_avg_sq, p, name_);
    if (options_.amsgrad) ensure_state(s.max_exp_avg_sq, p, name_);
    ++s.step;
    // Scalars in double, as torch computes them in Python before they meet the tensors.
    const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(s.step));
    const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(s.step));
    const double step_size = options_.lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    Tensor value = p.value();
    dispatch_floating(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* w = value.data<T>();
      value.bump_version();
      const T* g = grad.data<T>();
      T* m = s.exp_avg.data<T>();
      T* v = s.exp_avg_sq.data<T>();
      T* v_max = options_.amsgrad ? s.max_exp_avg_sq.data<T>() : nullptr;
      const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
      const T one_minus_b1 = static_cast<T>(1 - beta1), one_minus_b2 = static_cast<T>(1 - beta2);
      const T wd = static_cast<T>(options_.weight_decay), eps = static_cast<T>(options_.eps);
      const T decay = static_cast<T>(1 - options_.lr * options_.weight_decay);
      const T neg_step = static_cast<T>(-step_size), bc2_sqrt = static_cast<T>(bias_correction2_sqrt);
      // The operation order mirrors torch's kernels (mul_, add_ with alpha, addcmul_, addcdiv_)
      // so float64 results agree with torch to the last bits.
      for (std::int64_t k = 0; k < value.numel(); ++k) {
        T gk = g[k];
        if (decoupled_) {
          w[k] = w[k] * decay;
        } else if (options_.weight_decay != 0) {
          gk = gk + wd * w[k];
        }
        m[k] = m[k] * b1 + one_minus_b1 * gk;
        v[k] = v[k] * b2 + one_minus_b2 * gk * gk;
        T second = v[k];
        if (v_max) second = v_max[k] = std::max(v_max[k], v[k]);
        const T denom = std::sqrt(second) / bc2_sqrt + eps;
        w[k] = w[k] + neg_step * m[k] / denom;
      }
    });
  }
}

AdamW::AdamW(std::vector<Parameter> params, AdamWOptions o)
    : Adam(std::move(params), {o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad}, true, "AdamW") {}

}  // namespace zkynet::optim
