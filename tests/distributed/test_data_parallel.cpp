// Data-parallel training: parameters start equal on every rank, and N sharded steps with
// averaged gradients equal a single process trained on the full batches.
#include <zkynet/distributed/data_parallel.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/adam.h>
#include <zkynet/optim/sgd.h>

#include "distributed/helpers.h"

#include <memory>

using namespace zkynet;
using namespace zkynet::testing;

namespace {

std::unique_ptr<nn::Sequential> make_mlp(std::uint64_t seed) {
  Generator gen(seed);
  auto mlp = std::make_unique<nn::Sequential>();
  mlp->add<nn::Linear>(6, 8, nn::LinearOptions{.generator = &gen});
  mlp->add<nn::Tanh>();
  mlp->add<nn::Linear>(8, 3, nn::LinearOptions{.generator = &gen});
  return mlp;
}

struct Data {
  Tensor x, y;
};

Data make_data(std::int64_t rows) {
  Generator gen(42);
  std::vector<std::int64_t> labels;
  for (std::int64_t i = 0; i < rows; ++i) labels.push_back((i * 7) % 3);
  return {Tensor::randn({rows, 6}, gen, DType::Float32), Tensor::from_vector(labels, {rows})};
}

double train_step(nn::Sequential& model, optim::SGD& opt, const Tensor& x, const Tensor& y,
                  dist::DataParallel* dp) {
  opt.zero_grad();
  Lambda objective({"x", "y"}, [&](std::span<const NodeRef> in) {
    const std::array<NodeRef, 1> input{in[0]};
    return op::cross_entropy(model.invoke(input).root(), in[1]);
  });
  objective.input("y").requires_grad(false);
  double loss = 0;
  if (x.size(0) > 0) {
    ModuleGraph g = objective(x, y);
    g.back();
    loss = g.value().item();
  }
  if (dp) dp->average_gradients(x.size(0));
  opt.step();
  return loss;
}

// Every parameter equal on all ranks (bitwise: max and min over ranks agree) and close to `reference`.
void require_same_everywhere_and_close(const nn::Sequential& model, const nn::Sequential& reference) {
  const auto ours = model.named_parameters();
  const auto theirs = reference.named_parameters();
  REQUIRE(ours.size() == theirs.size());
  for (std::size_t i = 0; i < ours.size(); ++i) {
    INFO(ours[i].first);
    Tensor hi = ours[i].second.value().clone(), lo = ours[i].second.value().clone();
    dist::allreduce_(hi, dist::ReduceOp::Max, W());
    dist::allreduce_(lo, dist::ReduceOp::Min, W());
    CHECK(allclose(hi, lo, 0.0, 0.0));
    CHECK(allclose(ours[i].second.value(), theirs[i].second.value(), 1e-5, 1e-6));
  }
}

}  // namespace

TEST_CASE("DataParallel starts every rank from the root's parameters") {
  auto model = make_mlp(100 + W().rank());  // different on every rank until broadcast
  const auto reference = make_mlp(100);      // rank 0's initialization
  dist::DataParallel dp(*model, W());
  require_same_everywhere_and_close(*model, *reference);
}

TEST_CASE("sharded steps with averaged gradients equal full-batch training in one process") {
  const Data data = make_data(32);
  for (std::size_t bucket_bytes : {std::size_t{25} << 20, std::size_t{64}}) {
    INFO("bucket bytes " << bucket_bytes);
    auto model = make_mlp(7);
    auto reference = make_mlp(7);
    dist::DataParallel dp(*model, W(), {.bucket_bytes = bucket_bytes});
    if (bucket_bytes == 64) CHECK(dp.bucket_count() > 1);
    optim::SGD opt(model->parameters(), {.lr = 0.2, .momentum = 0.9});
    optim::SGD ref_opt(reference->parameters(), {.lr = 0.2, .momentum = 0.9});
    for (int epoch = 0; epoch < 3; ++epoch) {
      for (std::int64_t start = 0; start < 32; start += 10) {  // batches of 10, 10, 10, 2
        const std::int64_t stop = std::min<std::int64_t>(start + 10, 32);
        const auto [b, e] = dp.shard(stop - start);
        train_step(*model, opt, data.x.slice(0, start + b, start + e), data.y.slice(0, start + b, start + e), &dp);
        train_step(*reference, ref_opt, data.x.slice(0, start, stop), data.y.slice(0, start, stop), nullptr);
      }
    }
    require_same_everywhere_and_close(*model, *reference);
  }
}

