#include <zkynet/data/hdf5_dataset.h>
#include <zkynet/framework/cuda.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/linear.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/sgd.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>

using namespace zkynet;
using zkynet::testing::error_message;
namespace fs = std::filesystem;

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

// out = a(x1) + b(x2): a model of two inputs, each a Linear without bias.
class TwoInputs : public Module<TwoInputs> {
 public:
  TwoInputs(std::int64_t f1, std::int64_t f2)
      : Module({Variable("x1"), Variable("x2")}),
        a_(f1, 1, {.bias = false, .dtype = DType::Float64}),
        b_(f2, 1, {.bias = false, .dtype = DType::Float64}) {
    register_module("a", a_);
    register_module("b", b_);
  }
  NodeRef call(const NodeRef& x1, const NodeRef& x2) { return op::add(a_(x1).root(), b_(x2).root()); }
  nn::Linear& a() { return a_; }
  nn::Linear& b() { return b_; }

 private:
  nn::Linear a_, b_;
};

// y = 1.5 x1 - 2 x2 + 0.5 x3: x1 (n, 1) and (x2, x3) (n, 2) feed TwoInputs.
struct TwoInputRegression {
  Tensor x1, x2, y;
  explicit TwoInputRegression(std::int64_t n) {
    Generator gen(4);
    x1 = Tensor::randn({n, 1}, gen);
    x2 = Tensor::randn({n, 2}, gen);
    y = op::add(op::mult(x1, 1.5), op::matmul(x2, Tensor{{-2.0}, {0.5}})).value();
  }
};

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("zkynet-est-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

bool same_history(const std::vector<nn::EpochLog>& a, const std::vector<nn::EpochLog>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (a[k].loss != b[k].loss || a[k].val_loss != b[k].val_loss) return false;
  }
  return true;
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

// ---- tuples of inputs and targets --------------------------------------------------------

TEST_CASE("fit with several inputs calls the model with each of them", "[estimator]") {
  TwoInputRegression data(120);
  TwoInputs model(1, 2);
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.epochs = 40, .batchsize = 20, .verbose = false});
  est.fit({data.x1, data.x2}, {data.y});
  CHECK(allclose(model.a().param("weight").value(), Tensor{{1.5}}, 1e-3, 1e-4));
  CHECK(allclose(model.b().param("weight").value(), Tensor{{-2.0, 0.5}}, 1e-3, 1e-4));
  CHECK(allclose(est.predict({data.x1, data.x2}), data.y, 1e-3, 1e-3));
}

TEST_CASE("a TupleLoss is given the prediction and every target, in order", "[estimator]") {
  TwoInputRegression data(60);
  TwoInputs model(1, 2);
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  const Tensor doubled = op::mult(data.y, 2.0).value();
  std::vector<Shape> seen;
  nn::Estimator est(model, nn::Estimator::TupleLoss([&](const NodeRef& p, std::span<const NodeRef> ys) {
                      seen = {ys[0].value().shape(), ys[1].value().shape()};
                      return op::add(op::mse_loss(p, ys[0]), op::mse_loss(op::mult(p, 2.0), ys[1]));
                    }),
                    sgd, {.epochs = 40, .batchsize = 20, .verbose = false});
  const auto history = est.fit({data.x1, data.x2}, {data.y, doubled});
  CHECK(seen == std::vector<Shape>{{20, 1}, {20, 1}});
  CHECK(history.back().loss < 1e-6);
}

TEST_CASE("fit names the Estimator and every tensor's position and shape when sample counts differ", "[estimator]") {
  TwoInputs model(1, 2);
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.verbose = false});
  const std::string message = error_message<ShapeError>([&] {
    est.fit({Tensor::zeros({10, 1}), Tensor::zeros({9, 2})}, {Tensor::zeros({10, 1})});
  });
  CHECK_THAT(message, Catch::Contains("Estimator::fit") && Catch::Contains("sample count") &&
                          Catch::Contains("input 0 (10,1)") && Catch::Contains("input 1 (9,2)") &&
                          Catch::Contains("target 0 (10,1)"));
}

TEST_CASE("series tuples must agree in samples and time, each named", "[estimator]") {
  TwoInputs model(1, 2);
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.seqsize = 5, .verbose = false});
  CHECK_THAT(error_message<ShapeError>([&] {
               est.fit({Tensor::zeros({1, 4, 20}), Tensor::zeros({2, 4, 19})}, {Tensor::zeros({1, 4, 20})});
             }),
             Catch::Contains("axes 1 and 2") && Catch::Contains("input 1 (2,4,19)"));
  CHECK_THAT(error_message<ShapeError>([&] { est.fit({Tensor::zeros({4, 20})}, {Tensor::zeros({1, 4, 20})}); }),
             Catch::Contains("input 0 has shape (4,20)") && Catch::Contains("(features, samples, time)"));
}

