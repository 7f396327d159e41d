#include <zkynet/framework/effects.h>
#include <zkynet/framework/error.h>
#include <zkynet/ops/optim_kernels.h>
#include <zkynet/optim/rmsprop.h>

#include <utility>
#include <vector>

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

std::map<std::string, Tensor> RMSprop::state(std::size_t i) const {
  check_index(i);
  std::map<std::string, Tensor> out;
  const State& s = state_[i];
  for (const auto& [name, t] : {std::pair{"square_avg", &s.square_avg}, std::pair{"grad_avg", &s.grad_avg},
                                std::pair{"momentum_buffer", &s.momentum_buffer}}) {
    if (t->defined()) out.emplace(name, *t);
  }
  return out;
}

void RMSprop::step() {
  if (capturing_effects()) record_effect("RMSprop.step", [this] { step(); });
  std::vector<kernels::RmspropSlot> slots;
  std::vector<State*> stepped;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    const Tensor grad = gradient_for_step(p, "RMSprop");
    if (!grad.defined()) continue;
    State& s = state_[i];
    ensure_state(s.square_avg, p, "RMSprop");
    if (options_.centered) ensure_state(s.grad_avg, p, "RMSprop");
    // Unlike SGD's, torch's RMSprop momentum buffer starts at zero rather than at the first update.
    if (options_.momentum > 0) ensure_state(s.momentum_buffer, p, "RMSprop");
    slots.push_back({p.value(), grad, s.square_avg, s.grad_avg, s.momentum_buffer});
    stepped.push_back(&s);
  }
  kernels::rmsprop_step(slots, {.lr = options_.lr,
                                .alpha = options_.alpha,
                                .eps = options_.eps,
                                .weight_decay = options_.weight_decay,
                                .momentum = options_.momentum,
                                .centered = options_.centered});
  for (State* s : stepped) ++s->step;
}

}  // namespace zkynet::optim
