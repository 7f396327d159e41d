#include <zkynet/framework/effects.h>
#include <zkynet/framework/error.h>
#include <zkynet/ops/optim_kernels.h>
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

std::map<std::string, Tensor> SGD::state(std::size_t i) const {
  check_index(i);
  if (!momentum_[i].defined()) return {};
  return {{"momentum_buffer", momentum_[i]}};
}

void SGD::step() {
  // A compiled step replays this call, reading the options (learning rate) at each replay.
  if (capturing_effects()) record_effect("SGD.step", [this] { step(); });
  std::vector<kernels::SgdSlot> slots;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    const Tensor grad = gradient_for_step(p, "SGD");
    if (!grad.defined()) continue;
    const bool first = options_.momentum != 0 && !momentum_[i].defined();
    if (options_.momentum != 0) ensure_state(momentum_[i], p, "SGD");
    slots.push_back({p.value(), grad, momentum_[i], first});
  }
  kernels::sgd_step(slots, {.lr = options_.lr,
                            .momentum = options_.momentum,
                            .dampening = options_.dampening,
                            .weight_decay = options_.weight_decay,
                            .nesterov = options_.nesterov});
}

}  // namespace zkynet::optim
