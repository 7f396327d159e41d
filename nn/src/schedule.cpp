#include <zkynet/framework/error.h>
#include <zkynet/optim/schedule.h>

#include <cmath>
#include <numbers>
#include <string>

namespace zkynet::optim {

LRScheduler::LRScheduler(Optimizer& optimizer)
    : optimizer_(optimizer), base_lr_(optimizer.lr()), last_lr_(optimizer.lr()) {}

void LRScheduler::step() {
  ++last_epoch_;
  const double lr = compute_lr(optimizer_.lr());
  optimizer_.set_lr(lr);
  last_lr_ = lr;
}

StepLR::StepLR(Optimizer& optimizer, std::int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw UsageError("StepLR: step_size must be positive, got " + std::to_string(step_size));
}

double StepLR::compute_lr(double current_lr) const {
  const std::int64_t epoch = last_epoch();
  if (epoch == 0 || epoch % step_size_ != 0) return current_lr;
  return current_lr * gamma_;
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, std::int64_t T_max, double eta_min)
    : LRScheduler(optimizer), t_max_(T_max), eta_min_(eta_min) {
  if (T_max <= 0) throw UsageError("CosineAnnealingLR: T_max must be positive, got " + std::to_string(T_max));
}

double CosineAnnealingLR::compute_lr(double current_lr) const {
  constexpr double pi = std::numbers::pi;
  const std::int64_t epoch = last_epoch();
  const auto t_max = static_cast<double>(t_max_);
  if (epoch == 0) return current_lr;
  // At the trough the recursive ratio below would divide by zero; torch restarts the climb here.
  // NOTE: C++'s % keeps the sign of the dividend, Python's does not, but both agree on "== 0".
  if ((epoch - 1 - t_max_) % (2 * t_max_) == 0) {
    return current_lr + (base_lr() - eta_min_) * (1 - std::cos(pi / t_max)) / 2;
  }
  const auto e = static_cast<double>(epoch);
  return (1 + std::cos(pi * e / t_max)) / (1 + std::cos(pi * (e - 1) / t_max)) * (current_lr - eta_min_) + eta_min_;
}

}  // namespace zkynet::optim
