// Datasets: indexable collections of samples, each sample a few tensors (inputs, targets, ...).
//
//   Tensor x = Tensor::randn({1000, 64}, gen, DType::Float32);    // 1000 samples of 64 features
//   Tensor y = Tensor::from_vector(labels, {1000});                // int64 class labels
//   data::TensorDataset ds({x, y});
//   ds.size();                          // 1000
//   data::Sample s = ds.get(7);         // s[0]: x's row 7, shape (64); s[1]: y[7], 0-d
//   std::vector<std::int64_t> rows{3, 4, 9};
//   data::Batch b = ds.get_batch(rows); // b[0]: shape (3,64); b[1]: shape (3)
//
// A DataLoader (dataloader.h) iterates over shuffled batches of any Dataset.
//
// A field can also be read as a whole array, a box at a time, without reading the rest:
//   const data::Range box[] = {{0, 3}, {10, 20}};
//   Tensor block = ds.read_box(0, box);  // x[0:3, 10:20], a new (3, 10) tensor
// SequenceBatches (sequence.h) and the Estimator read series windows of a field this way, so a
// dataset backed by a file (HDF5Dataset) serves windows of series larger than memory.
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstdint>
#include <span>
#include <vector>

namespace zkynet::data {

// One sample, or one batch: the dataset's fields in a fixed order (e.g. {input, target}).
using Sample = std::vector<Tensor>;
using Batch = std::vector<Tensor>;

// The positions [begin, end) along one axis.
struct Range {
  std::int64_t begin = 0;
  std::int64_t end = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual std::int64_t size() const = 0;
  // The sample at `index` in [0, size()); IndexError otherwise.
  virtual Sample get(std::int64_t index) const = 0;

  // The samples at `indices`, each field stacked along a new first axis: field k of the batch
  // has shape (indices.size(), sample field k's shape...). The default calls get() per index
  // and copies each sample into one contiguous tensor per field (a block copy per sample);
  // datasets that can do better override it (TensorDataset copies runs of rows, HDF5Dataset
  // reads them in one go). UsageError for an empty list; ShapeError or TypeError when samples
  // disagree in shape or dtype.
  virtual Batch get_batch(std::span<const std::int64_t> indices) const;

  // Each field's shape as one array: (size(), sample field k's shape...). The default reads
  // sample 0 (UsageError for an empty dataset, whose fields it cannot see).
  virtual std::vector<Shape> field_shapes() const;
  // The box of field `field` spanning box[a] along each axis a (rows first), as a new
  // contiguous tensor. The default reads the box's rows with get_batch and copies the rest of
  // the box out of them; TensorDataset copies the box alone, HDF5Dataset reads it alone.
  // IndexError for a field or range out of bounds, ShapeError for a box of the wrong rank.
  virtual Tensor read_box(std::size_t field, std::span<const Range> box) const;
};

// One field of a dataset: an input or a target of the Estimator, one series of
// SequenceBatches. It refers to the dataset, which must outlive it.
struct FieldRef {
  const Dataset* dataset = nullptr;
  std::size_t field = 0;
};
// Every field of `dataset`, in order.
std::vector<FieldRef> fields_of(const Dataset& dataset);

// Stacks samples along a new first axis, one contiguous tensor per field (see get_batch).
Batch stack_samples(std::span<const Sample> samples);

// Samples are rows of tensors: sample i is {t[i] for each tensor t}, so every tensor must
// have at least one dimension and the same size along the first one (ShapeError otherwise).
// get() returns views sharing the tensors' storage (no copy); get_batch() copies rows.
class TensorDataset : public Dataset {
 public:
  // Non-contiguous tensors are made contiguous once, here, so that rows are plain blocks.
  explicit TensorDataset(std::vector<Tensor> tensors);

  std::int64_t size() const override { return size_; }
  Sample get(std::int64_t index) const override;
  Batch get_batch(std::span<const std::int64_t> indices) const override;
  std::vector<Shape> field_shapes() const override;
  Tensor read_box(std::size_t field, std::span<const Range> box) const override;

  const std::vector<Tensor>& tensors() const { return tensors_; }

 private:
  std::vector<Tensor> tensors_;
  std::int64_t size_ = 0;
};

namespace detail {
// IndexError unless 0 <= index < size; `where` names the dataset.
void check_index(std::int64_t index, std::int64_t size, const char* where);
// IndexError unless field < fields, and unless the box lies within `shape` (one non-empty or
// empty range [begin, end) per axis, 0 <= begin <= end <= shape[a]); ShapeError for a box
// whose rank is not the shape's. `where` names the dataset.
void check_box(std::size_t field, std::size_t fields, const Shape& shape, std::span<const Range> box, const char* where);
}  // namespace detail

}  // namespace zkynet::data