TEST_CASE("a Loss of one target refuses several targets", "[estimator]") {
  Regression data(10);
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.verbose = false});
  CHECK_THAT(error_message<UsageError>([&] { est.fit({data.x}, {data.y, data.y}); }),
             Catch::Contains("one target") && Catch::Contains("TupleLoss"));
}

TEST_CASE("series with several inputs train window by window and predict (features, samples, time)", "[estimator]") {
  // y_t = 2 a_t - b_t per step.
  Generator gen(6);
  const Tensor a = Tensor::randn({1, 4, 30}, gen), b = Tensor::randn({2, 4, 30}, gen);
  const Tensor y = op::sub(op::mult(a, 2.0), b.slice(0, 0, 1)).value();
  TwoInputs model(1, 2);
  optim::SGD sgd(model.parameters(), {.lr = 0.1, .momentum = 0.5});
  nn::Estimator est(model, mse(), sgd, {.epochs = 40, .batchsize = 2, .seqsize = 10, .validation_split = 0.2, .verbose = false});
  const auto history = est.fit({a, b}, {y});
  CHECK(*history.back().val_loss < 1e-4);
  const Tensor pred = est.predict({a, b});
  CHECK(pred.shape() == Shape{1, 4, 30});
  CHECK(allclose(pred, y, 1e-2, 1e-2));
}

// ---- predict into storage the caller owns ------------------------------------------------

TEST_CASE("predict into out writes the predictions into out's own storage", "[estimator]") {
  Regression data(50);
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.batchsize = 16, .verbose = false});
  Tensor out = Tensor::full({50, 1}, -7.0);
  const void* storage = out.raw_data();
  est.predict(data.x, out);
  CHECK(out.raw_data() == storage);
  CHECK(allclose(out, est.predict(data.x), 1e-12, 1e-12));
}

TEST_CASE("predict into out refuses an out of the wrong shape or dtype, naming both", "[estimator]") {
  Regression data(20);
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.batchsize = 8, .verbose = false});
  Tensor rows = Tensor::zeros({19, 1}), features = Tensor::zeros({20, 2}), single = Tensor::zeros({20, 1}, DType::Float32);
  CHECK_THAT(error_message<ShapeError>([&] { est.predict(data.x, rows); }),
             Catch::Contains("(19,1)") && Catch::Contains("20 samples"));
  CHECK_THAT(error_message<ShapeError>([&] { est.predict(data.x, features); }),
             Catch::Contains("out has shape (20,2)") && Catch::Contains("predictions have (20,1)"));
  CHECK_THAT(error_message<TypeError>([&] { est.predict(data.x, single); }),
             Catch::Contains("out is float32") && Catch::Contains("float64"));
  Tensor undefined;
  CHECK_THROWS_AS(est.predict(data.x, undefined), UsageError);
}

TEST_CASE("series predict into out fills (features, samples, time) window by window", "[estimator]") {
  Generator gen(5);
  const Tensor x = Tensor::randn({1, 3, 25}, gen);
  nn::Linear model(1, 2, {.dtype = DType::Float64, .generator = &gen});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.seqsize = 10, .verbose = false});
  Tensor out = Tensor::zeros({2, 3, 25});
  est.predict(x, out);
  const Tensor expected = model(x.permute({2, 1, 0})).value().permute({2, 1, 0});
  CHECK(allclose(out, expected, 1e-12, 1e-12));
}

// ---- datasets read as needed -------------------------------------------------------------

TEST_CASE("fit over an HDF5Dataset trains as fit over the same tensors does", "[estimator]") {
  TempDir dir;
  Regression data(90);
  data::write_hdf5(dir.file("train.h5"), {{"x", data.x}, {"y", data.y}}, {.chunk_rows = 8});
  data::HDF5Dataset file(dir.file("train.h5"), {"x", "y"});
  const nn::EstimatorSpec spec{.epochs = 3, .batchsize = 16, .validation_split = 0.2, .seed = 3, .verbose = false};
  Generator g1(1), g2(1);
  nn::Linear from_file(2, 1, {.dtype = DType::Float64, .generator = &g1});
  nn::Linear in_memory(2, 1, {.dtype = DType::Float64, .generator = &g2});
  optim::SGD sgd1(from_file.parameters(), {.lr = 0.05}), sgd2(in_memory.parameters(), {.lr = 0.05});
  nn::Estimator est1(from_file, mse(), sgd1, spec), est2(in_memory, mse(), sgd2, spec);
  CHECK(same_history(est1.fit(file, 1), est2.fit(data.x, data.y)));
  CHECK(allclose(from_file.param("weight").value(), in_memory.param("weight").value(), 0.0, 0.0));
  // Each epoch reads every row once: 72 training rows, 18 validation rows, x and y.
  CHECK(file.read_stats().rows == 3 * 2 * 90);
}

