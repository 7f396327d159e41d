#include <zkynet/data/sequence.h>
#include <zkynet/framework/error.h>

#include <algorithm>
#include <string>

namespace zkynet::data {

SequenceBatches::SequenceBatches(std::vector<Tensor> series, SequenceOptions options)
    : series_(std::move(series)), options_(options) {
  if (series_.empty()) throw UsageError("SequenceBatches: no tensors");
  if (options_.seqsize < 1) {
    throw UsageError("SequenceBatches: seqsize must be at least 1, got " + std::to_string(options_.seqsize));
  }
  if (options_.batch_size < 0) {
    throw UsageError("SequenceBatches: batch_size must be >= 0 (0: all streams), got " +
                     std::to_string(options_.batch_size));
  }
  for (std::size_t k = 0; k < series_.size(); ++k) {
    const Tensor& x = series_[k];
    if (!x.defined()) throw UsageError("SequenceBatches: tensor " + std::to_string(k) + " is undefined");
    if (x.dim() != 3) {
      throw ShapeError("SequenceBatches: tensor " + std::to_string(k) + " has shape " + shape_str(x.shape()) +
                       "; time series are 3-d (features, samples, time)");
    }
    if (x.size(1) != series_.front().size(1) || x.size(2) != series_.front().size(2)) {
      throw ShapeError("SequenceBatches: tensor " + std::to_string(k) + " has shape " + shape_str(x.shape()) +
                       " but tensor 0 has " + shape_str(series_.front().shape()) +
                       ": samples and time (axes 1 and 2) must match");
    }
  }
  samples_ = series_.front().size(1);
  const std::int64_t time = series_.front().size(2);
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
  const std::int64_t t0 = w.start;
  const std::int64_t t1 = std::min(t0 + options_.seqsize, steps_);
  const Shape time_major{2, 1, 0};  // (features, streams, time) -> (time, streams, features)

  for (const Tensor& x : series_) {
    const std::int64_t features = x.size(0);
    Tensor out = Tensor::empty({t1 - t0, b1 - b0, features}, x.dtype());
    if (segments_ == 1) {
      out.copy_(x.slice(1, b0, b1).slice(2, t0, t1).permute(time_major));
    } else {
      // Stream b is segment b % n of sample b / n: sample s's first n x steps steps, seen as
      // (features, n, steps), hold its n streams side by side. One copy per sample in the group.
      const std::int64_t n = segments_;
      for (std::int64_t s = b0 / n; s * n < b1; ++s) {
        const std::int64_t k0 = std::max(b0, s * n) - s * n;
        const std::int64_t k1 = std::min(b1, (s + 1) * n) - s * n;
        const Tensor segments = x.slice(1, s, s + 1).slice(2, 0, n * steps_).reshape({features, n, steps_});
        out.slice(1, s * n + k0 - b0, s * n + k1 - b0)
            .copy_(segments.slice(1, k0, k1).slice(2, t0, t1).permute(time_major));
      }
    }
    w.tensors.push_back(std::move(out));
  }
  return w;
}

}  // namespace zkynet::data
