// An LSTM forecaster of the yearly sunspot numbers (1700-2008): from the series so far, predict
// next year's value. Trained through nn::Estimator with truncated back-propagation through
// time on the first 80 % of the years; tested on the rest, where its RMSE is printed next to
// that of the naive forecast "next year = this year", which it must beat (exit 1 otherwise).
// Writes one training window's graph.
//
//   sunspots_lstm [output-dir] [--device cpu|cuda|cuda:N]     (default: zkynet-graphs, cpu)
//
// On a GPU (--device cuda) the Estimator trains there (EstimatorSpec::device): it moves the
// model, and each window as it is used; its forecasts come back on the host.
#include "args.h"
#include "data.h"

#include <zkynet/framework/dot.h>
#include <zkynet/framework/error.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/adam.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <vector>

using namespace zkynet;

// (seq, batch, 1) -> (seq, batch, 1): a stateful LSTM (its state carried from one window to
// the next, gradients cut at window boundaries) and a linear read-out at every step.
class Forecaster : public Module<Forecaster> {
 public:
  explicit Forecaster(std::int64_t hidden)
      : Module({Variable("x")}), lstm_(1, hidden, {.stateful = true}), head_(hidden, 1) {
    register_module("lstm", lstm_);
    register_module("head", head_);
  }
  NodeRef call(const NodeRef& x) { return head_(lstm_(x)); }
  void reset_state() { lstm_.reset_state(); }

 private:
  nn::LSTM lstm_;
  nn::Linear head_;
};

int main(int argc, char** argv) {
  examples::Args args;
  if (const int status = examples::parse_args("sunspots_lstm", argc, argv, args)) return status;
  const std::filesystem::path& out_dir = args.out_dir;
  const Device device = args.device;
  std::filesystem::create_directories(out_dir);
  const auto start = std::chrono::steady_clock::now();

  const examples::Series s = examples::load_sunspots();
  const auto years = static_cast<std::int64_t>(s.value.size());
  const auto train_years = static_cast<std::int64_t>(std::lround(0.8 * static_cast<double>(years)));
  std::printf("sunspots: %lld years (%.0f-%.0f); training on %.0f-%.0f, testing on %.0f-%.0f\n",
              static_cast<long long>(years), s.time.front(), s.time.back(), s.time.front(),
              s.time[train_years - 1], s.time[train_years], s.time.back());

  // Normalized with the training years' mean and standard deviation.
  double mean = 0, var = 0;
  for (std::int64_t t = 0; t < train_years; ++t) mean += s.value[t] / static_cast<double>(train_years);
  for (std::int64_t t = 0; t < train_years; ++t) var += std::pow(s.value[t] - mean, 2) / static_cast<double>(train_years);
  const double sd = std::sqrt(var);
  std::vector<float> z;
  for (double v : s.value) z.push_back(static_cast<float>((v - mean) / sd));

  // Step t reads year t and predicts year t + 1. Layout (features, samples, time): 1 feature,
  // 1 series, years - 1 steps; the first train_years - 1 steps only involve training years.
  const std::int64_t steps = years - 1, train_steps = train_years - 1;
  const Tensor x = Tensor::from_vector(std::vector<float>(z.begin(), z.end() - 1), {1, 1, steps});
  const Tensor y = Tensor::from_vector(std::vector<float>(z.begin() + 1, z.end()), {1, 1, steps});

  nn::manual_seed(0);
  Forecaster model(32);
  optim::Adam adam(model.parameters(), {.lr = 5e-3});
  nn::Estimator est(model, [](const NodeRef& p, const NodeRef& t) { return op::mse_loss(p, t); }, adam,
                    {.epochs = 150, .batchsize = 1, .seqsize = 20, .verbose = false, .device = device.str()});
  est.on_sequence_start([&] { model.reset_state(); });  // each pass over the series starts from zeros
  est.add_callback([](const nn::EpochLog& log) {
    if (log.epoch % 25 == 0) std::printf("epoch %3lld  loss %.4f\n", static_cast<long long>(log.epoch), log.loss);
    return true;
  });
  est.fit(x.slice(2, 0, train_steps), y.slice(2, 0, train_steps));

  // Predict over the whole series (the state runs through the training years into the test
  // years), then compare on the test years: the model's forecast, and "next year = this year".
  const std::vector<double> pred = est.predict(x).to_doubles();
  double se_model = 0, se_naive = 0;
  for (std::int64_t t = train_steps; t < steps; ++t) {
    const double actual = s.value[t + 1];
    se_model += std::pow(pred[t] * sd + mean - actual, 2);
    se_naive += std::pow(s.value[t] - actual, 2);
  }
  const double n_test = static_cast<double>(steps - train_steps);
  const double rmse_model = std::sqrt(se_model / n_test), rmse_naive = std::sqrt(se_naive / n_test);
  std::printf("test RMSE (%lld years): LSTM %.2f, naive last-value forecast %.2f (%s)\n",
              static_cast<long long>(steps - train_steps), rmse_model, rmse_naive, device.str().c_str());

  // The graph of one training step: the loss of the first window of 20 years.
  model.reset_state();
  const Tensor xw = x.slice(2, 0, 20).permute({2, 1, 0}).contiguous().to(device);  // time-major (seq, batch, features)
  const Tensor yw = y.slice(2, 0, 20).permute({2, 1, 0}).contiguous().to(device);
  ModuleGraph step(op::mse_loss(model(xw), yw));
  step.back();
  for (const auto& f : render_graph(step, (out_dir / "sunspots_lstm").string(), {.title = "sunspots LSTM: one window"})) {
    std::cout << "wrote " << f << "\n";
  }
  std::printf("%.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (!(rmse_model < rmse_naive)) {
    std::fprintf(stderr, "sunspots_lstm: the LSTM (RMSE %.2f) does not beat the naive forecast (%.2f)\n", rmse_model, rmse_naive);
    return 1;
  }
  return 0;
}