TEST_CASE("Estimator.fit under DataParallel equals a single-process fit") {
  const Data data = make_data(40);
  const auto loss = [](const NodeRef& p, const NodeRef& y) { return op::cross_entropy(p, y); };
  const nn::EstimatorSpec spec{.epochs = 3, .batchsize = 8, .shuffle = true, .seed = 5, .verbose = false};
  auto model = make_mlp(11);
  auto reference = make_mlp(11);
  dist::DataParallel dp(*model, W());
  optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.5});
  optim::SGD ref_opt(reference->parameters(), {.lr = 0.1, .momentum = 0.5});
  nn::Estimator est(*model, loss, opt, spec);
  dp.attach(est);
  const auto history = est.fit(data.x, data.y);
  nn::Estimator ref_est(*reference, loss, ref_opt, spec);
  const auto ref_history = ref_est.fit(data.x, data.y);
  require_same_everywhere_and_close(*model, *reference);
  REQUIRE(history.size() == ref_history.size());
  CHECK(history.back().loss == Approx(ref_history.back().loss).epsilon(1e-5));
}

// FluxUtils' LSTM test (y the mean of x's features, per step) at a size for a test: a stateful
// LSTM reset at each group of streams, so a stream's state must stay on the rank that trains it.
struct SeriesModel {
  std::shared_ptr<nn::Sequential> net = std::make_shared<nn::Sequential>();
  nn::LSTM* lstm = nullptr;
};

SeriesModel make_series_model(std::uint64_t seed) {
  Generator gen(seed);
  SeriesModel m;
  m.lstm = &m.net->add<nn::LSTM>(4, 6, nn::RecurrentOptions{.stateful = true, .dtype = DType::Float64, .generator = &gen});
  m.net->add<nn::Linear>(6, 1, nn::LinearOptions{.dtype = DType::Float64, .generator = &gen});
  return m;
}

TEST_CASE("Estimator.fit of series under DataParallel shards the streams and equals a single-process fit") {
  Generator gen(3);
  const Tensor x = Tensor::randn({4, 11, 24}, gen);  // (features, streams, time)
  const Tensor y = op::mean(NodeRef(x), {0}, true).value();
  const nn::EstimatorSpec spec{.epochs = 2, .batchsize = 5, .seqsize = 8, .verbose = false};  // groups of 5, 5, 1
  const auto mse = [](const NodeRef& p, const NodeRef& t) { return op::mse_loss(p, t); };
  SeriesModel model = make_series_model(9), reference = make_series_model(9);
  dist::DataParallel dp(*model.net, W());
  optim::Adam opt(model.net->parameters(), {.lr = 1e-2});
  optim::Adam ref_opt(reference.net->parameters(), {.lr = 1e-2});
  std::int64_t local_streams = 0;
  nn::Estimator est(*model.net, [&](const NodeRef& p, const NodeRef& t) {
    local_streams += p.value().size(1);
    return mse(p, t);
  }, opt, spec);
  est.on_sequence_start([&] { model.lstm->reset_state(); });
  dp.attach(est);
  const auto history = est.fit(x, y);
  nn::Estimator ref_est(*reference.net, mse, ref_opt, spec);
  ref_est.on_sequence_start([&] { reference.lstm->reset_state(); });
  const auto ref_history = ref_est.fit(x, y);
  // Each rank saw only its streams: together, every stream of every window once per epoch.
  Tensor seen = Tensor::scalar(static_cast<double>(local_streams));
  dist::allreduce_(seen, dist::ReduceOp::Sum, W());
  CHECK(seen.item() == 2.0 * 3 * 11);
  require_same_everywhere_and_close(*model.net, *reference.net);
  REQUIRE(history.size() == ref_history.size());
  CHECK(history.back().loss == Approx(ref_history.back().loss).epsilon(1e-9));
}

TEST_CASE("shard splits rows contiguously with sizes differing by at most one") {
  auto model = make_mlp(1);
  dist::DataParallel dp(*model, W());
  Tensor covered = Tensor::scalar(0.0);
  const auto [b, e] = dp.shard(10);
  CHECK(e - b >= 10 / W().size());
  CHECK(e - b <= 10 / W().size() + 1);
  covered = Tensor::scalar(static_cast<double>(e - b));
  dist::allreduce_(covered, dist::ReduceOp::Sum, W());
  CHECK(covered.item() == 10.0);
}
