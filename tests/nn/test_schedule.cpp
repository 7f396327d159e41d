#include <zkynet/optim/adam.h>
#include <zkynet/optim/rmsprop.h>
#include <zkynet/optim/schedule.h>
#include <zkynet/optim/sgd.h>

#include <catch2/catch.hpp>

#include <vector>

using namespace zkynet;

// Reference values come from torch 1.13 (Debian's /usr/bin/python3):
//
//   opt = torch.optim.SGD([w], lr=lr); s = torch.optim.lr_scheduler.StepLR(opt, 3, 0.1)
//   lrs = [s.get_last_lr()[0]] + [(opt.step(), s.step(), s.get_last_lr()[0])[2] for _ in range(n)]

namespace {

// get_last_lr() at construction, then after each of `epochs` steps.
std::vector<double> rates(optim::LRScheduler& schedule, int epochs) {
  std::vector<double> out = {schedule.get_last_lr()};
  for (int e = 0; e < epochs; ++e) {
    schedule.step();
    out.push_back(schedule.get_last_lr());
  }
  return out;
}

// The recursive forms accumulate rounding exactly as torch's do; allow for libm's cos only.
void check_rates(const std::vector<double>& got, const std::vector<double>& expected) {
  REQUIRE(got.size() == expected.size());
  for (std::size_t e = 0; e < got.size(); ++e) {
    INFO("epoch " << e);
    CHECK(got[e] == Approx(expected[e]).epsilon(1e-13).margin(1e-16));
  }
}

Parameter scalar_parameter() { return Parameter("w", Tensor::zeros({1})); }

}  // namespace

TEST_CASE("StepLR multiplies the rate by gamma every step_size epochs, as torch") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 0.1});
  optim::StepLR schedule(opt, 3, 0.1);
  // torch 1.13: StepLR(SGD(lr=0.1), step_size=3, gamma=0.1), epochs 0..10
  check_rates(rates(schedule, 10), {0.1, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.010000000000000002,
                                    0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002,
                                    0.00010000000000000003, 0.00010000000000000003});
}

TEST_CASE("a schedule sets the optimizer's learning rate at each step") {
  Parameter w = scalar_parameter();
  optim::RMSprop opt({w}, {.lr = 1.0});
  optim::StepLR schedule(opt, 2, 0.5);
  CHECK(schedule.get_last_lr() == 1.0);
  // torch 1.13: StepLR(lr=1.0, step_size=2, gamma=0.5) gives 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125
  const std::vector<double> expected = {1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125};
  for (double lr : expected) {
    schedule.step();
    CHECK(schedule.get_last_lr() == lr);
    CHECK(opt.lr() == lr);
    CHECK(opt.options().lr == lr);
  }
}

TEST_CASE("CosineAnnealingLR anneals to eta_min over T_max epochs and climbs back, as torch") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 0.1});
  optim::CosineAnnealingLR schedule(opt, 5, 0.01);
  // torch 1.13: CosineAnnealingLR(SGD(lr=0.1), T_max=5, eta_min=0.01), epochs 0..16
  check_rates(rates(schedule, 16),
              {0.1, 0.09140576474687263, 0.06890576474687263, 0.04109423525312736, 0.018594235253127367, 0.01,
               0.018594235253127367, 0.04109423525312739, 0.06890576474687267, 0.09140576474687269,
               0.10000000000000006, 0.09140576474687272, 0.06890576474687268, 0.0410942352531274,
               0.01859423525312738, 0.01, 0.018594235253127367});
}

TEST_CASE("CosineAnnealingLR with eta_min 0 reaches 0 at T_max") {
  Parameter w = scalar_parameter();
  optim::Adam opt({w}, {.lr = 1.0});
  optim::CosineAnnealingLR schedule(opt, 4);
  // torch 1.13: CosineAnnealingLR(lr=1.0, T_max=4), epochs 0..9
  check_rates(rates(schedule, 9), {1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0, 0.1464466094067262,
                                   0.5000000000000001, 0.8535533905932742, 1.0000000000000004, 0.8535533905932742});
}

TEST_CASE("a schedule carries on from a learning rate set by hand, as torch's chainable form does") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 1.0});
  optim::CosineAnnealingLR schedule(opt, 4);
  schedule.step();
  opt.set_lr(0.5);
  schedule.step();
  // torch 1.13: after epoch 1, param_groups[0]['lr'] = 0.5; the epoch-2 rate is 0.2928932188134525
  CHECK(schedule.get_last_lr() == Approx(0.2928932188134525).epsilon(1e-13));
}

