#include <zkynet/data/hdf5_dataset.h>
#include <zkynet/framework/error.h>

#include "hdf5_common.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace zkynet::data {

namespace {

struct Field {
  std::string name;
  h5::Handle dataset;
  h5::Handle file_space;
  DType dtype;
  Shape shape;              // the whole dataset's
  std::size_t row_bytes;    // bytes of one sample
};

Shape with_rows(std::int64_t rows, const Shape& shape) {
  Shape out = shape;
  out[0] = rows;
  return out;
}

// Runs of rows up to which a batch is one read of a hyperslab union. HDF5 1.10 (Debian 12)
// builds a union of n blocks in O(n^2): a shuffled batch of 8192 rows out of 800k took 9 s as
// one union, 0.1 s as one read per run.
constexpr std::size_t kMaxUnionRuns = 32;

// The rows of `runs` ((first row, count), increasing) of `field`, read in one H5Dread into
// `rows` consecutive rows at `memory`.
void read_selection(const Field& field, std::span<const std::pair<std::int64_t, std::int64_t>> runs, std::int64_t rows,
                    void* memory, const std::string& where) {
  const auto fail = [&](const std::string& what) {
    throw UsageError(where + ": cannot " + what + " rows of '" + field.name + "': " + h5::last_error());
  };
  h5::Handle file_space(H5Scopy(field.file_space.get()), H5Sclose);
  if (!file_space.valid()) fail("select");
  const auto rank = field.shape.size();
  std::vector<hsize_t> start(rank, 0), count(field.shape.begin(), field.shape.end());
  for (std::size_t k = 0; k < runs.size(); ++k) {
    start[0] = static_cast<hsize_t>(runs[k].first);
    count[0] = static_cast<hsize_t>(runs[k].second);
    if (H5Sselect_hyperslab(file_space.get(), k == 0 ? H5S_SELECT_SET : H5S_SELECT_OR, start.data(), nullptr,
                            count.data(), nullptr) < 0) {
      fail("select");
    }
  }
  std::vector<hsize_t> memory_dims(field.shape.begin(), field.shape.end());
  memory_dims[0] = static_cast<hsize_t>(rows);
  h5::Handle memory_space(H5Screate_simple(static_cast<int>(rank), memory_dims.data(), nullptr), H5Sclose);
  if (!memory_space.valid()) fail("select");
  if (H5Dread(field.dataset.get(), h5::memory_type(field.dtype), memory_space.get(), file_space.get(), H5P_DEFAULT,
              memory) < 0) {
    fail("read");
  }
}

}  // namespace

struct HDF5Dataset::Impl {
  std::string path;
  std::vector<std::string> names;
  h5::Handle file;
  std::vector<Field> fields;
  std::int64_t rows = 0;
  mutable ReadStats stats;
};

