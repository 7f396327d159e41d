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
#include <map>
#include <numeric>
#include <string>

namespace zkynet::nn {
namespace {

using Clock = std::chrono::steady_clock;

const Shape kTimeMajor{2, 1, 0};  // (features, samples, time) <-> (time, samples, features)

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Rows [begin, end) of axis `axis`, as a contiguous copy.
Tensor take(const Tensor& t, std::int64_t axis, std::int64_t begin, std::int64_t end) {
  return t.slice(axis, begin, end).contiguous();
}

std::vector<std::int64_t> row_range(std::int64_t begin, std::int64_t end) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(end - begin));
  std::iota(rows.begin(), rows.end(), begin);
  return rows;
}

// The fields fit() and predict() read, seen as one dataset: rows [first, first + rows) of every
// field, in order (inputs, then targets). A batch asks each underlying dataset once, so an
// HDF5Dataset holding several of the fields reads them together.
class FieldRows : public data::Dataset {
 public:
  FieldRows(std::vector<data::FieldRef> fields, std::int64_t first, std::int64_t rows)
      : fields_(std::move(fields)), first_(first), rows_(rows) {}

  std::int64_t size() const override { return rows_; }
  data::Sample get(std::int64_t index) const override {
    const std::int64_t one[] = {index};
    data::Batch batch = get_batch(one);
    for (Tensor& t : batch) t = t.reshape(Shape(t.shape().begin() + 1, t.shape().end()));
    return batch;
  }
  data::Batch get_batch(std::span<const std::int64_t> indices) const override {
    std::vector<std::int64_t> rows;
    for (std::int64_t i : indices) {
      data::detail::check_index(i, rows_, "Estimator");
      rows.push_back(first_ + i);
    }
    std::map<const data::Dataset*, data::Batch> read;
    data::Batch out;
    for (const data::FieldRef& f : fields_) {
      auto [it, fresh] = read.try_emplace(f.dataset);
      if (fresh) it->second = f.dataset->get_batch(rows);
      out.push_back(it->second.at(f.field));
    }
    return out;
  }

 private:
  std::vector<data::FieldRef> fields_;
  std::int64_t first_, rows_;
};

// Each field's whole shape, asking each dataset once.
std::vector<Shape> shapes_of(std::span<const data::FieldRef> fields, const std::string& where) {
  std::map<const data::Dataset*, std::vector<Shape>> known;
  std::vector<Shape> out;
  for (std::size_t k = 0; k < fields.size(); ++k) {
    const data::FieldRef& f = fields[k];
    if (f.dataset == nullptr) throw UsageError(where + ": field " + std::to_string(k) + " has no dataset");
    auto [it, fresh] = known.try_emplace(f.dataset);
    if (fresh) it->second = f.dataset->field_shapes();
    if (f.field >= it->second.size()) {
      throw IndexError(where + ": field " + std::to_string(f.field) + " of a dataset with " +
                       std::to_string(it->second.size()) + " fields");
    }
    out.push_back(it->second[f.field]);
  }
  return out;
}

std::string listing(const std::vector<Shape>& inputs, const std::vector<Shape>& targets) {
  std::string out;
  const auto add = [&](const std::vector<Shape>& shapes, const char* role) {
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      out += (out.empty() ? "" : ", ") + std::string(role) + " " + std::to_string(k) + " " + shape_str(shapes[k]);
    }
  };
  add(inputs, "input");
  add(targets, "target");
  return out;
}

