#include <zkynet/framework/error.h>
#include <zkynet/optim/rmsprop.h>

#include <cmath>

namespace zkynet::optim {

RMSprop::RMSprop(std::vector<Parameter> params, RMSpropOptions options)
    : Optimizer(std::move(params)), options_(options), state_(params_.size()) {
  check_non_negative(options.lr, "RMSprop", "learning rate");
  check_non_negative(options.eps, "RMSprop", "eps");
  check_non_negative(options.momentum, "RMSprop", "momentum");
  check_non_negative(options.weight_decay, "RMSprop", "weight_decay");
  check_non_negative(options.alpha, "RMSprop", "alpha");
}

void RMSprop::set_lr(double lr) {
  check_non_negative(lr, "RMSprop", "learning rate");
  options_.lr = lr;
}

void RMSprop::step() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    const Tensor grad = gradient_for_step(p, "RMSprop");
    if (!grad.defined()) continue;
    State& s = state_[i];
    ensure_state(s.square_avg, p, "RMSprop");
    if (options_.centered) ensure_state(s.grad_avg, p, "RMSprop");
    // Unlike SGD's, torch's RMSprop momentum buffer starts at zero rather than at the first update.
    if (options_.momentum > 0) ensure_state(s.momentum_buffer, p, "RMSprop");
    ++s.step;
    Tensor value = p.value();
    dispatch_floating(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* w = value.data<T>();
      value.bump_version();
      const T* g = grad.data<T>();
      T* sq = s.square_avg.data<T>();
      T* ga = options_.centered ? s.grad_avg.data<T>() : nullptr;
      T* buf = options_.momentum > 0 ? s.momentum_buffer.data<T>() : nullptr;
      const T alpha = static_cast<T>(options_.alpha), one_minus_alpha = static_cast<T>(1 - options_.alpha);
      const T wd = static_cast<T>(options_.weight_decay), eps = static_cast<T>(options_.eps);
      const T mu = static_cast<T>(options_.momentum), neg_lr = static_cast<T>(-options_.lr);
      // The operation order mirrors torch's kernels (mul_, add_ with alpha, addcmul_, addcdiv_).
      for (std::int64_t k = 0; k < value.numel(); ++k) {
        T gk = g[k];
        if (options_.weight_decay != 0) gk = gk + wd * w[k];
        sq[k] = sq[k] * alpha + one_minus_alpha * gk * gk;
        T avg;
        if (ga) {
          ga[k] = ga[k] * alpha + one_minus_alpha * gk;
          avg = std::sqrt(sq[k] + T(-1) * ga[k] * ga[k]);
        } else {
          avg = std::sqrt(sq[k]);
        }
        avg = avg + eps;
        if (buf) {
          buf[k] = buf[k] * mu + gk / avg;
          w[k] = w[k] + neg_lr * buf[k];
        } else {
          w[k] = w[k] + neg_lr * gk / avg;
        }
      }
    });
  }
}

}  // namespace zkynet::optim
