// DataLoader: batches of a Dataset, optionally shuffled, epoch after epoch.
//
//   data::TensorDataset ds({x, y});                      // x (1000, 64), y (1000)
//   data::DataLoader loader(ds, {.batch_size = 32, .shuffle = true, .seed = 42});
//   for (int epoch = 0; epoch < 10; ++epoch) {
//     for (const data::Batch& b : loader) {             // each loop is the next epoch
//       // b[0]: (32, 64), b[1]: (32); the last batch has 1000 % 32 = 8 rows
//       auto r = loss_module(b[0], b[1]);
//       ...
//     }
//   }
//
// Shuffling is reproducible: epoch e's order depends on (seed, e) only, through
// std::mt19937_64 and a Fisher-Yates shuffle written here (std::shuffle and
// std::uniform_int_distribution differ between standard libraries), so the same seed gives
// the same batches on every platform, and set_epoch(e) replays epoch e (to resume a run).
//
// The loader holds a reference to the dataset, which must outlive it. Batches are built on
// the calling thread when an iterator is dereferenced; each is a new tensor per field.
//
// Feeding a GPU (PyTorch's pin_memory, plus zkynet's own `device`):
//   data::DataLoader loader(ds, {.batch_size = 256, .pin_memory = true, .device = Device::cuda()});
// pin_memory collates each batch into pinned host memory (ignored, with a one-time warning on
// stderr, when no CUDA device answers, as in PyTorch). device delivers the batches on that
// device: batch i+1's host->device copy is issued on the device's copy stream when batch i is
// handed out, so it runs while batch i is computed on; kernels wait for a batch's copy only
// when it is handed out. device = cpu (the default) delivers host batches, the same as before.
#pragma once

#include <zkynet/data/dataset.h>

#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <vector>

namespace zkynet::data {

struct DataLoaderOptions {
  std::int64_t batch_size = 1;
  bool shuffle = false;
  // Leave out the last batch when it is smaller than batch_size (else it is kept, smaller).
  bool drop_last = false;
  std::uint64_t seed = 0;
  // Batches in pinned host memory (copied there after collation, as PyTorch's pin thread does).
  bool pin_memory = false;
  // Where batches are delivered (a zkynet extension); a CUDA device must answer (UsageError).
  Device device = Device::cpu();
};

class DataLoader {
 public:
  // UsageError unless batch_size >= 1.
  DataLoader(const Dataset& dataset, DataLoaderOptions options = {});
  // A temporary dataset would be destroyed before the loop: refused at compile time.
  DataLoader(const Dataset&& dataset, DataLoaderOptions options = {}) = delete;

  class Iterator;

  // Starts the next epoch (shuffled anew when options.shuffle) and returns its first batch.
  Iterator begin();
  std::default_sentinel_t end() const { return {}; }

  // Batches per epoch.
  std::int64_t size() const;
  // The epoch the next begin() starts (0 for a new loader); set_epoch resumes at `epoch`.
  std::int64_t epoch() const { return epoch_; }
  void set_epoch(std::int64_t epoch);
  // The sample order of `epoch`: 0..n-1 without shuffling, else a permutation of it.
  std::vector<std::int64_t> order(std::int64_t epoch) const;

  const Dataset& dataset() const { return dataset_; }
  const DataLoaderOptions& options() const { return options_; }
  // Whether batches are pinned: options.pin_memory and a CUDA device answers.
  bool pins() const { return pin_; }

  // An input iterator: the batch is read from the dataset on first dereference.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = const Batch*;
    using reference = const Batch&;

    Iterator() = default;
    const Batch& operator*() const;
    const Batch* operator->() const { return &**this; }
    Iterator& operator++();
    void operator++(int) { ++*this; }
    // Position in the epoch: the batch's number.
    std::int64_t index() const { return index_; }
    friend bool operator==(const Iterator& it, std::default_sentinel_t) { return it.index_ >= it.batches_; }

   private:
    friend class DataLoader;
    Iterator(const DataLoader* loader, std::shared_ptr<const std::vector<std::int64_t>> order);

    const DataLoader* loader_ = nullptr;
    std::shared_ptr<const std::vector<std::int64_t>> order_;
    std::int64_t index_ = 0;
    std::int64_t batches_ = 0;
    mutable std::optional<Batch> current_;
    // The next batch, already copying to options.device (null: none issued).
    struct Prefetch;
    mutable std::shared_ptr<Prefetch> next_;
    Batch read(std::int64_t index) const;  // collated (and pinned) on the host
  };

 private:
  const Dataset& dataset_;
  DataLoaderOptions options_;
  std::int64_t epoch_ = 0;
  bool pin_ = false;
};

}  // namespace zkynet::data
