#include <zkynet/nn/estimator.h>
#include <zkynet/nn/linear.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/sgd.h>

#include <catch2/catch.hpp>

using namespace zkynet;

namespace {

struct Regression {
  Tensor x, y;
  explicit Regression(std::int64_t n) {
    Generator gen(3);
    x = Tensor::randn({n, 2}, gen);
    y = op::matmul(x, Tensor{{1.5}, {-2.0}}).value();
  }
};

nn::Estimator::Loss mse() {
  return [](const NodeRef& p, const NodeRef& t) { return op::mse_loss(p, t); };
}

}  // namespace

TEST_CASE("fit trains in minibatches and predict gives the model's output", "[estimator]") {
  Regression data(200);
  Generator gen(1);
  nn::Linear model(2, 1, {.bias = false, .dtype = DType::Float64, .generator = &gen});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.epochs = 30, .batchsize = 20, .validation_split = 0.25, .verbose = false});
  const auto history = est.fit(data.x, data.y);
  REQUIRE(history.size() == 30);
  CHECK(history.back().loss < 1e-6);
  REQUIRE(history.back().val_loss);
  CHECK(*history.back().val_loss < 1e-6);
  CHECK(history.front().samples_per_second > 0);
  CHECK(allclose(model.param("weight").value(), Tensor{{1.5, -2.0}}, 1e-3, 1e-4));
  CHECK(allclose(est.predict(data.x), data.y, 1e-3, 1e-3));
}

TEST_CASE("a callback returning false stops training", "[estimator]") {
  Regression data(40);
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 0.01});
  nn::Estimator est(model, mse(), sgd, {.epochs = 50, .batchsize = 8, .verbose = false});
  int calls = 0;
  est.add_callback([&](const nn::EpochLog& log) { return ++calls < 3 && log.epoch < 100; });
  CHECK(est.fit(data.x, data.y).size() == 3);
}

TEST_CASE("early stopping ends after `patience` epochs without improvement and keeps the best weights", "[estimator]") {
  Regression data(60);
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 5.0});  // diverges: validation loss grows every epoch
  nn::Estimator est(model, mse(), sgd, {.epochs = 40, .batchsize = 10, .validation_split = 0.5, .patience = 2, .verbose = false});
  Tensor best_weight;
  double best = 1e300;
  est.add_callback([&](const nn::EpochLog& log) {
    if (*log.val_loss < best) {
      best = *log.val_loss;
      best_weight = model.param("weight").value().clone();
    }
    return true;
  });
  const auto history = est.fit(data.x, data.y);
  CHECK(history.size() < 40);
  CHECK(allclose(model.param("weight").value(), best_weight, 0.0, 0.0));
}

TEST_CASE("series train in windows of seqsize steps and predict keeps (features, samples, time)", "[estimator]") {
  // y_t = 2 x_t - 1 per step: a Linear over the feature axis of each (seq, batch, 1) window.
  Generator gen(5);
  const Tensor x = Tensor::randn({1, 6, 40}, gen);
  const Tensor y = op::sub(op::mult(x, 2.0), 1.0).value();
  nn::Linear model(1, 1, {.dtype = DType::Float64, .generator = &gen});
  optim::SGD sgd(model.parameters(), {.lr = 0.1, .momentum = 0.5});
  int resets = 0;
  nn::Estimator est(model, mse(), sgd, {.epochs = 40, .batchsize = 3, .seqsize = 10, .validation_split = 0.25, .verbose = false});
  est.on_sequence_start([&] { ++resets; });
  const auto history = est.fit(x, y);
  CHECK(resets >= 40 * 2);  // two groups of 3 streams per epoch
  CHECK(*history.back().val_loss < 1e-4);
  const Tensor pred = est.predict(x);
  CHECK(pred.shape() == Shape{1, 6, 40});
  CHECK(allclose(pred, y, 1e-2, 1e-2));
}

TEST_CASE("fit refuses x and y with different sample counts", "[estimator]") {
  nn::Linear model(2, 1);
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.verbose = false});
  CHECK_THROWS_AS(est.fit(Tensor::zeros({10, 2}, DType::Float32), Tensor::zeros({9, 1}, DType::Float32)), ShapeError);
  CHECK_THROWS_AS(nn::Estimator(model, mse(), sgd, {.validation_split = 1.0}), UsageError);
}
