#include <zkynet/data/dataset.h>
#include <zkynet/framework/error.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

namespace zkynet::data {

namespace detail {

void check_index(std::int64_t index, std::int64_t size, const char* where) {
  if (index < 0 || index >= size) {
    throw IndexError(std::string(where) + ": index " + std::to_string(index) + " is out of range for " +
                     std::to_string(size) + " samples");
  }
}

void check_box(std::size_t field, std::size_t fields, const Shape& shape, std::span<const Range> box, const char* where) {
  if (field >= fields) {
    throw IndexError(std::string(where) + ": field " + std::to_string(field) + " is out of range for " +
                     std::to_string(fields) + " fields");
  }
  if (box.size() != shape.size()) {
    throw ShapeError(std::string(where) + ": a box of " + std::to_string(box.size()) + " ranges for field " +
                     std::to_string(field) + " of shape " + shape_str(shape) + ", which has " +
                     std::to_string(shape.size()) + " axes");
  }
  for (std::size_t a = 0; a < box.size(); ++a) {
    if (box[a].begin < 0 || box[a].begin > box[a].end || box[a].end > shape[a]) {
      throw IndexError(std::string(where) + ": range [" + std::to_string(box[a].begin) + ", " +
                       std::to_string(box[a].end) + ") of axis " + std::to_string(a) + " is out of bounds for field " +
                       std::to_string(field) + " of shape " + shape_str(shape));
    }
  }
}

}  // namespace detail

namespace {

Shape with_rows(std::int64_t rows, const Shape& sample) {
  Shape out = sample;
  out.insert(out.begin(), rows);
  return out;
}

Shape without_rows(const Shape& shape) { return Shape(shape.begin() + 1, shape.end()); }

std::size_t row_bytes(const Tensor& t) {
  return static_cast<std::size_t>(t.size(0) == 0 ? 0 : t.numel() / t.size(0)) * dtype_size(t.dtype());
}

}  // namespace

Batch stack_samples(std::span<const Sample> samples) {
  if (samples.empty()) throw UsageError("stack_samples: no samples to stack");
  const Sample& first = samples.front();
  const auto rows = static_cast<std::int64_t>(samples.size());
  Batch out;
  for (std::size_t f = 0; f < first.size(); ++f) {
    if (!first[f].defined()) throw UsageError("stack_samples: field " + std::to_string(f) + " is undefined");
    out.push_back(Tensor::empty(with_rows(rows, first[f].shape()), first[f].dtype()));
  }
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = samples[i];
    if (s.size() != first.size()) {
      throw ShapeError("stack_samples: sample " + std::to_string(i) + " has " + std::to_string(s.size()) +
                       " fields, sample 0 has " + std::to_string(first.size()));
    }
    for (std::size_t f = 0; f < s.size(); ++f) {
      const Tensor& t = s[f];
      const std::string what = "stack_samples: field " + std::to_string(f) + " of sample " + std::to_string(i);
      if (!t.defined()) throw UsageError(what + " is undefined");
      if (t.shape() != first[f].shape()) {
        throw ShapeError(what + " has shape " + shape_str(t.shape()) + ", sample 0's has " + shape_str(first[f].shape()));
      }
      if (t.dtype() != first[f].dtype()) {
        throw TypeError(what + " is " + std::string(dtype_name(t.dtype())) + ", sample 0's is " +
                        std::string(dtype_name(first[f].dtype())));
      }
      const Tensor src = t.contiguous();
      const std::size_t bytes = static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype());
      if (bytes > 0) std::memcpy(static_cast<char*>(out[f].raw_data()) + i * bytes, src.raw_data(), bytes);
    }
  }
  return out;
}

Batch Dataset::get_batch(std::span<const std::int64_t> indices) const {
  std::vector<Sample> samples;
  samples.reserve(indices.size());
  for (std::int64_t i : indices) samples.push_back(get(i));
  if (samples.empty()) throw UsageError("Dataset::get_batch: no indices");
  return stack_samples(samples);
}

std::vector<Shape> Dataset::field_shapes() const {
  if (size() == 0) throw UsageError("Dataset::field_shapes: the dataset is empty, its fields cannot be seen");
  std::vector<Shape> out;
  for (const Tensor& t : get(0)) out.push_back(with_rows(size(), t.shape()));
  return out;
}

