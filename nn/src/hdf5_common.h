// Private helpers around HDF5's C API, shared by checkpoint.cpp and the data library. Never
// installed: hdf5.h stays out of zkynet's public headers, so users need no HDF5 headers.
#pragma once

#include <zkynet/framework/tensor.h>

#include <hdf5.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace zkynet::h5 {

// Owns an HDF5 identifier and closes it with the matching H5?close, so that an exception
// thrown between two HDF5 calls (a failed check, a test's injected fault) leaks nothing.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      close_ = other.close_;
    }
    return *this;
  }
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports whether HDF5 succeeded: a file's close is where its metadata is
  // written, so the writer must see that failure instead of losing it in a destructor.
  bool close() {
    if (id_ < 0) return true;
    const herr_t status = close_(std::exchange(id_, H5I_INVALID_HID));
    return status >= 0;
  }

 private:
  void reset() {
    if (id_ >= 0) close_(std::exchange(id_, H5I_INVALID_HID));
  }
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Turns off HDF5's printing of its error stack to stderr (once per process): zkynet reports
// failures as exceptions carrying the reason instead.
void silence_errors();

// The reason HDF5 gives for its last failure, "outermost (innermost)", and clears its stack.
std::string last_error();

// The memory type for a zkynet dtype, and the little-endian file type it is stored as.
hid_t memory_type(DType dtype);
hid_t file_type(DType dtype);
// The zkynet dtype that holds a stored type without loss; nullopt for other types (strings,
// compounds, unsigned 64-bit integers, long doubles).
std::optional<DType> dtype_for(hid_t type);
// "float32", "int16", "string", ... for error messages.
std::string type_name(hid_t type);

// Datasets in a group below the root, written after the root's. An undefined tensor is
// stored as a float64 dataset with a null dataspace (h5py reads it as h5py.Empty).
struct Group {
  std::string name;
  std::vector<std::pair<std::string, Tensor>> tensors;
};

// Writes `tensors` as root datasets of a new HDF5 file that replaces `path` atomically: a
// temporary file in the same directory is written, fsync'ed and renamed over `path`; on any
// failure it is removed and `path` is untouched. Tensors of rank >= 1 are stored in chunks of
// `chunk_rows` rows (> 0), of about 64 KiB of rows (< 0), or of the whole tensor (0), each
// checksummed (Fletcher-32); 0-d tensors in their (checksummed) object header. The file uses
// the HDF5 1.10 format. `groups` follow the root's datasets. `where` prefixes error messages.
void write_file_atomically(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& path,
                           std::int64_t chunk_rows, const std::string& where, const std::vector<Group>& groups = {});

// Opens an existing HDF5 file read-only; UsageError naming the file when it is missing, not
// HDF5, truncated or damaged.
Handle open_file(const std::string& path, const std::string& where);

// The dtype and shape of a dataset; TypeError naming the dataset and file for types zkynet
// cannot hold, ShapeError for null dataspaces or too many dimensions.
struct DatasetInfo {
  DType dtype;
  Shape shape;
};
DatasetInfo dataset_info(hid_t dataset, const std::string& name, const std::string& path, const std::string& where);

}  // namespace zkynet::h5
