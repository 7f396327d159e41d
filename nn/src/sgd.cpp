#include <zkynet/framework/error.h>
#include <zkynet/optim/sgd.h>

namespace zkynet::optim {

SGD::SGD(std::vector<Parameter> params, SGDOptions options)
    : params_(std::move(params)), momentum_(params_.size()), options_(options) {
  if (options.lr < 0) throw UsageError("SGD: learning rate must be non-negative, got " + std::to_string(options.lr));
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0)) {
    throw UsageError("SGD: Nesterov momentum needs momentum > 0 and dampening 0");
  }
}

void SGD::step() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    if (!p.grad().defined() || !p.requires_grad()) continue;
    Tensor value = p.value();
    const Tensor grad = p.grad().to(value.dtype()).contiguous();
    if (!value.is_contiguous()) throw UsageError("SGD: parameter '" + p.functional_name() + "' is not contiguous");
    const bool first = options_.momentum != 0 && !momentum_[i].defined();
    if (first) momentum_[i] = Tensor::zeros(value.shape(), value.dtype());
    dispatch_floating(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* w = value.data<T>();
      const T* g = grad.data<T>();
      T* buf = momentum_[i].defined() ? momentum_[i].data<T>() : nullptr;
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

void SGD::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

}  // namespace zkynet::optim
