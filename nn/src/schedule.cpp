#include <zkynet/framework/effects.h>
#include <zkynet/framework/error.h>
#include <zkynet/optim/schedule.h>

#include <cmath>
#include <numbers>
#include <string>

namespace zkynet::optim {

LRScheduler::LRScheduler(Optimizer& optimizer)
    : optimizer_(optimizer), base_lr_(optimizer.lr()), last_lr_(optimizer.lr()) {}

void LRScheduler::set_initial_lr(double lr) {
  optimizer_.set_lr(lr);
  last_lr_ = lr;
}

void LRScheduler::step() {
  if (capturing_effects()) record_effect("LRScheduler.step", [this] { step(); });
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

WarmupCosineLR::WarmupCosineLR(Optimizer& optimizer, std::int64_t warmup_steps, std::int64_t total_steps,
                               double min_lr)
    : LRScheduler(optimizer), warmup_(warmup_steps), total_(total_steps), min_lr_(min_lr) {
  if (total_steps <= 0) {
    throw UsageError("WarmupCosineLR: total_steps must be positive, got " + std::to_string(total_steps));
  }
  if (warmup_steps < 0 || warmup_steps > total_steps) {
    throw UsageError("WarmupCosineLR: warmup_steps must be in [0, total_steps = " + std::to_string(total_steps) +
                     "], got " + std::to_string(warmup_steps));
  }
  if (!(min_lr >= 0)) throw UsageError("WarmupCosineLR: min_lr must be non-negative, got " + std::to_string(min_lr));
  set_initial_lr(lr_at(0));
}

double WarmupCosineLR::lr_at(std::int64_t t) const {
  if (t < warmup_) return base_lr() * static_cast<double>(t + 1) / static_cast<double>(warmup_);
  if (t >= total_) return min_lr_;  // also the end of the cosine when warmup_ == total_ (no decay phase)
  const double progress = static_cast<double>(t - warmup_) / static_cast<double>(total_ - warmup_);
  return min_lr_ + (base_lr() - min_lr_) * (1 + std::cos(std::numbers::pi * progress)) / 2;
}

double WarmupCosineLR::compute_lr(double /*current_lr*/) const { return lr_at(last_epoch()); }

}  // namespace zkynet::optim
