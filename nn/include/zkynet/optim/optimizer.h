// The base of zkynet's optimizers (torch.optim.Optimizer with one parameter group).
//
//   optim::Adam adam(model.parameters(), {.lr = 1e-3});
//   optim::Optimizer& opt = adam;            // schedules and training loops take the base
//   opt.zero_grad();  loss.back();  opt.step();
//   opt.set_lr(opt.lr() * 0.5);
#pragma once

#include <zkynet/framework/function.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace zkynet::optim {

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient; values change in place.
  virtual void step() = 0;
  // Refills gradients with zeros, keeping their buffers (no reallocation in the training loop).
  void zero_grad();

  // The learning rate lives in each optimizer's options struct; these reach it through the base
  // so that schedules work with any optimizer.
  virtual double lr() const = 0;
  virtual void set_lr(double lr) = 0;

  const std::vector<Parameter>& parameters() const { return params_; }
  // The state of parameters()[i] under torch's names (optimizer.state[p]), the tensors that have
  // been allocated so far (none before its first step); they live on the parameter's device.
  // IndexError when i is out of range.
  virtual std::map<std::string, Tensor> state(std::size_t i) const;

 protected:
  explicit Optimizer(std::vector<Parameter> params) : params_(std::move(params)) {}
  Optimizer(const Optimizer&) = default;
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(const Optimizer&) = default;
  Optimizer& operator=(Optimizer&&) = default;

  // The gradient of `p` as a contiguous tensor of the value's dtype and device, or an undefined
  // tensor when `p` takes no update (no gradient yet, or frozen). Throws when the value cannot be
  // updated in place.
  static Tensor gradient_for_step(const Parameter& p, std::string_view optimizer);
  // Allocates per-parameter state (zeros like the value, on its device) on first use, and moves
  // it to the value's device when the parameter has moved since (Module::to); a value whose
  // shape or dtype changed since (Parameter::set_value) is refused rather than read out of bounds.
  static void ensure_state(Tensor& state, const Parameter& p, std::string_view optimizer);
  // torch.optim's argument checks: UsageError naming the optimizer and the option.
  static void check_non_negative(double value, std::string_view optimizer, std::string_view option);
  // IndexError unless i < params_.size().
  void check_index(std::size_t i) const;

  std::vector<Parameter> params_;
};

}  // namespace zkynet::optim