HDF5Dataset::HDF5Dataset(const std::string& path, std::vector<std::string> names) : impl_(std::make_unique<Impl>()) {
  const std::string where = "HDF5Dataset('" + path + "')";
  if (names.empty()) throw UsageError(where + ": no dataset names");
  impl_->path = path;
  impl_->file = h5::open_file(path, where);
  for (const std::string& name : names) {
    // H5Lexists walks the path; an intermediate group that is missing is a failure, not "no".
    const htri_t exists = H5Lexists(impl_->file.get(), name.c_str(), H5P_DEFAULT);
    if (exists <= 0) {
      if (exists < 0) H5Eclear2(H5E_DEFAULT);
      throw IndexError(where + ": no dataset '" + name + "' in the file");
    }
    h5::Handle dataset(H5Dopen2(impl_->file.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dataset.valid()) {
      throw UsageError(where + ": cannot open '" + name + "' as a dataset: " + h5::last_error());
    }
    const h5::DatasetInfo info = h5::dataset_info(dataset.get(), name, path, where);
    if (info.shape.empty()) throw ShapeError(where + ": dataset '" + name + "' is 0-d; samples are rows of its first axis");
    if (!impl_->fields.empty() && info.shape[0] != impl_->rows) {
      throw ShapeError(where + ": dataset '" + name + "' has shape " + shape_str(info.shape) + " but '" +
                       impl_->fields.front().name + "' has " + shape_str(impl_->fields.front().shape) +
                       ": the numbers of rows differ");
    }
    h5::Handle space(H5Dget_space(dataset.get()), H5Sclose);
    if (!space.valid()) throw UsageError(where + ": cannot read the shape of '" + name + "': " + h5::last_error());
    const std::int64_t row_elements = info.shape[0] == 0 ? 0 : shape_numel(info.shape) / info.shape[0];
    impl_->rows = info.shape[0];
    impl_->fields.push_back(Field{name, std::move(dataset), std::move(space), info.dtype, info.shape,
                                  static_cast<std::size_t>(row_elements) * dtype_size(info.dtype)});
  }
  impl_->names = std::move(names);
}

HDF5Dataset::~HDF5Dataset() = default;
HDF5Dataset::HDF5Dataset(HDF5Dataset&&) noexcept = default;
HDF5Dataset& HDF5Dataset::operator=(HDF5Dataset&&) noexcept = default;

std::int64_t HDF5Dataset::size() const { return impl_->rows; }
const std::string& HDF5Dataset::path() const { return impl_->path; }
const std::vector<std::string>& HDF5Dataset::names() const { return impl_->names; }
HDF5Dataset::ReadStats HDF5Dataset::read_stats() const { return impl_->stats; }
void HDF5Dataset::reset_read_stats() { impl_->stats = {}; }

Sample HDF5Dataset::get(std::int64_t index) const {
  detail::check_index(index, impl_->rows, "HDF5Dataset::get");
  const std::int64_t one[] = {index};
  Batch batch = get_batch(one);
  for (Tensor& t : batch) t = t.reshape(Shape(t.shape().begin() + 1, t.shape().end()));
  return batch;
}

Batch HDF5Dataset::get_batch(std::span<const std::int64_t> indices) const {
  const std::string where = "HDF5Dataset('" + impl_->path + "')::get_batch";
  if (indices.empty()) throw UsageError(where + ": no indices");
  for (std::int64_t i : indices) detail::check_index(i, impl_->rows, "HDF5Dataset::get_batch");

  // HDF5 returns a selection's rows in file order: read the distinct rows sorted, then place
  // them. Consecutive rows form one hyperslab block, so a sequential batch is a single block.
  std::vector<std::int64_t> rows(indices.begin(), indices.end());
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  const bool in_file_order = std::equal(rows.begin(), rows.end(), indices.begin(), indices.end());
  std::vector<std::pair<std::int64_t, std::int64_t>> runs;  // (first row, count)
  for (std::int64_t r : rows) {
    if (!runs.empty() && runs.back().first + runs.back().second == r) {
      ++runs.back().second;
    } else {
      runs.emplace_back(r, 1);
    }
  }

  const auto batch_rows = static_cast<std::int64_t>(indices.size());
  const auto distinct = static_cast<std::int64_t>(rows.size());
  Batch out;
  for (const Field& field : impl_->fields) {
    Tensor batch = Tensor::empty(with_rows(batch_rows, field.shape), field.dtype);
    if (field.row_bytes > 0) {
      Tensor read = in_file_order ? batch : Tensor::empty(with_rows(distinct, field.shape), field.dtype);
      if (runs.size() <= kMaxUnionRuns) {
        read_selection(field, runs, distinct, read.raw_data(), where);
      } else {
        // One read per run: each a plain hyperslab, placed at its rows of `read`.
        char* dst = static_cast<char*>(read.raw_data());
        std::int64_t placed = 0;
        for (const auto& run : runs) {
          const std::pair<std::int64_t, std::int64_t> one[] = {run};
          read_selection(field, one, run.second, dst + static_cast<std::size_t>(placed) * field.row_bytes, where);
          placed += run.second;
        }
      }
      impl_->stats.reads += runs.size() <= kMaxUnionRuns ? 1 : static_cast<std::int64_t>(runs.size());
      impl_->stats.rows += distinct;
      if (!in_file_order) {
        const char* src = static_cast<const char*>(read.raw_data());
        char* dst = static_cast<char*>(batch.raw_data());
        for (std::size_t j = 0; j < indices.size(); ++j) {
          const auto pos = static_cast<std::size_t>(std::lower_bound(rows.begin(), rows.end(), indices[j]) - rows.begin());
          std::memcpy(dst + j * field.row_bytes, src + pos * field.row_bytes, field.row_bytes);
        }
      }
    }
    out.push_back(std::move(batch));
  }
  return out;
}

std::vector<Shape> HDF5Dataset::field_shapes() const {
  std::vector<Shape> out;
  for (const Field& field : impl_->fields) out.push_back(field.shape);
  return out;
}

Tensor HDF5Dataset::read_box(std::size_t field_index, std::span<const Range> box) const {
  const std::string where = "HDF5Dataset('" + impl_->path + "')::read_box";
  const auto& fields = impl_->fields;
  detail::check_box(field_index, fields.size(), fields.at(std::min(field_index, fields.size() - 1)).shape, box,
                    where.c_str());
  const Field& field = fields[field_index];
  Shape box_shape;
  std::vector<hsize_t> start, count;
  for (const Range& r : box) {
    box_shape.push_back(r.end - r.begin);
    start.push_back(static_cast<hsize_t>(r.begin));
    count.push_back(static_cast<hsize_t>(r.end - r.begin));
  }
  Tensor out = Tensor::empty(box_shape, field.dtype);
  if (out.numel() == 0) return out;
  const auto fail = [&](const std::string& what) {
    throw UsageError(where + ": cannot " + what + " a box of '" + field.name + "': " + h5::last_error());
  };
  h5::Handle file_space(H5Scopy(field.file_space.get()), H5Sclose);
  if (!file_space.valid() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0) {
    fail("select");
  }
  h5::Handle memory_space(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  if (!memory_space.valid()) fail("select");
  if (H5Dread(field.dataset.get(), h5::memory_type(field.dtype), memory_space.get(), file_space.get(), H5P_DEFAULT,
              out.raw_data()) < 0) {
    fail("read");
  }
  ++impl_->stats.reads;
  impl_->stats.rows += box_shape[0];
  return out;
}

void write_hdf5(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                HDF5WriteOptions options) {
  if (options.chunk_rows < 0) {
    throw UsageError("write_hdf5: chunk_rows must be >= 0 (0: automatic), got " + std::to_string(options.chunk_rows));
  }
  // The shared writer reads a negative chunk_rows as "automatic".
  h5::write_file_atomically(tensors, path, options.chunk_rows == 0 ? -1 : options.chunk_rows, "write_hdf5");
}

}  // namespace zkynet::data
