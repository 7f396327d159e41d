// Data sets that live outside memory, as Python holds them: numpy memmaps, h5py datasets, and
// any array-like with shape, dtype and slicing (zarr arrays too), read a batch at a time.
//
//   x = np.load("x.npy", mmap_mode="r")               # or h5py.File("d.h5")["x"]
//   ds = data.ArrayDataset(x, y)                      # nothing read yet
//   for xb, yb in data.DataLoader(ds, batch_size=256, shuffle=True): ...
//
// Each batch takes the GIL once and reads its rows through the object's own indexing: one
// slice a[i:j] per run of consecutive rows; a numpy memmap's shuffled batch (many runs) is
// read by fancy reads a[rows] of 256 rows each instead. (h5py's fancy reads are HDF5 hyperslab unions, quadratic in
// the runs: 8192 shuffled rows took 8.5 s that way, 0.1 s as slices.) Series windows
// (read_box) are one a[i:j, k:l, m:n].
#pragma once

#include "convert.h"

#include <zkynet/data/dataset.h>

#include <string>
#include <vector>

namespace zkynet::python {

// Data that fit() and DataLoader read lazily: a numpy memmap, or an array-like that is not an
// in-memory array (no buffer, no __dlpack__) but has shape, dtype and __getitem__ (h5py.Dataset).
bool is_lazy_array(py::handle obj);

class ArrayLikeDataset : public data::Dataset {
 public:
  // With the GIL held. TypeError for an object that is not array-like or has a dtype zkynet
  // cannot hold (the in-memory conversions apply: float32/float64 kept, other floats float64,
  // bool and integers int64); ShapeError for a 0-d array or arrays whose first axes differ.
  // names[k], when given, names array k in these errors ("array k" otherwise).
  explicit ArrayLikeDataset(const std::vector<py::object>& arrays, const std::vector<std::string>& names = {});
  ~ArrayLikeDataset() override;  // releases the arrays with the GIL taken
  ArrayLikeDataset(const ArrayLikeDataset&) = delete;
  ArrayLikeDataset& operator=(const ArrayLikeDataset&) = delete;

  std::int64_t size() const override { return rows_; }
  data::Sample get(std::int64_t index) const override;
  data::Batch get_batch(std::span<const std::int64_t> indices) const override;
  std::vector<Shape> field_shapes() const override;
  Tensor read_box(std::size_t field, std::span<const data::Range> box) const override;

  // Python-level reads so far (slices and fancy reads), as HDF5Dataset's read_stats.
  std::int64_t reads() const { return reads_; }

 private:
  struct Field {
    py::object array;
    Shape shape;
    DType dtype;
    // A numpy memmap's mapping, when shared with its file (modes r, r+, w+): the pages a read
    // touched are handed back after it (see release_pages).
    const char* mapped = nullptr;
    std::int64_t row_stride = 0;  // bytes
    bool fancy_reads = false;     // numpy arrays: a[int array] is one gather
  };
  // Rows `rows` (sorted, distinct) of field f into `out`, shaped (rows.size(), ...).
  void read_rows(const Field& f, std::span<const std::int64_t> rows, Tensor& out) const;
  void copy_piece(const Field& f, py::handle piece, Tensor& out) const;
  void release_pages(const Field& f, std::int64_t first_row, std::int64_t end_row) const;

  std::vector<Field> fields_;
  std::int64_t rows_ = 0;
  mutable std::int64_t reads_ = 0;
};

}  // namespace zkynet::python
