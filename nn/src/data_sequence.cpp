#include <zkynet/data/sequence.h>
#include <zkynet/framework/error.h>

#include <algorithm>
#include <array>
#include <string>

namespace zkynet::data {

namespace {

const Shape kTimeMajor{2, 1, 0};  // (features, streams, time) -> (time, streams, features)

}  // namespace

SequenceBatches::SequenceBatches(std::vector<Tensor> series, SequenceOptions options)
    : series_(std::move(series)), options_(options) {
  std::vector<Shape> shapes;
  for (std::size_t k = 0; k < series_.size(); ++k) {
    if (!series_[k].defined()) throw UsageError("SequenceBatches: tensor " + std::to_string(k) + " is undefined");
    shapes.push_back(series_[k].shape());
  }
  init(shapes);
}

SequenceBatches::SequenceBatches(std::vector<FieldRef> series, SequenceOptions options)
    : fields_(std::move(series)), options_(options) {
  std::vector<Shape> shapes;
  for (std::size_t k = 0; k < fields_.size(); ++k) {
    const FieldRef& f = fields_[k];
    if (f.dataset == nullptr) throw UsageError("SequenceBatches: field " + std::to_string(k) + " has no dataset");
    const std::vector<Shape> dataset_shapes = f.dataset->field_shapes();
    if (f.field >= dataset_shapes.size()) {
      throw IndexError("SequenceBatches: series " + std::to_string(k) + " is field " + std::to_string(f.field) +
                       " of a dataset with " + std::to_string(dataset_shapes.size()) + " fields");
    }
    shapes.push_back(dataset_shapes[f.field]);
  }
  init(shapes);
}

void SequenceBatches::init(const std::vector<Shape>& shapes) {
  if (shapes.empty()) throw UsageError("SequenceBatches: no tensors");
  if (options_.seqsize < 1) {
    throw UsageError("SequenceBatches: seqsize must be at least 1, got " + std::to_string(options_.seqsize));
  }
  if (options_.batch_size < 0) {
    throw UsageError("SequenceBatches: batch_size must be >= 0 (0: all streams), got " +
                     std::to_string(options_.batch_size));
  }
  if (options_.max_steps < 0) {
    throw UsageError("SequenceBatches: max_steps must be >= 0 (0: all steps), got " + std::to_string(options_.max_steps));
  }
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const Shape& x = shapes[k];
    if (x.size() != 3) {
      throw ShapeError("SequenceBatches: tensor " + std::to_string(k) + " has shape " + shape_str(x) +
                       "; time series are 3-d (features, samples, time)");
    }
    if (x[1] != shapes.front()[1] || x[2] != shapes.front()[2]) {
      throw ShapeError("SequenceBatches: tensor " + std::to_string(k) + " has shape " + shape_str(x) + " but tensor 0 has " +
                       shape_str(shapes.front()) + ": samples and time (axes 1 and 2) must match");
    }
  }
  shapes_ = shapes;
  samples_ = shapes.front()[1];
  const std::int64_t time = options_.max_steps > 0 ? std::min(options_.max_steps, shapes.front()[2]) : shapes.front()[2];
  if (options_.split_series && samples_ > 0 && options_.batch_size >= 2 * samples_) {
    segments_ = options_.batch_size / samples_;
  }
  streams_ = samples_ * segments_;
  steps_ = time / segments_;
  batch_ = options_.batch_size == 0 ? streams_ : options_.batch_size;
  if (streams_ == 0 || steps_ == 0 || batch_ == 0) return;  // no windows
  groups_ = options_.drop_short_batch ? streams_ / batch_ : (streams_ + batch_ - 1) / batch_;
  const std::int64_t s = options_.seqsize;
  windows_per_group_ = options_.drop_short_window ? steps_ / s : (steps_ + s - 1) / s;
}

SequenceWindow SequenceBatches::operator[](std::int64_t k) const {
  if (k < 0 || k >= size()) {
    throw IndexError("SequenceBatches: window " + std::to_string(k) + " is out of range for " + std::to_string(size()) +
                     " windows");
  }
  SequenceWindow w;
  w.batch_index = k / windows_per_group_;
  w.window_index = k % windows_per_group_;
  w.start = w.window_index * options_.seqsize;
  const std::int64_t b0 = w.batch_index * batch_;
  const std::int64_t b1 = std::min(b0 + batch_, streams_);
  const std::int64_t t1 = std::min(w.start + options_.seqsize, steps_);
  for (std::size_t s = 0; s < shapes_.size(); ++s) w.tensors.push_back(window(s, b0, b1, w.start, t1));
  return w;
}

Tensor SequenceBatches::window(std::size_t k, std::int64_t b0, std::int64_t b1, std::int64_t t0, std::int64_t t1) const {
  if (series_.empty()) return window_of_field(k, b0, b1, t0, t1);
  const Tensor& x = series_[k];
  const std::int64_t features = x.size(0);
  Tensor out = Tensor::empty({t1 - t0, b1 - b0, features}, x.dtype());
  if (segments_ == 1) {
    out.copy_(x.slice(1, b0, b1).slice(2, t0, t1).permute(kTimeMajor));
    return out;
  }
  // Stream b is segment b % n of sample b / n: sample s's first n x steps steps, seen as
  // (features, n, steps), hold its n streams side by side. One copy per sample in the group.
  const std::int64_t n = segments_;
  for (std::int64_t s = b0 / n; s * n < b1; ++s) {
    const std::int64_t k0 = std::max(b0, s * n) - s * n;
    const std::int64_t k1 = std::min(b1, (s + 1) * n) - s * n;
    const Tensor segments = x.slice(1, s, s + 1).slice(2, 0, n * steps_).reshape({features, n, steps_});
    out.slice(1, s * n + k0 - b0, s * n + k1 - b0).copy_(segments.slice(1, k0, k1).slice(2, t0, t1).permute(kTimeMajor));
  }
  return out;
}

Tensor SequenceBatches::window_of_field(std::size_t k, std::int64_t b0, std::int64_t b1, std::int64_t t0,
                                        std::int64_t t1) const {
  const FieldRef& f = fields_[k];
  const std::int64_t features = shapes_[k][0];
  if (segments_ == 1) {
    const std::array<Range, 3> box{Range{0, features}, Range{b0, b1}, Range{t0, t1}};
    return f.dataset->read_box(f.field, box).permute(kTimeMajor).contiguous();
  }
  // Segments of one sample lie steps_ apart in time: one box per stream.
  Tensor out;
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t s = b / segments_, offset = (b % segments_) * steps_;
    const std::array<Range, 3> box{Range{0, features}, Range{s, s + 1}, Range{offset + t0, offset + t1}};
    const Tensor stream = f.dataset->read_box(f.field, box);
    if (!out.defined()) out = Tensor::empty({t1 - t0, b1 - b0, features}, stream.dtype());
    out.slice(1, b - b0, b - b0 + 1).copy_(stream.permute(kTimeMajor));
  }
  return out;
}

}  // namespace zkynet::data
