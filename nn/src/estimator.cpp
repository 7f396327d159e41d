#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>
#include <zkynet/data/sequence.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/state.h>
#include <zkynet/ops/indexing.h>

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <limits>

namespace zkynet::nn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Rows [begin, end) of axis `axis`, as a contiguous copy.
Tensor take(const Tensor& t, std::int64_t axis, std::int64_t begin, std::int64_t end) {
  return t.slice(axis, begin, end).contiguous();
}

}  // namespace

Estimator::Estimator(ModuleBase& model, Loss loss, optim::Optimizer& optimizer, EstimatorSpec spec)
    : model_(model), loss_(std::move(loss)), optimizer_(optimizer), spec_(spec) {
  if (spec.epochs < 1 || spec.batchsize < 1 || spec.seqsize < 0) {
    throw UsageError("Estimator: epochs and batchsize must be >= 1 and seqsize >= 0");
  }
  if (spec.validation_split < 0 || spec.validation_split >= 1) {
    throw UsageError("Estimator: validation_split must be in [0, 1), got " + std::to_string(spec.validation_split));
  }
}

double Estimator::step(const Tensor& x, const Tensor& y, std::int64_t rows) {
  Lambda objective(
      {"x", "y"},
      [&](std::span<const NodeRef> in) {
        const std::array<NodeRef, 1> input{in[0]};
        return loss_(model_.invoke(input).root(), in[1]);
      },
      "Estimator");
  objective.input("x").requires_grad(false);  // data: no gradient needed
  objective.input("y").requires_grad(false);
  optimizer_.zero_grad();
  double loss = 0;
  // A data-parallel shard may be empty (a last batch smaller than the process count); the
  // process still joins the gradient combination and the step.
  if (rows > 0) {
    ModuleGraph g = objective(x, y);
    g.back();
    loss = g.value().item();
  }
  if (parallel_.combine_gradients) parallel_.combine_gradients(rows);
  optimizer_.step();
  return loss;
}

Tensor Estimator::predict(const Tensor& x) {
  NoGradGuard no_grad;
  if (spec_.seqsize == 0) {
    const std::array<NodeRef, 1> input{NodeRef(x)};
    return model_.invoke(input).value();
  }
  // Series (features, samples, time): run the whole series window by window, state carried.
  if (x.dim() != 3) throw ShapeError("Estimator::predict: series must be (features, samples, time), got " + shape_str(x.shape()));
  if (reset_) reset_();
  std::vector<NodeRef> outputs;
  const Tensor time_major = x.permute({2, 1, 0});  // (time, samples, features)
  for (std::int64_t t = 0; t < time_major.size(0); t += spec_.seqsize) {
    const std::array<NodeRef, 1> input{NodeRef(take(time_major, 0, t, std::min(t + spec_.seqsize, time_major.size(0))))};
    outputs.push_back(NodeRef(model_.invoke(input).value()));
  }
  return op::concat(outputs, 0).value().permute({2, 1, 0}).contiguous();
}

double Estimator::evaluate(const Tensor& x, const Tensor& y) {
  NoGradGuard no_grad;
  if (spec_.seqsize > 0) return loss_(NodeRef(predict(x)), NodeRef(y)).value().item();
  double total = 0;
  const std::int64_t n = x.size(0);
  for (std::int64_t i = 0; i < n; i += spec_.batchsize) {
    const std::int64_t end = std::min(n, i + spec_.batchsize);
    const std::array<NodeRef, 1> input{NodeRef(take(x, 0, i, end))};
    total += loss_(model_.invoke(input).root(), NodeRef(take(y, 0, i, end))).value().item() * static_cast<double>(end - i);
  }
  return total / static_cast<double>(n);
}

void Estimator::progress(std::int64_t epoch, std::int64_t done, std::int64_t total, double loss, double rate) const {
  if (!spec_.verbose || !parallel_.prints || !isatty(STDOUT_FILENO)) return;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / std::max<std::int64_t>(total, 1));
  std::printf("\repoch %lld/%lld [%s%s] loss %.4f  %.0f samples/s   ", static_cast<long long>(epoch),
              static_cast<long long>(spec_.epochs), std::string(static_cast<std::size_t>(filled), '=').c_str(),
              std::string(static_cast<std::size_t>(kWidth - filled), ' ').c_str(), loss, rate);
  std::fflush(stdout);
}

double Estimator::train_epoch_batches(const Tensor& x, const Tensor& y, std::int64_t epoch) {
  data::TensorDataset dataset({x, y});
  data::DataLoader loader(dataset, {.batch_size = spec_.batchsize, .shuffle = spec_.shuffle, .seed = spec_.seed});
  loader.set_epoch(epoch - 1);
  double total = 0;
  std::int64_t seen = 0, local_seen = 0;
  const auto start = Clock::now();
  for (auto it = loader.begin(); it != loader.end(); ++it) {
    const data::Batch& b = *it;
    const std::int64_t rows = b[0].size(0);
    const auto [begin, end] = parallel_.shard ? parallel_.shard(rows) : std::pair<std::int64_t, std::int64_t>{0, rows};
    total += step(b[0].slice(0, begin, end), b[1].slice(0, begin, end), end - begin) * static_cast<double>(end - begin);
    local_seen += end - begin;
    seen += rows;
    progress(epoch, seen, x.size(0), total / static_cast<double>(std::max<std::int64_t>(local_seen, 1)),
             static_cast<double>(seen) / seconds_since(start));
  }
  if (parallel_.sum_over_processes) {
    total = parallel_.sum_over_processes(total);
    local_seen = static_cast<std::int64_t>(parallel_.sum_over_processes(static_cast<double>(local_seen)));
  }
  return total / static_cast<double>(std::max<std::int64_t>(local_seen, 1));
}

