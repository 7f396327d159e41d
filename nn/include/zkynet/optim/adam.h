// Adam and AdamW, following torch.optim.Adam / torch.optim.AdamW (torch 1.13) update for update:
// bias-corrected first and second moments, optional AMSGrad, and weight decay either added to
// the gradient (Adam, L2 regularization) or applied to the weights directly (AdamW, decoupled).
//
//   optim::Adam adam(model.parameters(), {.lr = 1e-3, .betas = {0.9, 0.999}, .amsgrad = true});
//   optim::AdamW adamw(model.parameters(), {.lr = 1e-3, .weight_decay = 1e-2});
//   adam.zero_grad();  loss(model(x), y).back();  adam.step();
#pragma once

#include <zkynet/optim/optimizer.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace zkynet::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
};

// AdamOptions with torch.optim.AdamW's default weight decay.
struct AdamWOptions {
  double lr = 1e-3;
  std::pair<double, double> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Parameter> params, AdamOptions options = {});

  void step() override;
  double lr() const override { return options_.lr; }
  void set_lr(double lr) override;
  std::map<std::string, Tensor> state(std::size_t i) const override;
  AdamOptions& options() { return options_; }

 protected:
  Adam(std::vector<Parameter> params, AdamOptions options, bool decoupled_weight_decay, const char* name);

 private:
  // Per parameter, allocated at its first step. Steps are counted per parameter, as in torch,
  // so a parameter that first receives a gradient late starts with full bias correction.
  struct State {
    std::int64_t step = 0;
    Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  AdamOptions options_;
  bool decoupled_;
  const char* name_;
  std::vector<State> state_;
};

// Adam with decoupled weight decay: w <- w * (1 - lr * weight_decay) before the Adam update.
// options() gives the AdamOptions view of the same settings.
class AdamW : public Adam {
 public:
  AdamW(std::vector<Parameter> params, AdamWOptions options = {});
};

}  // namespace zkynet::optim
