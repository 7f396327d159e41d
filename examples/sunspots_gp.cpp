// Exact Gaussian-process regression on the yearly sunspot numbers (1700-2008), the series of
// sunspots_lstm.cpp with the same split: each year is predicted from the 8 years before it
// (normalized with the training years' mean and deviation), trained on the first 80 % of the
// years, tested on the rest. Kernel: k(x, x') = s_f^2 exp(-|x - x'|^2 / (2 l^2)) + s_n^2 [x = x'].
// Its hyper-parameters (log l, log s_f, log s_n) are learned by maximising the log marginal
// likelihood
//   log p(y) = -1/2 y^T K^{-1} y - 1/2 log|K| - n/2 log(2 pi)
// with Adam, the gradient flowing through op::linalg::cholesky, cholesky_solve and slogdet
// (checked against central differences first). Prints the test RMSE next to the naive forecast
// "next year = this year", which it must beat (exit 1 otherwise), and next to the RMSE of
// sunspots_lstm.cpp's LSTM, trained here the same way (its code repeated, a second or so).
//
//   sunspots_gp
#include "data.h"

#include <zkynet/framework/functional.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/adam.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/linalg.h>
#include <zkynet/ops/ops.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

using namespace zkynet;
namespace la = zkynet::op::linalg;

namespace {

constexpr std::int64_t kLags = 8;

// -log p(y | X, theta): theta = (log l, log s_f, log s_n); d2 the squared distances between the
// training inputs, y (n, 1).
NodeRef negative_log_likelihood(const NodeRef& theta, const Tensor& d2, const Tensor& y) {
  const std::int64_t n = y.size(0);
  auto at = [&](std::int64_t i) { return op::slice(theta, 0, i, i + 1); };  // (1,): broadcasts
  const NodeRef inv_l2 = op::exp(op::mult(at(0), -2.0));
  const NodeRef k = op::add(op::mult(op::exp(op::mult(at(1), 2.0)), op::exp(op::mult(d2, op::mult(inv_l2, -0.5)))),
                            op::mult(op::exp(op::mult(at(2), 2.0)), Tensor::eye(n)));
  const NodeRef alpha = la::cholesky_solve(y, la::cholesky(k));  // K^{-1} y
  const NodeRef fit = op::mult(op::sum(op::mult(y, alpha)), 0.5);
  const NodeRef complexity = op::mult(la::slogdet(k).logabsdet, 0.5);
  return op::add(op::add(fit, complexity), 0.5 * double(n) * std::log(2 * std::numbers::pi));
}

// sunspots_lstm.cpp's forecaster and training, for the comparison: its test RMSE.
class Forecaster : public Module<Forecaster> {
 public:
  explicit Forecaster(std::int64_t hidden) : Module({Variable("x")}), lstm_(1, hidden, {.stateful = true}), head_(hidden, 1) {
    register_module("lstm", lstm_);
    register_module("head", head_);
  }
  NodeRef call(const NodeRef& x) { return head_(lstm_(x)); }
  void reset_state() { lstm_.reset_state(); }

 private:
  nn::LSTM lstm_;
  nn::Linear head_;
};

double lstm_rmse(const examples::Series& s, const std::vector<double>& z, std::int64_t train_years, double mean,
                 double sd) {
  const auto years = static_cast<std::int64_t>(z.size());
  const std::int64_t steps = years - 1, train_steps = train_years - 1;
  const std::vector<float> zf(z.begin(), z.end());
  const Tensor x = Tensor::from_vector(std::vector<float>(zf.begin(), zf.end() - 1), {1, 1, steps});
  const Tensor y = Tensor::from_vector(std::vector<float>(zf.begin() + 1, zf.end()), {1, 1, steps});
  nn::manual_seed(0);
  Forecaster model(32);
  optim::Adam adam(model.parameters(), {.lr = 5e-3});
  nn::Estimator est(model, [](const NodeRef& p, const NodeRef& t) { return op::mse_loss(p, t); }, adam,
                    {.epochs = 150, .batchsize = 1, .seqsize = 20, .verbose = false});
  est.on_sequence_start([&] { model.reset_state(); });
  est.fit(x.slice(2, 0, train_steps), y.slice(2, 0, train_steps));
  const std::vector<double> pred = est.predict(x).to_doubles();
  double se = 0;
  for (std::int64_t t = train_steps; t < steps; ++t) se += std::pow(pred[t] * sd + mean - s.value[t + 1], 2);
  return std::sqrt(se / static_cast<double>(steps - train_steps));
}

double sq_dist(const std::vector<double>& z, std::int64_t a, std::int64_t b) {
  double d = 0;  // between the windows ending before years a and b
  for (std::int64_t j = 1; j <= kLags; ++j) d += std::pow(z[a - j] - z[b - j], 2);
  return d;
}

}  // namespace

