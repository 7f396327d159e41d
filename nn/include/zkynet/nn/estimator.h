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
//
// Several inputs and targets (FluxUtils' tuples): the model is called with every input, the
// loss given the prediction and every target:
//   nn::Estimator est(model, [](const NodeRef& p, std::span<const NodeRef> ys) {
//     return op::add(op::mse_loss(p, ys[0]), op::mse_loss(p, ys[1]));
//   }, adam, spec);
//   est.fit({x_image, x_meta}, {y_a, y_b});         // every tensor the same samples (or series alike)
//
// Predict into storage you own (FluxUtils' predict!): batchsize rows (or one series window) at
// a time, each batch's predictions written into its rows of out; nothing else is allocated:
//   Tensor out = Tensor::empty({n, 10}, DType::Float32);
//   est.predict(x, out);
//
// Data larger than memory: datasets whose fields are read as they are needed (batches by
// get_batch, series windows by read_box), e.g. HDF5 files:
//   data::HDF5Dataset train("train.h5", {"x", "y"});
//   est.fit(train, 1);                 // field 0 the input, field 1 the target
//   data::HDF5Dataset xs("series.h5", {"x"}), ys("series.h5", {"y"});
//   est.fit(xs, ys);                   // every field of xs an input, of ys a target
// Tensors in memory go the same way (one TensorDataset each, over the tensor, not a copy of it).
// The validation split holds out the last rows (or steps) without copying the training part.
// Data are on the CPU; with spec.device = "cuda" the model trains on the GPU, each batch or window
// copied there when it is used, predictions copied back.
#pragma once

#include <zkynet/data/dataset.h>
#include <zkynet/framework/module.h>
#include <zkynet/optim/optimizer.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
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
  // Where training runs (PyTorch's names: "cpu", "cuda", "cuda:N"): the model is moved there when
  // the Estimator is made, and every batch and series window as it is used; predictions come back
  // on the host. A bad name, or a device this machine lacks, is a UsageError naming the Estimator.
  std::string device = "cpu";
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
  // The loss of a model with several targets: the prediction and every target, in order.
  using TupleLoss = std::function<NodeRef(const NodeRef& prediction, std::span<const NodeRef> targets)>;
  // Called after each epoch; returning false stops training.
  using Callback = std::function<bool(const EpochLog&)>;

  Estimator(ModuleBase& model, Loss loss, optim::Optimizer& optimizer, EstimatorSpec spec = {});
  Estimator(ModuleBase& model, TupleLoss loss, optim::Optimizer& optimizer, EstimatorSpec spec = {});

  // Trains on inputs and targets that share their samples (axis 0; series: samples and time,
  // axes 1 and 2). ShapeError naming each tensor's position and shape when they disagree.
  // A Loss takes exactly one target (UsageError otherwise).
  std::vector<EpochLog> fit(const Tensor& x, const Tensor& y);
  std::vector<EpochLog> fit(const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets);
  // Read as needed: every field of `inputs` an input and every field of `targets` a target; or
  // the first num_inputs fields of `dataset` the inputs, the others the targets; or any fields.
  // The datasets must outlive the call.
  std::vector<EpochLog> fit(const data::Dataset& inputs, const data::Dataset& targets);
  std::vector<EpochLog> fit(const data::Dataset& dataset, std::int64_t num_inputs);
  std::vector<EpochLog> fit(std::span<const data::FieldRef> inputs, std::span<const data::FieldRef> targets);

  // The model's output on all of x at once (series: window by window, state carried).
  Tensor predict(const Tensor& x);
  Tensor predict(const std::vector<Tensor>& inputs);
  // Read as needed, batchsize rows at a time (series: window by window).
  Tensor predict(const data::Dataset& inputs);
  Tensor predict(std::span<const data::FieldRef> inputs);
  // FluxUtils' predict!: writes the predictions into out, batchsize rows at a time (series:
  // out (features, samples, time), window by window). ShapeError unless out has the
  // predictions' shape, TypeError unless their dtype; out keeps its storage.
  void predict(const Tensor& x, Tensor& out);
  void predict(const std::vector<Tensor>& inputs, Tensor& out);
  void predict(const data::Dataset& inputs, Tensor& out);
  void predict(std::span<const data::FieldRef> inputs, Tensor& out);

  void add_callback(Callback callback) { callbacks_.push_back(std::move(callback)); }
  // For stateful recurrent models: called whenever a new group of streams starts.
  void on_sequence_start(std::function<void()> reset) { reset_ = std::move(reset); }
  const EstimatorSpec& spec() const { return spec_; }
  Device device() const { return device_; }
  // Data-parallel training: each process takes its rows of every minibatch, or its streams of
  // every series window; combined gradients equal the single-process ones.
  void set_parallelism(EstimatorParallelism parallelism) { parallel_ = std::move(parallelism); }

 private:
  double train_epoch_batches(const data::Dataset& train, std::size_t num_inputs, std::int64_t epoch);
  double train_epoch_sequences(std::span<const data::FieldRef> fields, std::size_t num_inputs, std::int64_t steps,
                               std::int64_t epoch);
  double evaluate_batches(const data::Dataset& validation, std::size_t num_inputs);
  double evaluate_sequences(std::span<const data::FieldRef> inputs, std::span<const data::FieldRef> targets,
                            std::int64_t first_step);
  double step(std::span<const Tensor> inputs, std::span<const Tensor> targets, std::int64_t rows);
  NodeRef loss(const NodeRef& prediction, std::span<const NodeRef> targets) const;
  // The predictions of rows [begin, end) (series: of steps [begin, end), all streams), one call.
  Tensor predict_rows(const data::Dataset& rows, std::int64_t begin, std::int64_t end);
  Tensor predict_window(std::span<const data::FieldRef> inputs, std::span<const Shape> shapes, std::int64_t begin,
                        std::int64_t end);
  // Predictions into out, allocating it from the first batch when it is undefined.
  void predict_into(std::span<const data::FieldRef> inputs, Tensor& out);
  Tensor on_device(const Tensor& t) const;  // t, or its copy on device_
  void progress(std::int64_t epoch, std::int64_t done, std::int64_t total, double loss, double rate) const;

  ModuleBase& model_;
  TupleLoss loss_;
  bool loss_takes_one_target_ = false;  // built from a Loss
  optim::Optimizer& optimizer_;
  EstimatorSpec spec_;
  Device device_;
  std::vector<Callback> callbacks_;
  std::function<void()> reset_;
  EstimatorParallelism parallel_;
};

}  // namespace zkynet::nn
