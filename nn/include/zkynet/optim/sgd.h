// Stochastic gradient descent with momentum, Nesterov momentum and weight decay,
// following torch.optim.SGD's update rule.
//
//   optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
//   opt.zero_grad();  loss.back();  opt.step();
#pragma once

#include <zkynet/framework/function.h>

#include <vector>

namespace zkynet::optim {

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD {
 public:
  SGD(std::vector<Parameter> params, SGDOptions options);

  // One update of every parameter that has a gradient; values change in place.
  void step();
  // Refills gradients with zeros, keeping their buffers.
  void zero_grad();
  SGDOptions& options() { return options_; }
  const std::vector<Parameter>& parameters() const { return params_; }

 private:
  std::vector<Parameter> params_;
  std::vector<Tensor> momentum_;  // per parameter, allocated at the first step
  SGDOptions options_;
};

}  // namespace zkynet::optim
