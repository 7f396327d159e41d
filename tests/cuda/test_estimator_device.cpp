// Estimator(device = "cuda") (issue 13 §2): the model moves to the GPU, every batch and series
// window follows it, predictions come back on the host; the epoch losses equal the CPU's within
// float32 tolerance (TF32 off). Part of the CUDA suite (skipped without a device).
#include <zkynet/framework/cuda.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/adam.h>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace zkynet;

namespace {

nn::Estimator::Loss mse() {
  return [](const NodeRef& p, const NodeRef& t) { return op::mse_loss(p, t); };
}

struct Run {
  std::vector<double> losses, val_losses;
  Tensor prediction;
};

void require_close(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
  INFO(what);
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(1e-4).margin(1e-6));
}

// MLP 4 -> 16 -> 1 on 96 rows, minibatches of 16, a validation split; Adam.
Run fit_mlp(const std::string& device) {
  Generator gen(11);
  const Tensor x = Tensor::randn({96, 4}, gen).to(DType::Float32);
  const Tensor y = op::sum(op::mult(x, x), {1}, true).value();
  nn::manual_seed(5);
  nn::Sequential model;
  model.add<nn::Linear>(4, 16);
  model.add<nn::Tanh>();
  model.add<nn::Linear>(16, 1);
  optim::Adam adam(model.parameters(), {.lr = 1e-2});
  nn::Estimator est(model, mse(), adam,
                    {.epochs = 4, .batchsize = 16, .validation_split = 0.25, .shuffle = true, .seed = 3,
                     .verbose = false, .device = device});
  REQUIRE(model.parameters()[0].value().device() == est.device());
  Run r;
  for (const nn::EpochLog& log : est.fit(x, y)) {
    r.losses.push_back(log.loss);
    r.val_losses.push_back(*log.val_loss);
  }
  r.prediction = est.predict(x);
  Tensor out = Tensor::empty({96, 1}, DType::Float32);
  est.predict(x, out);  // FluxUtils' predict!: into host storage
  CHECK(out.to_doubles() == r.prediction.to_doubles());
  return r;
}

// A stateful LSTM(1 -> 8) + Linear(8 -> 1) over series windows (truncated BPTT), reset per group.
class Forecaster : public Module<Forecaster> {
 public:
  Forecaster() : Module({Variable("x")}), lstm_(1, 8, {.stateful = true}), head_(8, 1) {
    register_module("lstm", lstm_);
    register_module("head", head_);
  }
  NodeRef call(const NodeRef& x) { return head_(lstm_(x)).root(); }
  nn::LSTM& lstm() { return lstm_; }

 private:
  nn::LSTM lstm_;
  nn::Linear head_;
};

Run fit_series(const std::string& device) {
  Generator gen(7);
  const Tensor x = Tensor::randn({1, 4, 30}, gen).to(DType::Float32);  // (features, samples, time)
  const Tensor y = op::mult(x, 0.5).value();
  nn::manual_seed(9);
  Forecaster model;
  optim::Adam adam(model.parameters(), {.lr = 1e-2});
  nn::Estimator est(model, mse(), adam,
                    {.epochs = 3, .batchsize = 2, .seqsize = 10, .validation_split = 0.2, .verbose = false,
                     .device = device});
  est.on_sequence_start([&] { model.lstm().reset_state(); });
  Run r;
  for (const nn::EpochLog& log : est.fit(x, y)) {
    r.losses.push_back(log.loss);
    r.val_losses.push_back(*log.val_loss);
  }
  r.prediction = est.predict(x);
  return r;
}

}  // namespace

TEST_CASE("Estimator on cuda: an MLP's epoch losses and predictions equal the CPU's", "[cuda][estimator]") {
  cuda::set_allow_tf32(false);
  const Run cpu = fit_mlp("cpu"), gpu = fit_mlp("cuda");
  require_close(gpu.losses, cpu.losses, "training loss");
  require_close(gpu.val_losses, cpu.val_losses, "validation loss");
  REQUIRE(gpu.prediction.device() == Device::cpu());  // predictions come back on the host
  require_close(gpu.prediction.to_doubles(), cpu.prediction.to_doubles(), "prediction");
}

TEST_CASE("Estimator on cuda: series windows of a stateful LSTM give the CPU's losses", "[cuda][estimator]") {
  cuda::set_allow_tf32(false);
  const Run cpu = fit_series("cpu"), gpu = fit_series("cuda:0");
  require_close(gpu.losses, cpu.losses, "training loss");
  require_close(gpu.val_losses, cpu.val_losses, "validation loss");
  REQUIRE(gpu.prediction.device() == Device::cpu());
  REQUIRE(gpu.prediction.shape() == Shape{1, 4, 30});
  require_close(gpu.prediction.to_doubles(), cpu.prediction.to_doubles(), "prediction");
}
