// Learning-rate schedules, stepped once per epoch (or per batch: WarmupCosineLR), with
// torch.optim.lr_scheduler's values.
//
//   optim::SGD opt(model.parameters(), {.lr = 0.1});
//   optim::CosineAnnealingLR schedule(opt, /*T_max=*/50, /*eta_min=*/1e-4);
//   for (int epoch = 0; epoch < 50; ++epoch) {
//     train_one_epoch(model, opt);          // opt.step() per batch
//     schedule.step();                      // sets opt's learning rate for the next epoch
//   }
//
// A schedule holds a reference to its optimizer, which must outlive it. Like torch's, each step
// derives the new rate from the optimizer's current one (the "chainable" form), so a rate changed
// by hand between epochs carries on from there. WarmupCosineLR is the exception: a closed form of
// the step count, as torch's LambdaLR, so it sets its own rate again at each step.
//
//   optim::AdamW adamw(model.parameters(), {.lr = 3e-3});
//   optim::WarmupCosineLR schedule(adamw, /*warmup_steps=*/100, /*total_steps=*/1000);
//   for (int step = 0; step < 1000; ++step) { train_one_batch(model, adamw); schedule.step(); }
#pragma once

#include <zkynet/optim/optimizer.h>

#include <cstdint>

namespace zkynet::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Ends an epoch: advances last_epoch() and sets the optimizer's learning rate.
  void step();
  // The rate set by the last step (the optimizer's rate at construction before any step).
  double get_last_lr() const { return last_lr_; }
  // Epochs stepped so far; 0 right after construction, as in torch.
  std::int64_t last_epoch() const { return last_epoch_; }
  // The optimizer's learning rate when the schedule was made (torch's initial_lr).
  double base_lr() const { return base_lr_; }

 protected:
  explicit LRScheduler(Optimizer& optimizer);
  // torch's get_lr() at last_epoch(), given the optimizer's current rate.
  virtual double compute_lr(double current_lr) const = 0;
  // Sets the optimizer's rate at construction (torch's LambdaLR applies its factor at epoch 0).
  void set_initial_lr(double lr);

 private:
  Optimizer& optimizer_;
  double base_lr_;
  double last_lr_;
  std::int64_t last_epoch_ = 0;
};

// Multiplies the rate by gamma every step_size epochs: lr = base_lr * gamma^(epoch / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, std::int64_t step_size, double gamma = 0.1);

 protected:
  double compute_lr(double current_lr) const override;

 private:
  std::int64_t step_size_;
  double gamma_;
};

// Cosine annealing from base_lr down to eta_min over T_max epochs, then back up (period 2 T_max):
// lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2, computed recursively as torch does.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, std::int64_t T_max, double eta_min = 0.0);

 protected:
  double compute_lr(double current_lr) const override;

 private:
  std::int64_t t_max_;
  double eta_min_;
};

// Linear warmup, then a cosine decay to min_lr (the schedule of GPT-style training, stepped once
// per optimizer step). With t = last_epoch() and W = warmup_steps, T = total_steps:
//   t <  W:      lr = base_lr (t + 1) / W                 (base_lr / W at construction, base_lr at t = W - 1)
//   W <= t <= T: lr = min_lr + (base_lr - min_lr) (1 + cos(pi (t - W) / (T - W))) / 2
//   t >  T:      lr = min_lr
// torch has no class for it; it equals LambdaLR(optimizer, lambda t: lr(t) / base_lr). The first
// step trains at base_lr / W rather than at 0 (nanoGPT's warmup); warmup_steps = 0 starts the
// cosine at base_lr. UsageError unless 0 <= warmup_steps <= total_steps, total_steps > 0 and
// min_lr >= 0.
class WarmupCosineLR : public LRScheduler {
 public:
  WarmupCosineLR(Optimizer& optimizer, std::int64_t warmup_steps, std::int64_t total_steps, double min_lr = 0.0);

  // lr(t) above, for any t >= 0 (what step() sets after t steps).
  double lr_at(std::int64_t t) const;

 protected:
  double compute_lr(double current_lr) const override;

 private:
  std::int64_t warmup_;
  std::int64_t total_;
  double min_lr_;
};

}  // namespace zkynet::optim
