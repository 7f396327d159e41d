#include "array_dataset.h"

#include <zkynet/framework/error.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace zkynet::python {

namespace {

// Runs of consecutive rows up to which a numpy batch reads slice by slice; beyond, one fancy
// read (each slice costs a few microseconds of Python).
constexpr std::size_t kMaxSliceReads = 8;
constexpr std::size_t kFancyGroupRows = 256;
// Pages handed back are rounded out to this: a fault maps its neighbours too (fault-around,
// 64 KiB by default), which the rows' own pages would miss.
constexpr std::uintptr_t kReleaseAlign = 2u << 20;

std::string type_name_of(py::handle obj) { return py::str(obj.get_type().attr("__name__")); }

// What tensor_from_python makes of an array of this dtype, so that lazy and in-memory arrays
// give the same tensors.
DType dtype_for(const py::dtype& dt, const std::string& where) {
  if (dt.kind() == 'f') return dt.itemsize() == 4 ? DType::Float32 : DType::Float64;
  if (dt.kind() == 'i' || dt.kind() == 'u' || dt.kind() == 'b') return DType::Int64;
  throw TypeError(where + ": cannot hold an array of dtype " + std::string(py::str(static_cast<const py::handle&>(dt))) +
                  " (expected float32, float64 or int64, or bool/int/float to convert)");
}

Shape shape_for(py::handle array) {
  Shape out;
  for (auto n : py::tuple(array.attr("shape"))) out.push_back(n.cast<std::int64_t>());
  return out;
}

Shape with_rows(std::int64_t rows, Shape shape) {
  shape[0] = rows;
  return shape;
}

}  // namespace

bool is_lazy_array(py::handle obj) {
  const py::module_ numpy = py::module_::import("numpy");
  if (py::isinstance(obj, numpy.attr("memmap"))) return true;
  if (py::isinstance<py::array>(obj) || py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) return false;
  if (py::hasattr(obj, "__dlpack__")) return false;  // torch, jax, zkynet tensors: in memory
  return py::hasattr(obj, "shape") && py::hasattr(obj, "dtype") && py::hasattr(obj, "__getitem__");
}

ArrayLikeDataset::ArrayLikeDataset(const std::vector<py::object>& arrays, const std::vector<std::string>& names) {
  if (arrays.empty()) throw UsageError("ArrayDataset: no arrays");
  const py::module_ numpy = py::module_::import("numpy");
  for (std::size_t k = 0; k < arrays.size(); ++k) {
    const py::object& a = arrays[k];
    const std::string what =
        (k < names.size() ? names[k] : "ArrayDataset: array " + std::to_string(k)) + " (" + type_name_of(a) + ")";
    if (!py::hasattr(a, "shape") || !py::hasattr(a, "dtype") || !py::hasattr(a, "__getitem__")) {
      throw TypeError(what + " is not array-like: it needs shape, dtype and slicing");
    }
    Field f{a, shape_for(a), dtype_for(numpy.attr("dtype")(a.attr("dtype")).cast<py::dtype>(), what)};
    if (f.shape.empty()) throw ShapeError(what + " is 0-d; samples are rows of its first axis");
    if (!fields_.empty() && f.shape[0] != rows_) {
        throw ShapeError(what + " has shape " + shape_str(f.shape) + " but array 0 has " + shape_str(fields_[0].shape) +
                       ": the first axes (samples) differ");
    }
    f.fancy_reads = py::isinstance<py::array>(a);
    if (py::isinstance(a, numpy.attr("memmap"))) {
      const std::string mode = py::str(py::getattr(a, "mode", py::str("c")));
      const auto view = py::reinterpret_borrow<py::array>(a);
      if ((mode == "r" || mode == "r+" || mode == "w+") && view.ndim() > 0 && view.strides(0) > 0) {
        f.mapped = static_cast<const char*>(view.data());
        f.row_stride = view.strides(0);
      }
    }
    rows_ = f.shape[0];
    fields_.push_back(std::move(f));
  }
}

ArrayLikeDataset::~ArrayLikeDataset() {
  if (!Py_IsInitialized()) {
    for (Field& f : fields_) f.array.release();
    return;
  }
  py::gil_scoped_acquire gil;
  fields_.clear();
}

std::vector<Shape> ArrayLikeDataset::field_shapes() const {
  std::vector<Shape> out;
  for (const Field& f : fields_) out.push_back(f.shape);
  return out;
}

data::Sample ArrayLikeDataset::get(std::int64_t index) const {
  data::detail::check_index(index, rows_, "ArrayDataset::get");
  const std::int64_t one[] = {index};
  data::Batch batch = get_batch(one);
  for (Tensor& t : batch) t = t.reshape(Shape(t.shape().begin() + 1, t.shape().end()));
  return batch;
}

