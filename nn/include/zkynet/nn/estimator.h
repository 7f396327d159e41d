// Estimator: sklearn-style training (FluxUtils parity) around a model, a loss and an optimizer.
//
//   optim::Adam adam(model.parameters(), {.lr = 1e-3});
//   nn::Estimator est(model, [](const NodeRef& p, const NodeRef& y) { return op::cross_entropy(p, y); },
//                     adam, {.epochs = 20, .batchsize = 64, .validation_split = 0.1, .patience = 3});
//   est.fit(x, y);                 // minibatches, validation, early stopping, progress
//   Tensor scores = est.predict(x_test);
//
// With spec.seqsize > 0, x and y are series laid out (features, samples, time), trained in
// windows of seqsize steps (truncated back-propagation through time); the model sees each
// window time-major (seq, batch, features). The validation split then holds out the last
// time steps, and predict returns (features, samples, time).
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/optim/optimizer.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

namespace zkynet::nn {

struct EstimatorSpec {
  std::int64_t epochs = 10;
  std::int64_t batchsize = 32;
  std::int64_t seqsize = 0;        // > 0: series trained in windows of this many steps
  double validation_split = 0.0;   // fraction held out: the last samples (or time steps)
  std::int64_t patience = 0;       // early stopping after this many epochs without improvement; 0: off
  bool shuffle = true;
  std::uint64_t seed = 0;
  bool verbose = true;             // a progress bar on a terminal, one log line per epoch otherwise
};

struct EpochLog {
  std::int64_t epoch = 0;          // from 1
  double loss = 0;                 // mean training loss over the epoch
  std::optional<double> val_loss;  // when a validation split is set
  double samples_per_second = 0;
  double seconds = 0;
};

// How a data-parallel wrapper (dist::DataParallel::attach) takes part in fit(): every
// process trains on its own rows of each minibatch, and gradients are combined before each
// optimizer step. nn/ knows nothing of MPI; the wrapper supplies these functions.
struct EstimatorParallelism {
  // This process's rows [begin, end) of a minibatch of `rows` (or streams of a series window).
  std::function<std::pair<std::int64_t, std::int64_t>(std::int64_t rows)> shard;
  // Called after backward with this process's row (stream) count.
  std::function<void(std::int64_t local_rows)> combine_gradients;
  // Sums a number over processes (epoch losses, so every process logs and decides alike).
  std::function<double(double)> sum_over_processes;
  bool prints = true;  // whether this process prints progress
};

class Estimator {
 public:
  using Loss = std::function<NodeRef(const NodeRef& prediction, const NodeRef& target)>;
  // Called after each epoch; returning false stops training.
  using Callback = std::function<bool(const EpochLog&)>;

  Estimator(ModuleBase& model, Loss loss, optim::Optimizer& optimizer, EstimatorSpec spec = {});

  std::vector<EpochLog> fit(const Tensor& x, const Tensor& y);
  Tensor predict(const Tensor& x);
  void add_callback(Callback callback) { callbacks_.push_back(std::move(callback)); }
  // For stateful recurrent models: called whenever a new group of streams starts.
  void on_sequence_start(std::function<void()> reset) { reset_ = std::move(reset); }
  const EstimatorSpec& spec() const { return spec_; }
  // Data-parallel training: each process takes its rows of every minibatch, or its streams of
  // every series window; combined gradients equal the single-process ones.
  void set_parallelism(EstimatorParallelism parallelism) { parallel_ = std::move(parallelism); }

 private:
  double train_epoch_batches(const Tensor& x, const Tensor& y, std::int64_t epoch);
  double train_epoch_sequences(const Tensor& x, const Tensor& y, std::int64_t epoch);
  double evaluate(const Tensor& x, const Tensor& y);
  double step(const Tensor& x, const Tensor& y, std::int64_t rows);
  void progress(std::int64_t epoch, std::int64_t done, std::int64_t total, double loss, double rate) const;

  ModuleBase& model_;
  Loss loss_;
  optim::Optimizer& optimizer_;
  EstimatorSpec spec_;
  std::vector<Callback> callbacks_;
  std::function<void()> reset_;
  EstimatorParallelism parallel_;
};

}  // namespace zkynet::nn
