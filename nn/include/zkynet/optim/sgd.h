// Stochastic gradient descent with momentum, Nesterov momentum and weight decay,
// following torch.optim.SGD's update rule.
//
//   optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
//   opt.zero_grad();  loss.back();  opt.step();
#pragma once

#include <zkynet/optim/optimizer.h>

#include <vector>

namespace zkynet::optim {

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Parameter> params, SGDOptions options);

  void step() override;
  double lr() const override { return options_.lr; }
  void set_lr(double lr) override;
  std::map<std::string, Tensor> state(std::size_t i) const override;
  SGDOptions& options() { return options_; }

 private:
  std::vector<Tensor> momentum_;  // per parameter, allocated at its first step
  SGDOptions options_;
};

}  // namespace zkynet::optim