int main() {
  const auto start = std::chrono::steady_clock::now();
  const examples::Series s = examples::load_sunspots();
  const auto years = static_cast<std::int64_t>(s.value.size());
  const auto train_years = static_cast<std::int64_t>(std::lround(0.8 * static_cast<double>(years)));
  double mean = 0, var = 0;
  for (std::int64_t t = 0; t < train_years; ++t) mean += s.value[t] / static_cast<double>(train_years);
  for (std::int64_t t = 0; t < train_years; ++t) var += std::pow(s.value[t] - mean, 2) / static_cast<double>(train_years);
  const double sd = std::sqrt(var);
  std::vector<double> z;
  for (double v : s.value) z.push_back((v - mean) / sd);

  // Training targets: years kLags .. train_years - 1; test targets: train_years .. years - 1.
  std::vector<std::int64_t> train, test;
  for (std::int64_t t = kLags; t < years; ++t) (t < train_years ? train : test).push_back(t);
  const auto n = static_cast<std::int64_t>(train.size());
  Tensor d2 = Tensor::empty({n, n}), y = Tensor::empty({n, 1});
  for (std::int64_t i = 0; i < n; ++i) {
    y.data<double>()[i] = z[train[i]];
    for (std::int64_t j = 0; j < n; ++j) d2.data<double>()[i * n + j] = sq_dist(z, train[i], train[j]);
  }
  std::printf("sunspots GP: %lld training years (%.0f-%.0f), %lld test years, each from the %lld before\n",
              static_cast<long long>(n), s.time[train.front()], s.time[train.back()],
              static_cast<long long>(test.size()), static_cast<long long>(kLags));

  const auto nll = zkynet::value_and_grad(
      [&](std::span<const NodeRef> x) { return negative_log_likelihood(x[0], d2, y); });
  std::array<double, 3> theta{std::log(std::sqrt(double(kLags))), 0.0, std::log(0.1)};
  auto as_tensor = [](const std::array<double, 3>& t) { return Tensor{t[0], t[1], t[2]}; };

  // The gradient through cholesky, cholesky_solve and slogdet against central differences.
  const ValueAndGrad first = nll({as_tensor(theta)});
  double worst = 0;
  for (int i = 0; i < 3; ++i) {
    auto shifted = theta;
    shifted[i] += 1e-6;
    const double up = nll({as_tensor(shifted)}).value.item();
    shifted[i] -= 2e-6;
    const double down = nll({as_tensor(shifted)}).value.item();
    const double numeric = (up - down) / 2e-6;
    worst = std::max(worst, std::abs(first.grads[0].at({i}) - numeric) / std::max(1.0, std::abs(numeric)));
  }
  std::printf("gradient vs central differences: largest relative error %.1e\n", worst);

  // Adam on -log p(y).
  std::array<double, 3> m{}, v{};
  const double lr = 0.05, b1 = 0.9, b2 = 0.999;
  double value = 0;
  for (int step = 1; step <= 300; ++step) {
    const ValueAndGrad r = nll({as_tensor(theta)});
    value = r.value.item();
    for (int i = 0; i < 3; ++i) {
      const double g = r.grads[0].at({i});
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      theta[i] -= lr * (m[i] / (1 - std::pow(b1, step))) / (std::sqrt(v[i] / (1 - std::pow(b2, step))) + 1e-8);
    }
    if (step == 1 || step % 100 == 0) std::printf("step %3d  -log p(y) %.3f\n", step, value);
  }
  const double l = std::exp(theta[0]), sf = std::exp(theta[1]), sn = std::exp(theta[2]);
  std::printf("learned: length-scale %.3f, signal sd %.3f, noise sd %.3f (normalized units)\n", l, sf, sn);

  // Predictive mean k_*^T K^{-1} y on the test years (from the actual previous years, as the LSTM).
  Tensor k = kernels::scale(kernels::exp(kernels::scale(d2, -0.5 / (l * l))), sf * sf);
  k = kernels::add(k, kernels::scale(Tensor::eye(n), sn * sn));
  const Tensor alpha = la::cholesky_solve(y, la::cholesky(k)).value();
  double se_gp = 0, se_naive = 0;
  for (std::int64_t t : test) {
    double pred = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      pred += sf * sf * std::exp(-0.5 * sq_dist(z, t, train[j]) / (l * l)) * alpha.data<double>()[j];
    }
    se_gp += std::pow(pred * sd + mean - s.value[t], 2);
    se_naive += std::pow(s.value[t - 1] - s.value[t], 2);
  }
  const double n_test = static_cast<double>(test.size());
  const double rmse_gp = std::sqrt(se_gp / n_test), rmse_naive = std::sqrt(se_naive / n_test);
  const double rmse_lstm = lstm_rmse(s, z, train_years, mean, sd);
  std::printf("test RMSE (%lld years): GP %.2f, LSTM (sunspots_lstm) %.2f, naive last-value forecast %.2f\n",
              static_cast<long long>(test.size()), rmse_gp, rmse_lstm, rmse_naive);
  std::printf("%.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (!(worst < 1e-5) || !(rmse_gp < rmse_naive)) {
    std::fprintf(stderr, "sunspots_gp: gradient error %.1e or RMSE %.2f not below the naive %.2f\n", worst, rmse_gp,
                 rmse_naive);
    return 1;
  }
  return 0;
}
