#include <zkynet/framework/effects.h>
#include <zkynet/framework/error.h>
#include <zkynet/ops/optim_kernels.h>
#include <zkynet/optim/adam.h>

#include <string>
#include <utility>
#include <vector>

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

std::map<std::string, Tensor> Adam::state(std::size_t i) const {
  check_index(i);
  std::map<std::string, Tensor> out;
  const State& s = state_[i];
  for (const auto& [name, t] : {std::pair{"exp_avg", &s.exp_avg}, std::pair{"exp_avg_sq", &s.exp_avg_sq},
                                std::pair{"max_exp_avg_sq", &s.max_exp_avg_sq}}) {
    if (t->defined()) out.emplace(name, *t);
  }
  return out;
}

void Adam::step() {
  if (capturing_effects()) record_effect(std::string(name_) + ".step", [this] { step(); });
  std::vector<kernels::AdamSlot> slots;
  std::vector<State*> stepped;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    const Tensor grad = gradient_for_step(p, name_);
    if (!grad.defined()) continue;
    State& s = state_[i];
    ensure_state(s.exp_avg, p, name_);
    ensure_state(s.exp_avg_sq, p, name_);
    if (options_.amsgrad) ensure_state(s.max_exp_avg_sq, p, name_);
    slots.push_back({p.value(), grad, s.exp_avg, s.exp_avg_sq, s.max_exp_avg_sq, s.step + 1});
    stepped.push_back(&s);
  }
  kernels::adam_step(slots, {.lr = options_.lr,
                             .beta1 = options_.betas.first,
                             .beta2 = options_.betas.second,
                             .eps = options_.eps,
                             .weight_decay = options_.weight_decay,
                             .decoupled_weight_decay = decoupled_,
                             .amsgrad = options_.amsgrad});
  for (State* s : stepped) ++s->step;  // counted once the step has happened
}

AdamW::AdamW(std::vector<Parameter> params, AdamWOptions o)
    : Adam(std::move(params), {o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad}, true, "AdamW") {}

}  // namespace zkynet::optim
