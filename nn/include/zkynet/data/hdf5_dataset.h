// HDF5Dataset: samples read lazily from datasets of an HDF5 file, row by row.
//
//   // x (N, 64) float32 and y (N) int64 in train.h5, written by h5py or by write_hdf5:
//   data::write_hdf5("train.h5", {{"x", x}, {"y", y}});
//   data::HDF5Dataset ds("train.h5", {"x", "y"});
//   data::DataLoader loader(ds, {.batch_size = 128, .shuffle = true, .seed = 1});
//   for (const data::Batch& b : loader) { ... }      // b[0]: (128, 64) float32, b[1]: (128) int64
//
// Sample i is row i (along the first axis) of each named dataset; the datasets must agree on
// the number of rows. Nothing is read up front: get_batch selects the batch's rows as one
// hyperslab union per dataset (runs of consecutive rows coalesced) and reads them with a
// single H5Dread each, so an epoch reads every row once and a file larger than memory can be
// used. A batch of more than 32 separate runs (a shuffled batch of a large file) is read run
// by run instead: HDF5 1.10 builds a union of n blocks in O(n^2) time (8192 shuffled rows of
// 800k: 9 s as one union, 0.1 s run by run). Datasets stored contiguously (h5py's default) or in chunks of rows (write_hdf5's
// default, about 64 KiB each) keep each read to the bytes or chunks that hold its rows; HDF5
// caches recently used chunks (1 MiB per dataset). A file from save_state works too, but
// stores each tensor as one chunk of up to 1 GiB, which every read then loads whole: write
// data sets with write_hdf5.
//
// dtypes: float32 and float64 datasets keep theirs; integer datasets become int64 and float16
// float32 (as load_state does); other types throw TypeError.
//
// read_box reads a box of one dataset, e.g. a window (all features, some streams, some time
// steps) of a series stored (features, samples, time): SequenceBatches and the Estimator take
// series windows from files this way. Series whose feature counts differ (x (3, S, T), y (1, S,
// T)) have different numbers of rows: open one HDF5Dataset for each.
//
// The file stays open (read-only) for the dataset's life. HDF5 (Debian's serial build) is not
// thread-safe: use one HDF5Dataset from one thread at a time.
#pragma once

#include <zkynet/data/dataset.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace zkynet::data {

class HDF5Dataset : public Dataset {
 public:
  // Opens `path` and the named datasets (paths such as "group/x" work too). UsageError for a
  // missing or unreadable file, IndexError for a name the file lacks, ShapeError for a 0-d
  // dataset or datasets with different numbers of rows, TypeError for an unsupported dtype.
  HDF5Dataset(const std::string& path, std::vector<std::string> names);
  ~HDF5Dataset() override;
  HDF5Dataset(HDF5Dataset&&) noexcept;
  HDF5Dataset& operator=(HDF5Dataset&&) noexcept;

  std::int64_t size() const override;
  Sample get(std::int64_t index) const override;
  Batch get_batch(std::span<const std::int64_t> indices) const override;
  std::vector<Shape> field_shapes() const override;
  // One hyperslab read of the box (counted in read_stats as one read of the box's rows).
  Tensor read_box(std::size_t field, std::span<const Range> box) const override;

  const std::string& path() const;
  const std::vector<std::string>& names() const;

  // What has been read since construction or the last reset: H5Dread calls and rows
  // (per dataset: a batch of 32 consecutive rows of {x, y} counts 2 reads and 64 rows).
  struct ReadStats {
    std::int64_t reads = 0;
    std::int64_t rows = 0;
  };
  ReadStats read_stats() const;
  void reset_read_stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct HDF5WriteOptions {
  // Rows per chunk; 0 picks about 64 KiB of rows per chunk.
  std::int64_t chunk_rows = 0;
};

// Writes tensors as root datasets of a new HDF5 file (replacing `path` atomically, as
// save_state does), chunked by rows so that HDF5Dataset reads stay small. Tensors of any rank
// are accepted; 0-d ones are stored unchunked.
void write_hdf5(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                HDF5WriteOptions options = {});

}  // namespace zkynet::data