// Data-parallel: each process trains on its share of every window's streams (FluxUtils shards
// by rank). A mean-reduced window loss is then the streams-weighted mean of the shards' losses,
// and combine_gradients weights gradients alike, so each step is the single-process step on the
// whole window, and the epoch loss the single-process mean over windows.
double Estimator::train_epoch_sequences(const Tensor& x, const Tensor& y, std::int64_t epoch) {
  data::SequenceBatches windows({x, y}, {.seqsize = spec_.seqsize, .batch_size = spec_.batchsize});
  double total = 0;
  std::int64_t count = 0, local_steps = 0;
  const auto start = Clock::now();
  for (const data::SequenceWindow& w : windows) {
    if (w.window_index == 0 && reset_) reset_();
    const std::int64_t streams = w.tensors[0].size(1);
    const auto [begin, end] = parallel_.shard ? parallel_.shard(streams) : std::pair<std::int64_t, std::int64_t>{0, streams};
    const bool whole = begin == 0 && end == streams;
    const Tensor xs = whole ? w.tensors[0] : take(w.tensors[0], 1, begin, end);
    const Tensor ys = whole ? w.tensors[1] : take(w.tensors[1], 1, begin, end);
    total += step(xs, ys, end - begin) * static_cast<double>(end - begin) / static_cast<double>(streams);
    ++count;
    local_steps += xs.size(0) * (end - begin);
    progress(epoch, count, windows.size(), total / static_cast<double>(count),
             static_cast<double>(local_steps) / seconds_since(start));
  }
  if (parallel_.sum_over_processes) total = parallel_.sum_over_processes(total);
  return total / static_cast<double>(std::max<std::int64_t>(count, 1));
}

std::vector<EpochLog> Estimator::fit(const Tensor& x, const Tensor& y) {
  const bool series = spec_.seqsize > 0;
  const std::int64_t axis = series ? 2 : 0;  // samples, or time steps for series
  if (x.dim() <= axis || y.dim() <= axis || x.size(axis) != y.size(axis)) {
    throw ShapeError("Estimator::fit: x " + shape_str(x.shape()) + " and y " + shape_str(y.shape()) + " must have the same " +
                     (series ? "time steps (axis 2 of (features, samples, time))" : "number of samples (axis 0)"));
  }
  const std::int64_t n = x.size(axis);
  const auto n_val = static_cast<std::int64_t>(static_cast<double>(n) * spec_.validation_split);
  const Tensor x_train = take(x, axis, 0, n - n_val), y_train = take(y, axis, 0, n - n_val);
  model_.train();

  std::vector<EpochLog> history;
  double best = std::numeric_limits<double>::infinity();
  StateDict best_state;
  std::int64_t stale = 0;
  for (std::int64_t epoch = 1; epoch <= spec_.epochs; ++epoch) {
    const auto start = Clock::now();
    EpochLog log;
    log.epoch = epoch;
    log.loss = series ? train_epoch_sequences(x_train, y_train, epoch) : train_epoch_batches(x_train, y_train, epoch);
    log.seconds = seconds_since(start);
    log.samples_per_second = static_cast<double>(series ? x_train.size(1) * x_train.size(2) : x_train.size(0)) / log.seconds;
    if (n_val > 0) {
      model_.eval();
      // Series: the validation steps follow the training steps, so predict runs through both.
      log.val_loss = series ? [&] {
        const Tensor pred = predict(x);
        NoGradGuard no_grad;
        return loss_(NodeRef(take(pred, 2, n - n_val, n)), NodeRef(take(y, 2, n - n_val, n))).value().item();
      }() : evaluate(take(x, 0, n - n_val, n), take(y, 0, n - n_val, n));
      model_.train();
    }
    history.push_back(log);
    if (spec_.verbose && parallel_.prints) {
      if (isatty(STDOUT_FILENO)) std::printf("\n");
      std::printf("epoch %lld/%lld  loss %.5f%s  %.0f samples/s  %.2f s\n", static_cast<long long>(epoch),
                  static_cast<long long>(spec_.epochs), log.loss,
                  log.val_loss ? ("  val_loss " + std::to_string(*log.val_loss)).c_str() : "", log.samples_per_second,
                  log.seconds);
      std::fflush(stdout);
    }
    bool keep_going = true;
    for (auto& callback : callbacks_) keep_going = callback(log) && keep_going;
    if (spec_.patience > 0 && log.val_loss) {
      if (*log.val_loss < best) {
        best = *log.val_loss;
        best_state = state_dict(model_);
        stale = 0;
      } else if (++stale >= spec_.patience) {
        keep_going = false;
      }
    }
    if (!keep_going) break;
  }
  if (!best_state.empty()) load_state_dict(model_, best_state);  // early stopping keeps the best epoch
  model_.eval();
  return history;
}

}  // namespace zkynet::nn