data::Batch ArrayLikeDataset::get_batch(std::span<const std::int64_t> indices) const {
  if (indices.empty()) throw UsageError("ArrayDataset::get_batch: no indices");
  for (std::int64_t i : indices) data::detail::check_index(i, rows_, "ArrayDataset::get_batch");
  // Read the distinct rows in increasing order (what h5py's fancy reads require), then place them.
  std::vector<std::int64_t> rows(indices.begin(), indices.end());
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  const bool in_order = std::equal(rows.begin(), rows.end(), indices.begin(), indices.end());
  py::gil_scoped_acquire gil;  // once per batch
  data::Batch out;
  for (const Field& f : fields_) {
    Tensor read = Tensor::empty(with_rows(static_cast<std::int64_t>(rows.size()), f.shape), f.dtype);
    read_rows(f, rows, read);
    if (in_order) {
      out.push_back(std::move(read));
      continue;
    }
    Tensor batch = Tensor::empty(with_rows(static_cast<std::int64_t>(indices.size()), f.shape), f.dtype);
    const std::size_t row_bytes = static_cast<std::size_t>(read.numel() / std::max<std::int64_t>(read.size(0), 1)) *
                                  dtype_size(f.dtype);
    const char* src = static_cast<const char*>(read.raw_data());
    char* dst = static_cast<char*>(batch.raw_data());
    for (std::size_t j = 0; j < indices.size(); ++j) {
      const auto pos = static_cast<std::size_t>(std::lower_bound(rows.begin(), rows.end(), indices[j]) - rows.begin());
      if (row_bytes > 0) std::memcpy(dst + j * row_bytes, src + pos * row_bytes, row_bytes);
    }
    out.push_back(std::move(batch));
  }
  return out;
}

void ArrayLikeDataset::read_rows(const Field& f, std::span<const std::int64_t> rows, Tensor& out) const {
  std::vector<std::pair<std::size_t, std::int64_t>> runs;  // (position in rows, length)
  for (std::size_t j = 0; j < rows.size(); ++j) {
    if (!runs.empty() && rows[runs.back().first] + runs.back().second == rows[j]) {
      ++runs.back().second;
    } else {
      runs.emplace_back(j, 1);
    }
  }
  if (runs.size() > kMaxSliceReads && f.fancy_reads) {
    // In groups, each group's pages handed back before the next is read: one gather of a
    // whole shuffled batch would fault in (and keep, until its end) 64 KiB around every row.
    for (std::size_t g = 0; g < rows.size(); g += kFancyGroupRows) {
      const std::size_t n = std::min(kFancyGroupRows, rows.size() - g);
      py::array_t<std::int64_t> index(static_cast<py::ssize_t>(n), rows.data() + g);
      Tensor part = out.slice(0, static_cast<std::int64_t>(g), static_cast<std::int64_t>(g + n));
      copy_piece(f, f.array[index], part);
      ++reads_;
      release_pages(f, rows[g], rows[g + n - 1] + 1);
    }
    return;
  }
  for (const auto& [pos, length] : runs) {
    const std::int64_t first = rows[pos];
    Tensor part = out.slice(0, static_cast<std::int64_t>(pos), static_cast<std::int64_t>(pos) + length);
    copy_piece(f, f.array[py::slice(first, first + length, 1)], part);
    ++reads_;
    release_pages(f, first, first + length);
  }
}

void ArrayLikeDataset::copy_piece(const Field& f, py::handle piece, Tensor& out) const {
  Tensor values = tensor_from_python(piece);  // a view of numpy's result where it can be
  if (values.shape() != out.shape()) {
    throw ShapeError("ArrayDataset: a read of " + type_name_of(f.array) + " gave shape " + shape_str(values.shape()) +
                     ", expected " + shape_str(out.shape()));
  }
  out.copy_(values.dtype() == f.dtype ? values : values.to(f.dtype));
}

// A memmap's pages, once read, stay mapped into the process and count as its resident memory:
// an epoch over a file larger than memory would hold all of it (until the kernel reclaims it
// under pressure). Handing them back keeps the data in the page cache and the file, and costs
// a page fault if read again. Only shared mappings: a private (mode "c") one would lose writes.
void ArrayLikeDataset::release_pages(const Field& f, std::int64_t first_row, std::int64_t end_row) const {
  if (f.mapped == nullptr || end_row <= first_row) return;
  static const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  // Within the mapping: from the page holding row 0 to the end of the last row.
  const auto lowest = reinterpret_cast<std::uintptr_t>(f.mapped) & ~(page - 1);
  const auto highest = reinterpret_cast<std::uintptr_t>(f.mapped + rows_ * f.row_stride);
  const auto begin = std::max(lowest, reinterpret_cast<std::uintptr_t>(f.mapped + first_row * f.row_stride) &
                                          ~(kReleaseAlign - 1));
  const auto end = std::min(highest, (reinterpret_cast<std::uintptr_t>(f.mapped + end_row * f.row_stride) +
                                      kReleaseAlign - 1) & ~(kReleaseAlign - 1));
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // a hint: failure is harmless
}

Tensor ArrayLikeDataset::read_box(std::size_t field, std::span<const data::Range> box) const {
  data::detail::check_box(field, fields_.size(), fields_.at(std::min(field, fields_.size() - 1)).shape, box,
                          "ArrayDataset::read_box");
  const Field& f = fields_[field];
  Shape shape;
  for (const data::Range& r : box) shape.push_back(r.end - r.begin);
  Tensor out = Tensor::empty(shape, f.dtype);
  if (out.numel() == 0) return out;
  py::gil_scoped_acquire gil;
  py::tuple index(box.size());
  for (std::size_t a = 0; a < box.size(); ++a) index[a] = py::slice(box[a].begin, box[a].end, 1);
  copy_piece(f, f.array[index], out);
  ++reads_;
  release_pages(f, box[0].begin, box[0].end);
  return out;
}

}  // namespace zkynet::python
