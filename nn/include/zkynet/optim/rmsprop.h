// RMSprop, following torch.optim.RMSprop (torch 1.13): gradients divided by a running RMS,
// optionally centered (the running mean's square subtracted, which estimates a variance) and
// with a momentum buffer over the scaled gradients. Note torch's convention, kept here: eps is
// added after the square root, and there is no bias correction.
//
//   optim::RMSprop opt(model.parameters(), {.lr = 1e-2, .alpha = 0.99, .momentum = 0.9, .centered = true});
//   opt.zero_grad();  loss(model(x), y).back();  opt.step();
#pragma once

#include <zkynet/optim/optimizer.h>

#include <cstdint>
#include <vector>

namespace zkynet::optim {

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;  // smoothing constant of the running averages
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};

class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Parameter> params, RMSpropOptions options = {});

  void step() override;
  double lr() const override { return options_.lr; }
  void set_lr(double lr) override;
  std::map<std::string, Tensor> state(std::size_t i) const override;
  RMSpropOptions& options() { return options_; }

 private:
  struct State {  // per parameter, allocated at its first step
    std::int64_t step = 0;
    Tensor square_avg, grad_avg, momentum_buffer;
  };
  RMSpropOptions options_;
  std::vector<State> state_;
};

}  // namespace zkynet::optim
