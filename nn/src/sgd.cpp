#include <zkynet/framework/error.h>
#include <zkynet/optim/sgd.h>

namespace zkynet::optim {

SGD::SGD(std::vector<Parameter> params, SGDOptions options)
    : Optimizer(std::move(params)), momentum_(params_.size()), options_(options) {
  check_non_negative(options.lr, "SGD", "learning rate");
  check_non_negative(options.momentum, "SGD", "momentum");
  check_non_negative(options.weight_decay, "SGD", "weight_decay");
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0)) {
    throw UsageError("SGD: Nesterov momentum needs momentum > 0 and dampening 0");
  }
}

void SGD::set_lr(double lr) {
  check_non_negative(lr, "SGD", "learning rate");
  options_.lr = lr;
}

void SGD::step() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    const Tensor grad = gradient_for_step(p, "SGD");
    if (!grad.defined()) continue;
    Tensor value = p.value();
    const bool first = options_.momentum != 0 && !momentum_[i].defined();
    if (options_.momentum != 0) ensure_state(momentum_[i], p, "SGD");
    dispatch_floating(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* w = value.data<T>();
      value.bump_version();
      const T* g = grad.data<T>();
      T* buf = options_.momentum != 0 ? momentum_[i].data<T>() : nullptr;
      const T lr = static_cast<T>(options_.lr), wd = static_cast<T>(options_.weight_decay);
      const T mu = static_cast<T>(options_.momentum), damp = static_cast<T>(1 - options_.dampening);
      for (std::int64_t k = 0; k < value.numel(); ++k) {
        T d = g[k] + wd * w[k];
        if (buf) {
          // torch.optim.SGD: the first step copies d into the buffer, later ones average it in.
          buf[k] = first ? d : mu * buf[k] + damp * d;
          d = options_.nesterov ? d + mu * buf[k] : buf[k];
        }
        w[k] -= lr * d;
      }
    });
  }
}

}  // namespace zkynet::optim