Tensor Dataset::read_box(std::size_t field, std::span<const Range> box) const {
  const std::vector<Shape> shapes = field_shapes();
  detail::check_box(field, shapes.size(), shapes.at(std::min(field, shapes.size() - 1)), box, "Dataset::read_box");
  Shape box_shape;
  for (const Range& r : box) box_shape.push_back(r.end - r.begin);
  if (shape_numel(box_shape) == 0) return Tensor::empty(box_shape, get(0)[field].dtype());
  std::vector<std::int64_t> rows(static_cast<std::size_t>(box[0].end - box[0].begin));
  std::iota(rows.begin(), rows.end(), box[0].begin);
  Tensor block = get_batch(rows)[field];
  for (std::size_t a = 1; a < box.size(); ++a) block = block.slice(static_cast<std::int64_t>(a), box[a].begin, box[a].end);
  return block.contiguous();
}

std::vector<FieldRef> fields_of(const Dataset& dataset) {
  std::vector<FieldRef> out;
  const std::size_t fields = dataset.field_shapes().size();
  for (std::size_t k = 0; k < fields; ++k) out.push_back(FieldRef{&dataset, k});
  return out;
}

TensorDataset::TensorDataset(std::vector<Tensor> tensors) {
  if (tensors.empty()) throw UsageError("TensorDataset: no tensors");
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    Tensor& t = tensors[k];
    if (!t.defined()) throw UsageError("TensorDataset: tensor " + std::to_string(k) + " is undefined");
    if (t.device() != Device::cpu()) throw TypeError("TensorDataset: tensor " + std::to_string(k) + " is not on the CPU");
    if (t.dim() == 0) {
      throw ShapeError("TensorDataset: tensor " + std::to_string(k) + " is 0-d; samples index its first axis");
    }
    if (t.size(0) != tensors.front().size(0)) {
      throw ShapeError("TensorDataset: tensor " + std::to_string(k) + " has shape " + shape_str(t.shape()) + " but tensor 0 has " +
                       shape_str(tensors.front().shape()) + ": the first axes (samples) differ");
    }
    t = t.contiguous();
  }
  size_ = tensors.front().size(0);
  tensors_ = std::move(tensors);
}

Sample TensorDataset::get(std::int64_t index) const {
  detail::check_index(index, size_, "TensorDataset::get");
  Sample out;
  out.reserve(tensors_.size());
  for (const Tensor& t : tensors_) out.push_back(t.slice(0, index, index + 1).reshape(without_rows(t.shape())));
  return out;
}

std::vector<Shape> TensorDataset::field_shapes() const {
  std::vector<Shape> out;
  for (const Tensor& t : tensors_) out.push_back(t.shape());
  return out;
}

Tensor TensorDataset::read_box(std::size_t field, std::span<const Range> box) const {
  detail::check_box(field, tensors_.size(), tensors_.at(std::min(field, tensors_.size() - 1)).shape(), box,
                    "TensorDataset::read_box");
  Tensor view = tensors_[field];
  for (std::size_t a = 0; a < box.size(); ++a) view = view.slice(static_cast<std::int64_t>(a), box[a].begin, box[a].end);
  // A box of whole rows is already contiguous: clone it, so that the result never aliases the data.
  return view.is_contiguous() ? view.clone() : view.contiguous();
}

Batch TensorDataset::get_batch(std::span<const std::int64_t> indices) const {
  if (indices.empty()) throw UsageError("TensorDataset::get_batch: no indices");
  for (std::int64_t i : indices) detail::check_index(i, size_, "TensorDataset::get_batch");
  const auto rows = static_cast<std::int64_t>(indices.size());
  Batch out;
  out.reserve(tensors_.size());
  for (const Tensor& t : tensors_) {
    Tensor batch = Tensor::empty(with_rows(rows, without_rows(t.shape())), t.dtype());
    const std::size_t bytes = row_bytes(t);
    if (bytes > 0) {
      const char* src = static_cast<const char*>(t.raw_data());
      char* dst = static_cast<char*>(batch.raw_data());
      // Runs of consecutive indices (a whole batch, without shuffling) are one block copy.
      for (std::size_t j = 0; j < indices.size();) {
        std::size_t run = 1;
        while (j + run < indices.size() && indices[j + run] == indices[j] + static_cast<std::int64_t>(run)) ++run;
        std::memcpy(dst + j * bytes, src + static_cast<std::size_t>(indices[j]) * bytes, run * bytes);
        j += run;
      }
    }
    out.push_back(std::move(batch));
  }
  return out;
}

}  // namespace zkynet::data