TEST_CASE("Adam under StepLR follows torch over five epochs") {
  // torch 1.13: w0 = [1, -2, 0.5, 3], Adam(lr=0.1), StepLR(step_size=2, gamma=0.5); each epoch
  // sets w.grad = w**3 - [0.5, 1, -1, 2], then opt.step(), then schedule.step().
  Parameter w("w", Tensor{1.0, -2.0, 0.5, 3.0});
  const std::vector<double> target = {0.5, 1.0, -1.0, 2.0};
  optim::Adam opt({w}, {.lr = 0.1});
  optim::StepLR schedule(opt, 2, 0.5);
  for (int epoch = 0; epoch < 5; ++epoch) {
    std::vector<double> g = w.value().to_doubles();
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = g[k] * g[k] * g[k] - target[k];
    opt.zero_grad();
    w.accumulate_grad(Tensor::from_vector(g, {4}));
    opt.step();
    schedule.step();
  }
  CHECK(schedule.get_last_lr() == 0.025);
  CHECK(allclose(w.value(), Tensor{0.7333817223653387, -1.6783896651733599, 0.17579595647584217, 2.677599648586489},
                 1e-12, 1e-15));
}

TEST_CASE("a schedule records its base rate and counts epochs from 0") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 0.3});
  optim::StepLR schedule(opt, 1, 0.5);
  CHECK(schedule.last_epoch() == 0);
  schedule.step();
  schedule.step();
  CHECK(schedule.last_epoch() == 2);
  CHECK(schedule.base_lr() == 0.3);
  CHECK(opt.lr() == 0.075);
}

TEST_CASE("schedules refuse a non-positive period") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 0.1});
  CHECK_THROWS_AS(optim::StepLR(opt, 0), UsageError);
  CHECK_THROWS_AS(optim::CosineAnnealingLR(opt, 0), UsageError);
  CHECK_THROWS_AS(optim::CosineAnnealingLR(opt, -3), UsageError);
}

TEST_CASE("WarmupCosineLR warms up linearly, decays along a cosine to min_lr, then stays there") {
  Parameter w = scalar_parameter();
  optim::AdamW opt({w}, {.lr = 0.1});
  optim::WarmupCosineLR schedule(opt, /*warmup_steps=*/3, /*total_steps=*/8, /*min_lr=*/0.01);
  // By hand: 0.1 (t + 1) / 3 for t < 3; 0.01 + 0.09 (1 + cos(pi (t - 3) / 5)) / 2 for 3 <= t <= 8; 0.01 after.
  // torch 1.13's LambdaLR(AdamW(lr=0.1), lambda t: that / 0.1) gives the same to the last bit but
  // one (0.10000000000000003 at t = 2: it multiplies 0.1 by the factor).
  check_rates(rates(schedule, 10), {0.03333333333333333, 0.06666666666666667, 0.1, 0.1, 0.09140576474687263,
                                    0.06890576474687264, 0.04109423525312737, 0.01859423525312737, 0.01, 0.01,
                                    0.01});
  CHECK(opt.lr() == 0.01);
  CHECK(schedule.last_epoch() == 10);
  CHECK(schedule.base_lr() == 0.1);
}

TEST_CASE("WarmupCosineLR sets the warmup's first rate at construction and overrides rates set by hand") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 1.0});
  optim::WarmupCosineLR schedule(opt, 4, 10);
  CHECK(opt.lr() == 0.25);
  CHECK(schedule.get_last_lr() == 0.25);
  opt.set_lr(123.0);
  schedule.step();
  CHECK(opt.lr() == 0.5);  // a closed form of the step count, as torch's LambdaLR
}

TEST_CASE("WarmupCosineLR without warmup starts the cosine at the base rate and ends at 0") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 1.0});
  optim::WarmupCosineLR schedule(opt, 0, 4);
  // cos(pi t / 4): 1, 0.853..., 0.5, 0.146..., 0, then 0
  check_rates(rates(schedule, 5), {1.0, 0.8535533905932737, 0.5, 0.1464466094067262, 0.0, 0.0});
  optim::SGD opt2({w}, {.lr = 1.0});
  optim::WarmupCosineLR all_warmup(opt2, 4, 4, 0.5);  // no decay phase: min_lr from total_steps on
  CHECK(all_warmup.lr_at(3) == 1.0);
  CHECK(all_warmup.lr_at(4) == 0.5);
}

TEST_CASE("WarmupCosineLR refuses impossible step counts and a negative floor") {
  Parameter w = scalar_parameter();
  optim::SGD opt({w}, {.lr = 1.0});
  CHECK_THROWS_AS(optim::WarmupCosineLR(opt, 1, 0), UsageError);
  CHECK_THROWS_AS(optim::WarmupCosineLR(opt, -1, 10), UsageError);
  CHECK_THROWS_AS(optim::WarmupCosineLR(opt, 11, 10), UsageError);
  CHECK_THROWS_AS(optim::WarmupCosineLR(opt, 1, 10, -1e-3), UsageError);
  CHECK(opt.lr() == 1.0);  // a refused schedule leaves the rate alone
}