// Every input and target holds the same samples: axis 0, or axes 1 and 2 of series
// (features, samples, time). `targets` may be empty (predict).
void check_samples(const std::vector<Shape>& inputs, const std::vector<Shape>& targets, bool series,
                   const std::string& where) {
  if (inputs.empty()) throw UsageError(where + ": no inputs");
  const auto check_rank = [&](const std::vector<Shape>& shapes, const char* role) {
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      if (series ? shapes[k].size() != 3 : shapes[k].empty()) {
        throw ShapeError(where + ": " + role + " " + std::to_string(k) + " has shape " + shape_str(shapes[k]) +
                         (series ? "; series are 3-d (features, samples, time)" : "; samples are rows of axis 0"));
      }
    }
  };
  check_rank(inputs, "input");
  check_rank(targets, "target");
  const auto agrees = [&](const Shape& s) {
    return series ? s[1] == inputs[0][1] && s[2] == inputs[0][2] : s[0] == inputs[0][0];
  };
  const bool all_agree = std::all_of(inputs.begin(), inputs.end(), agrees) && std::all_of(targets.begin(), targets.end(), agrees);
  if (!all_agree) {
    throw ShapeError(where + ": the inputs and targets disagree in " +
                     (series ? std::string("samples and time steps (axes 1 and 2 of (features, samples, time))")
                             : std::string("sample count (axis 0)")) +
                     ": " + listing(inputs, targets));
  }
}

// One TensorDataset per tensor (series of different feature counts cannot share one).
std::vector<data::TensorDataset> datasets_of(const std::vector<Tensor>& tensors, const char* role, const std::string& where) {
  std::vector<data::TensorDataset> out;
  out.reserve(tensors.size());
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    if (!tensors[k].defined()) throw UsageError(where + ": " + role + " " + std::to_string(k) + " is undefined");
    if (tensors[k].dim() == 0) {
      throw ShapeError(where + ": " + role + " " + std::to_string(k) + " is 0-d; samples are rows of axis 0");
    }
    out.emplace_back(std::vector<Tensor>{tensors[k]});
  }
  return out;
}

std::vector<data::FieldRef> fields_of(const std::vector<data::TensorDataset>& datasets) {
  std::vector<data::FieldRef> out;
  for (const auto& d : datasets) out.push_back(data::FieldRef{&d, 0});
  return out;
}

std::vector<Shape> shapes_of(const std::vector<Tensor>& tensors) {
  std::vector<Shape> out;
  for (const Tensor& t : tensors) out.push_back(t.defined() ? t.shape() : Shape{});
  return out;
}

// A prediction goes into `slot` (a part of predict's out): the same shape and dtype.
void check_slot(const Tensor& slot, const Tensor& prediction, const Tensor& out, const Shape& expected_out) {
  if (prediction.dtype() != slot.dtype()) {
    throw TypeError("Estimator::predict: out is " + std::string(dtype_name(out.dtype())) + " but the model predicts " +
                    std::string(dtype_name(prediction.dtype())));
  }
  if (prediction.shape() != slot.shape()) {
    throw ShapeError("Estimator::predict: out has shape " + shape_str(out.shape()) + " but the predictions have " +
                     shape_str(expected_out));
  }
}

}  // namespace

namespace {

Device estimator_device(const std::string& name) {
  try {
    return Device::parse(name);
  } catch (const Error&) {
    throw UsageError("Estimator: device '" + name + "' is not a device name: expected \"cpu\", \"cuda\" or \"cuda:N\"");
  }
}

}  // namespace

Estimator::Estimator(ModuleBase& model, TupleLoss loss, optim::Optimizer& optimizer, EstimatorSpec spec)
    : model_(model), loss_(std::move(loss)), optimizer_(optimizer), spec_(spec), device_(estimator_device(spec.device)) {
  if (spec.epochs < 1 || spec.batchsize < 1 || spec.seqsize < 0) {
    throw UsageError("Estimator: epochs and batchsize must be >= 1 and seqsize >= 0");
  }
  if (spec.validation_split < 0 || spec.validation_split >= 1) {
    throw UsageError("Estimator: validation_split must be in [0, 1), got " + std::to_string(spec.validation_split));
  }
  try {
    model_.to(device_);
  } catch (const Error& e) {
    throw UsageError("Estimator: device '" + spec.device + "': cannot move the model there: " + e.what());
  }
}