TEST_CASE("fit over datasets of series reads each window when it is needed", "[estimator]") {
  TempDir dir;
  Generator gen(5);
  const Tensor x = Tensor::randn({1, 6, 40}, gen);
  const Tensor y = op::sub(op::mult(x, 2.0), 1.0).value();
  data::write_hdf5(dir.file("series.h5"), {{"x", x}, {"y", y}}, {.chunk_rows = 1});
  data::HDF5Dataset xs(dir.file("series.h5"), {"x"}), ys(dir.file("series.h5"), {"y"});
  const nn::EstimatorSpec spec{.epochs = 2, .batchsize = 3, .seqsize = 10, .validation_split = 0.25, .verbose = false};
  Generator g1(1), g2(1);
  nn::Linear from_file(1, 1, {.dtype = DType::Float64, .generator = &g1});
  nn::Linear in_memory(1, 1, {.dtype = DType::Float64, .generator = &g2});
  optim::SGD sgd1(from_file.parameters(), {.lr = 0.1}), sgd2(in_memory.parameters(), {.lr = 0.1});
  nn::Estimator est1(from_file, mse(), sgd1, spec), est2(in_memory, mse(), sgd2, spec);
  CHECK(same_history(est1.fit(xs, ys), est2.fit(x, y)));
  // Per epoch: 2 groups x 3 training windows (30 of 40 steps), then 4 validation windows of x
  // and one read of y's held-out steps.
  CHECK(xs.read_stats().reads == 2 * (6 + 4));
  CHECK(ys.read_stats().reads == 2 * (6 + 1));
}

TEST_CASE("predict over a dataset reads batchsize rows at a time", "[estimator]") {
  TempDir dir;
  Regression data(50);
  data::write_hdf5(dir.file("x.h5"), {{"x", data.x}});
  data::HDF5Dataset file(dir.file("x.h5"), {"x"});
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.batchsize = 16, .verbose = false});
  CHECK(allclose(est.predict(file), est.predict(data.x), 1e-12, 1e-12));
  CHECK(file.read_stats().reads == 4);  // 16 + 16 + 16 + 2 rows
}

TEST_CASE("fit over one dataset takes its first num_inputs fields as the inputs", "[estimator]") {
  TwoInputRegression data(60);
  data::TensorDataset all({data.x1, data.x2, data.y});
  TwoInputs model(1, 2);
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  nn::Estimator est(model, mse(), sgd, {.epochs = 40, .batchsize = 20, .verbose = false});
  CHECK(est.fit(all, 2).back().loss < 1e-6);
  CHECK_THROWS_AS(est.fit(all, 3), UsageError);
}

TEST_CASE("device \"cpu\" given explicitly trains and predicts exactly as the default", "[estimator][device]") {
  Regression data(60);
  std::vector<std::vector<double>> losses;
  std::vector<Tensor> predictions;
  for (const bool explicit_cpu : {false, true}) {
    Generator gen(2);
    nn::Linear model(2, 1, {.dtype = DType::Float64, .generator = &gen});
    optim::SGD sgd(model.parameters(), {.lr = 0.05});
    nn::EstimatorSpec spec{.epochs = 3, .batchsize = 16, .validation_split = 0.2, .verbose = false};
    if (explicit_cpu) spec.device = "cpu";
    nn::Estimator est(model, mse(), sgd, spec);
    CHECK(est.device() == Device::cpu());
    std::vector<double> l;
    for (const nn::EpochLog& log : est.fit(data.x, data.y)) l.push_back(log.loss);
    losses.push_back(l);
    predictions.push_back(est.predict(data.x));
  }
  CHECK(losses[0] == losses[1]);
  CHECK(predictions[1].device() == Device::cpu());
  CHECK(predictions[0].to_doubles() == predictions[1].to_doubles());
}

TEST_CASE("a bad device name is a UsageError naming the Estimator and the name", "[estimator][device]") {
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  const auto make = [&](const std::string& device) {
    nn::Estimator est(model, mse(), sgd, {.verbose = false, .device = device});
  };
  REQUIRE_THROWS_AS(make("gpu"), UsageError);
  CHECK(error_message<UsageError>([&] { make("gpu"); }) ==
        "Estimator: device 'gpu' is not a device name: expected \"cpu\", \"cuda\" or \"cuda:N\"");
  CHECK_THAT(error_message<UsageError>([&] { make("cuda:x"); }), Catch::Matchers::StartsWith("Estimator: device 'cuda:x'"));
}

TEST_CASE("a device this machine lacks is a UsageError naming the Estimator; the model stays put", "[estimator][device]") {
  nn::Linear model(2, 1, {.dtype = DType::Float64});
  optim::SGD sgd(model.parameters(), {.lr = 0.1});
  const std::string missing = "cuda:" + std::to_string(cuda::device_count());  // one past the last device
  const auto make = [&] { nn::Estimator est(model, mse(), sgd, {.verbose = false, .device = missing}); };
  REQUIRE_THROWS_AS(make(), UsageError);
  CHECK_THAT(error_message<UsageError>(make), Catch::Matchers::StartsWith("Estimator: device '" + missing +
                                                              "': cannot move the model there: "));
  CHECK(model.param("weight").value().device() == Device::cpu());
}
