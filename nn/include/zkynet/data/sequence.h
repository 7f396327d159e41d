// Sequence batching for truncated backpropagation through time.
//
// Time series come laid out as FluxUtils.jl does: (features, samples, time), one tensor per
// role (inputs, targets, weights) with the same samples and time. Each sample is one stream
// (an independent series). SequenceBatches cuts them into windows of `seqsize` time steps and
// returns each window time-major, (seq, batch, features), so window[t] is the (batch,
// features) input of time step t:
//
//   Tensor x = ...;   // (3 features, 8 streams, 100 steps)
//   Tensor y = ...;   // (1 feature,  8 streams, 100 steps)
//   data::SequenceBatches seqs({x, y}, {.seqsize = 20, .batch_size = 4});
//   for (const data::SequenceWindow& w : seqs) {
//     if (w.window_index == 0) reset_hidden_state();   // a new group of streams starts
//     // w.tensors[0]: (20, 4, 3), w.tensors[1]: (20, 4, 1), steps w.start .. w.start + 19
//     ...; detach_hidden_state();                      // truncate: no gradient to earlier windows
//   }
//
// Order: streams are taken batch_size at a time (in sample order); for each group, its windows
// follow in time order, so the hidden state can be carried from one window to the next within
// a group (FluxUtils' datagen order). With 8 streams, batch_size 4 and 100 steps / 20: group 0's
// windows 0..4, then group 1's windows 0..4.
//
// Tails: when the number of steps is not a multiple of seqsize, the last window of each group
// is shorter (steps % seqsize steps): kept by default, as FluxUtils does, dropped with
// drop_short_window. Likewise the last group of streams is smaller when batch_size does not
// divide the number of streams: kept, or dropped with drop_short_batch.
//
// split_series (FluxUtils' rebatch): with few long series and batch_size >= 2 x samples, each
// series is cut into n = batch_size / samples consecutive segments of steps / n steps, which
// become separate streams (segment k of sample s is stream s * n + k); the last steps % n
// steps are dropped. This gives a full batch from a single long series.
//
// Each window is a fresh contiguous tensor per role, copied with one strided copy per group of
// streams from the same sample (no per-element access); the input tensors are held, not copied.
//
// Series too large for memory: give fields of datasets instead of tensors, and each window is
// read as it is needed, one box (all features, the group's streams, the window's steps) per
// field (read_box; with split_series, one box per stream):
//   data::HDF5Dataset xs("series.h5", {"x"}), ys("series.h5", {"y"});   // (3, S, T), (1, S, T)
//   data::SequenceBatches seqs({{&xs, 0}, {&ys, 0}}, {.seqsize = 20, .batch_size = 4});
// The datasets must outlive the SequenceBatches.
#pragma once

#include <zkynet/data/dataset.h>
#include <zkynet/framework/tensor.h>

#include <cstdint>
#include <iterator>
#include <vector>

namespace zkynet::data {

struct SequenceOptions {
  std::int64_t seqsize = 1;       // time steps per window: the truncation length of BPTT
  std::int64_t batch_size = 0;    // streams per window; 0: all streams at once
  bool drop_short_window = false;
  bool drop_short_batch = false;
  bool split_series = false;
  // > 0: only the first max_steps time steps are cut into windows (the Estimator holds the
  // later ones out for validation); 0: all of them.
  std::int64_t max_steps = 0;
};

struct SequenceWindow {
  std::vector<Tensor> tensors;  // one (seq, batch, features) tensor per input tensor
  std::int64_t batch_index;     // which group of streams
  std::int64_t window_index;    // position within the group's windows; 0 starts the streams afresh
  std::int64_t start;           // first time step, counted within each stream
};

class SequenceBatches {
 public:
  // ShapeError unless every tensor is 3-d (features, samples, time) with the same samples and
  // time; UsageError for an empty list or seqsize < 1 or batch_size < 0.
  SequenceBatches(std::vector<Tensor> series, SequenceOptions options);
  // The same over fields of datasets, read window by window (each field's whole shape is
  // (features, samples, time)); the same errors, and IndexError for a field a dataset lacks.
  SequenceBatches(std::vector<FieldRef> series, SequenceOptions options);

  // Windows in all: groups() x windows_per_group().
  std::int64_t size() const { return groups_ * windows_per_group_; }
  std::int64_t streams() const { return streams_; }       // after split_series
  std::int64_t steps() const { return steps_; }           // time steps per stream (after split_series)
  std::int64_t groups() const { return groups_; }
  std::int64_t windows_per_group() const { return windows_per_group_; }

  // Window k in iteration order: group k / windows_per_group(), window k % windows_per_group().
  SequenceWindow operator[](std::int64_t k) const;

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = SequenceWindow;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    SequenceWindow operator*() const { return (*owner_)[k_]; }
    Iterator& operator++() {
      ++k_;
      return *this;
    }
    void operator++(int) { ++k_; }
    friend bool operator==(const Iterator& it, std::default_sentinel_t) { return it.k_ >= it.owner_->size(); }

   private:
    friend class SequenceBatches;
    explicit Iterator(const SequenceBatches* owner) : owner_(owner) {}
    const SequenceBatches* owner_ = nullptr;
    std::int64_t k_ = 0;
  };
  Iterator begin() const { return Iterator(this); }
  std::default_sentinel_t end() const { return {}; }

 private:
  void init(const std::vector<Shape>& shapes);
  // Series k's values at streams [b0, b1) and steps [t0, t1), time-major (a new tensor).
  Tensor window(std::size_t k, std::int64_t b0, std::int64_t b1, std::int64_t t0, std::int64_t t1) const;
  Tensor window_of_field(std::size_t k, std::int64_t b0, std::int64_t b1, std::int64_t t0, std::int64_t t1) const;

  std::vector<Tensor> series_;    // in memory, or
  std::vector<FieldRef> fields_;  // read as needed
  std::vector<Shape> shapes_;
  SequenceOptions options_;
  std::int64_t samples_ = 0;
  std::int64_t segments_ = 1;  // n: streams per sample
  std::int64_t streams_ = 0;
  std::int64_t steps_ = 0;
  std::int64_t batch_ = 0;
  std::int64_t groups_ = 0;
  std::int64_t windows_per_group_ = 0;
};

}  // namespace zkynet::data