// A pinned batch (a DataLoader's with pin_memory) is copied without the host waiting: kernels
// queued afterwards on the device wait for the copy. Pageable memory is copied synchronously.
Tensor Estimator::on_device(const Tensor& t) const {
  return t.device() == device_ ? t : t.to(device_, /*non_blocking=*/t.is_pinned());
}

Estimator::Estimator(ModuleBase& model, Loss loss, optim::Optimizer& optimizer, EstimatorSpec spec)
    : Estimator(model,
                TupleLoss([loss = std::move(loss)](const NodeRef& prediction, std::span<const NodeRef> targets) {
                  return loss(prediction, targets[0]);
                }),
                optimizer, spec) {
  loss_takes_one_target_ = true;
}

NodeRef Estimator::loss(const NodeRef& prediction, std::span<const NodeRef> targets) const {
  return loss_(prediction, targets);
}

double Estimator::step(std::span<const Tensor> inputs, std::span<const Tensor> targets, std::int64_t rows) {
  const std::size_t k = inputs.size();
  std::vector<std::string> names;
  for (std::size_t i = 0; i < k; ++i) names.push_back(k == 1 ? "x" : "x" + std::to_string(i));
  for (std::size_t j = 0; j < targets.size(); ++j) names.push_back(targets.size() == 1 ? "y" : "y" + std::to_string(j));
  Lambda objective(
      names,
      [&](std::span<const NodeRef> in) { return loss(model_.invoke(in.first(k)).root(), in.subspan(k)); },
      "Estimator");
  for (const std::string& name : names) objective.input(name).requires_grad(false);  // data: no gradient needed
  optimizer_.zero_grad();
  double value = 0;
  // A data-parallel shard may be empty (a last batch smaller than the process count); the
  // process still joins the gradient combination and the step.
  if (rows > 0) {
    std::vector<NodeRef> refs;
    for (const Tensor& t : inputs) refs.emplace_back(on_device(t));
    for (const Tensor& t : targets) refs.emplace_back(on_device(t));
    ModuleGraph g = objective.invoke(refs);
    g.back();
    value = g.value().item();
  }
  if (parallel_.combine_gradients) parallel_.combine_gradients(rows);
  optimizer_.step();
  return value;
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

double Estimator::train_epoch_batches(const data::Dataset& train, std::size_t num_inputs, std::int64_t epoch) {
  data::DataLoader loader(train, {.batch_size = spec_.batchsize, .shuffle = spec_.shuffle, .seed = spec_.seed});
  loader.set_epoch(epoch - 1);
  double total = 0;
  std::int64_t seen = 0, local_seen = 0;
  const auto start = Clock::now();
  for (auto it = loader.begin(); it != loader.end(); ++it) {
    const data::Batch& b = *it;
    const std::int64_t rows = b[0].size(0);
    const auto [begin, end] = parallel_.shard ? parallel_.shard(rows) : std::pair<std::int64_t, std::int64_t>{0, rows};
    std::vector<Tensor> shard;
    for (const Tensor& t : b) shard.push_back(t.slice(0, begin, end));
    const std::span<const Tensor> all(shard);
    total += step(all.first(num_inputs), all.subspan(num_inputs), end - begin) * static_cast<double>(end - begin);
    local_seen += end - begin;
    seen += rows;
    progress(epoch, seen, train.size(), total / static_cast<double>(std::max<std::int64_t>(local_seen, 1)),
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
double Estimator::train_epoch_sequences(std::span<const data::FieldRef> fields, std::size_t num_inputs,
                                        std::int64_t steps, std::int64_t epoch) {
  data::SequenceBatches windows(std::vector<data::FieldRef>(fields.begin(), fields.end()),
                                {.seqsize = spec_.seqsize, .batch_size = spec_.batchsize, .max_steps = steps});
  double total = 0;
  std::int64_t count = 0, local_steps = 0;
  const auto start = Clock::now();
  for (const data::SequenceWindow& w : windows) {
    if (w.window_index == 0 && reset_) reset_();
    const std::int64_t streams = w.tensors[0].size(1);
    const auto [begin, end] = parallel_.shard ? parallel_.shard(streams) : std::pair<std::int64_t, std::int64_t>{0, streams};
    const bool whole = begin == 0 && end == streams;
    std::vector<Tensor> shard;
    for (const Tensor& t : w.tensors) shard.push_back(whole ? t : take(t, 1, begin, end));
    const std::span<const Tensor> all(shard);
    total += step(all.first(num_inputs), all.subspan(num_inputs), end - begin) * static_cast<double>(end - begin) /
             static_cast<double>(streams);
    ++count;
    local_steps += shard[0].size(0) * (end - begin);
    progress(epoch, count, windows.size(), total / static_cast<double>(count),
             static_cast<double>(local_steps) / seconds_since(start));
  }
  if (parallel_.sum_over_processes) total = parallel_.sum_over_processes(total);
  return total / static_cast<double>(std::max<std::int64_t>(count, 1));
}

double Estimator::evaluate_batches(const data::Dataset& validation, std::size_t num_inputs) {
  NoGradGuard no_grad;
  double total = 0;
  const std::int64_t n = validation.size();
  for (std::int64_t i = 0; i < n; i += spec_.batchsize) {
    const std::int64_t end = std::min(n, i + spec_.batchsize);
    const data::Batch b = validation.get_batch(row_range(i, end));
    std::vector<NodeRef> refs;
    for (const Tensor& t : b) refs.emplace_back(on_device(t));
    const std::span<const NodeRef> all(refs);
    const NodeRef prediction = model_.invoke(all.first(num_inputs)).root();
    total += loss(prediction, all.subspan(num_inputs)).value().item() * static_cast<double>(end - i);
  }
  return total / static_cast<double>(n);
}

// Series: the validation steps follow the training steps, so the model runs through both, state
// carried, and the loss takes the predictions of the held-out steps, (features, samples, time).
double Estimator::evaluate_sequences(std::span<const data::FieldRef> inputs, std::span<const data::FieldRef> targets,
                                     std::int64_t first_step) {
  NoGradGuard no_grad;
  const std::vector<Shape> input_shapes = shapes_of(inputs, "Estimator::fit");
  const std::vector<Shape> target_shapes = shapes_of(targets, "Estimator::fit");
  const std::int64_t steps = target_shapes[0][2];
  if (reset_) reset_();
  std::vector<NodeRef> held_out;
  for (std::int64_t t = 0; t < steps; t += spec_.seqsize) {
    const std::int64_t end = std::min(t + spec_.seqsize, steps);
    const Tensor window = predict_window(inputs, input_shapes, t, end);  // (time, samples, features)
    if (end > first_step) held_out.push_back(NodeRef(window.slice(0, std::max(t, first_step) - t, end - t)));
  }
  const NodeRef prediction(op::concat(held_out, 0).value().permute(kTimeMajor).contiguous());
  std::vector<NodeRef> truth;
  for (std::size_t k = 0; k < targets.size(); ++k) {
    const Shape& s = target_shapes[k];
    const std::array<data::Range, 3> box{data::Range{0, s[0]}, data::Range{0, s[1]}, data::Range{first_step, steps}};
    truth.push_back(NodeRef(on_device(targets[k].dataset->read_box(targets[k].field, box))));
  }
  return loss(prediction, truth).value().item();
}

std::vector<EpochLog> Estimator::fit(const Tensor& x, const Tensor& y) {
  return fit(std::vector<Tensor>{x}, std::vector<Tensor>{y});
}

std::vector<EpochLog> Estimator::fit(const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets) {
  // Shapes first, so that the errors name the Estimator and every tensor.
  const std::string where = "Estimator::fit";
  if (inputs.empty() || targets.empty()) throw UsageError(where + ": give at least one input and one target");
  const auto input_data = datasets_of(inputs, "input", where);
  const auto target_data = datasets_of(targets, "target", where);
  check_samples(shapes_of(inputs), shapes_of(targets), spec_.seqsize > 0, where);
  return fit(fields_of(input_data), fields_of(target_data));
}

std::vector<EpochLog> Estimator::fit(const data::Dataset& inputs, const data::Dataset& targets) {
  return fit(data::fields_of(inputs), data::fields_of(targets));
}

std::vector<EpochLog> Estimator::fit(const data::Dataset& dataset, std::int64_t num_inputs) {
  const std::vector<data::FieldRef> fields = data::fields_of(dataset);
  if (num_inputs < 1 || num_inputs >= static_cast<std::int64_t>(fields.size())) {
    throw UsageError("Estimator::fit: num_inputs must leave at least one input and one target among the dataset's " +
                     std::to_string(fields.size()) + " fields, got " + std::to_string(num_inputs));
  }
  const std::span<const data::FieldRef> all(fields);
  return fit(all.first(static_cast<std::size_t>(num_inputs)), all.subspan(static_cast<std::size_t>(num_inputs)));
}

std::vector<EpochLog> Estimator::fit(std::span<const data::FieldRef> inputs, std::span<const data::FieldRef> targets) {
  const std::string where = "Estimator::fit";
  if (inputs.empty() || targets.empty()) throw UsageError(where + ": give at least one input and one target");
  if (loss_takes_one_target_ && targets.size() != 1) {
    throw UsageError(where + ": the loss takes one target but fit was given " + std::to_string(targets.size()) +
                     ": give a TupleLoss (prediction, targets)");
  }
  const bool series = spec_.seqsize > 0;
  const std::vector<Shape> input_shapes = shapes_of(inputs, where);
  check_samples(input_shapes, shapes_of(targets, where), series, where);
  const std::int64_t n = input_shapes[0][series ? 2 : 0];  // samples, or time steps for series
  const auto n_val = static_cast<std::int64_t>(static_cast<double>(n) * spec_.validation_split);
  const std::int64_t n_train = n - n_val;
  std::vector<data::FieldRef> fields(inputs.begin(), inputs.end());
  fields.insert(fields.end(), targets.begin(), targets.end());
  const FieldRows train(fields, 0, n_train), validation(fields, n_train, n_val);
  model_.train();

  std::vector<EpochLog> history;
  double best = std::numeric_limits<double>::infinity();
  StateDict best_state;
  std::int64_t stale = 0;
  for (std::int64_t epoch = 1; epoch <= spec_.epochs; ++epoch) {
    const auto start = Clock::now();
    EpochLog log;
    log.epoch = epoch;
    log.loss = series ? train_epoch_sequences(fields, inputs.size(), n_train, epoch)
                      : train_epoch_batches(train, inputs.size(), epoch);
    log.seconds = seconds_since(start);
    log.samples_per_second = static_cast<double>(series ? input_shapes[0][1] * n_train : n_train) / log.seconds;
    if (n_val > 0) {
      model_.eval();
      log.val_loss = series ? evaluate_sequences(inputs, targets, n_train) : evaluate_batches(validation, inputs.size());
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

// ---- predict ---------------------------------------------------------------------------

Tensor Estimator::predict(const Tensor& x) { return predict(std::vector<Tensor>{x}); }

Tensor Estimator::predict(const std::vector<Tensor>& inputs) {
  const std::string where = "Estimator::predict";
  const auto input_data = datasets_of(inputs, "input", where);
  check_samples(shapes_of(inputs), {}, spec_.seqsize > 0, where);
  if (spec_.seqsize > 0) return predict(fields_of(input_data));
  NoGradGuard no_grad;
  std::vector<NodeRef> refs;
  for (const Tensor& t : inputs) refs.emplace_back(on_device(t));
  return model_.invoke(refs).value().cpu();
}

Tensor Estimator::predict(const data::Dataset& inputs) { return predict(data::fields_of(inputs)); }

Tensor Estimator::predict(std::span<const data::FieldRef> inputs) {
  Tensor out;
  predict_into(inputs, out);
  return out;
}

void Estimator::predict(const Tensor& x, Tensor& out) { predict(std::vector<Tensor>{x}, out); }

void Estimator::predict(const std::vector<Tensor>& inputs, Tensor& out) {
  const std::string where = "Estimator::predict";
  const auto input_data = datasets_of(inputs, "input", where);
  check_samples(shapes_of(inputs), {}, spec_.seqsize > 0, where);
  predict(fields_of(input_data), out);
}

void Estimator::predict(const data::Dataset& inputs, Tensor& out) { predict(data::fields_of(inputs), out); }

void Estimator::predict(std::span<const data::FieldRef> inputs, Tensor& out) {
  if (!out.defined()) throw UsageError("Estimator::predict: out is undefined; give a tensor to write into");
  predict_into(inputs, out);
}

Tensor Estimator::predict_rows(const data::Dataset& rows, std::int64_t begin, std::int64_t end) {
  const data::Batch b = rows.get_batch(row_range(begin, end));
  std::vector<NodeRef> refs;
  for (const Tensor& t : b) refs.emplace_back(on_device(t));
  return model_.invoke(refs).value().cpu();
}

Tensor Estimator::predict_window(std::span<const data::FieldRef> inputs, std::span<const Shape> shapes,
                                 std::int64_t begin, std::int64_t end) {
  std::vector<NodeRef> refs;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Shape& s = shapes[k];
    const std::array<data::Range, 3> box{data::Range{0, s[0]}, data::Range{0, s[1]}, data::Range{begin, end}};
    refs.emplace_back(on_device(inputs[k].dataset->read_box(inputs[k].field, box).permute(kTimeMajor).contiguous()));
  }
  return model_.invoke(refs).value();
}

void Estimator::predict_into(std::span<const data::FieldRef> inputs, Tensor& out) {
  const std::string where = "Estimator::predict";
  const bool series = spec_.seqsize > 0;
  const std::vector<Shape> shapes = shapes_of(inputs, where);
  check_samples(shapes, {}, series, where);
  const std::int64_t n = shapes[0][series ? 2 : 0];  // rows, or time steps
  if (out.defined()) {
    const bool fits = series ? out.dim() == 3 && out.size(1) == shapes[0][1] && out.size(2) == n
                             : out.dim() >= 1 && out.size(0) == n;
    if (!fits) {
      throw ShapeError(where + ": out has shape " + shape_str(out.shape()) + " but the inputs hold " +
                       (series ? shape_str({shapes[0][1], n}) + " (samples, time): out must be (features, samples, time)"
                               : std::to_string(n) + " samples: out must be (" + std::to_string(n) + ", ...)"));
    }
  } else if (n == 0) {
    throw UsageError(where + ": no samples to predict");
  }
  NoGradGuard no_grad;
  if (series && reset_) reset_();
  const FieldRows rows(std::vector<data::FieldRef>(inputs.begin(), inputs.end()), 0, series ? 0 : n);
  const std::int64_t chunk = series ? spec_.seqsize : spec_.batchsize;
  for (std::int64_t i = 0; i < n; i += chunk) {
    const std::int64_t end = std::min(n, i + chunk);
    // Series windows are time-major (time, samples, features); out is (features, samples, time).
    Tensor prediction =
        series ? predict_window(inputs, shapes, i, end).cpu().permute(kTimeMajor) : predict_rows(rows, i, end);
    Shape whole = prediction.shape();
    whole[series ? 2 : 0] = n;
    if (!out.defined()) out = Tensor::empty(whole, prediction.dtype());
    Tensor slot = out.slice(series ? 2 : 0, i, end);
    check_slot(slot, prediction, out, whole);
    slot.copy_(prediction);
  }
}

}  // namespace zkynet::nn
