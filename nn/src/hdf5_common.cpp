#include "hdf5_common.h"

#include <zkynet/framework/error.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <mutex>

namespace zkynet::h5 {

void silence_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::string last_error() {
  struct Walk {
    std::string innermost, outermost;
  } walk;
  // Walking upward visits the most specific error first and the API call's last.
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* err, void* data) -> herr_t {
        auto* w = static_cast<Walk*>(data);
        const std::string desc = err->desc ? err->desc : "";
        if (n == 0) w->innermost = desc;
        w->outermost = desc;
        return 0;
      },
      &walk);
  H5Eclear2(H5E_DEFAULT);
  if (walk.outermost.empty()) return "HDF5 gave no reason";
  if (walk.innermost.empty() || walk.innermost == walk.outermost) return walk.outermost;
  return walk.outermost + " (" + walk.innermost + ")";
}

hid_t memory_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return H5T_NATIVE_FLOAT;
    case DType::Float64: return H5T_NATIVE_DOUBLE;
    case DType::Int64: break;
  }
  return H5T_NATIVE_INT64;
}

hid_t file_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return H5T_IEEE_F32LE;
    case DType::Float64: return H5T_IEEE_F64LE;
    case DType::Int64: break;
  }
  return H5T_STD_I64LE;
}

std::optional<DType> dtype_for(hid_t type) {
  const std::size_t size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      if (size <= 4) return DType::Float32;
      if (size == 8) return DType::Float64;
      return std::nullopt;
    case H5T_INTEGER:
      // Every signed integer and unsigned ones up to 32 bits fit int64; uint64 may not.
      if (H5Tget_sign(type) == H5T_SGN_NONE && size >= 8) return std::nullopt;
      if (size <= 8) return DType::Int64;
      return std::nullopt;
    default: return std::nullopt;
  }
}

std::string type_name(hid_t type) {
  const std::string bits = std::to_string(8 * H5Tget_size(type));
  switch (H5Tget_class(type)) {
    case H5T_FLOAT: return "float" + bits;
    case H5T_INTEGER: return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + bits;
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum (h5py's bool, for instance)";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    default: return "an unsupported type";
  }
}

Handle open_file(const std::string& path, const std::string& where) {
  silence_errors();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw UsageError(where + ": cannot open '" + path + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) throw UsageError(where + ": '" + path + "' is not a regular file");
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    throw UsageError(where + ": '" + path + "' is not a readable HDF5 file (truncated, corrupted or another format): " +
                     last_error());
  }
  return Handle(id, H5Fclose);
}

DatasetInfo dataset_info(hid_t dataset, const std::string& name, const std::string& path, const std::string& where) {
  const std::string what = "dataset '" + name + "' in '" + path + "'";
  Handle type(H5Dget_type(dataset), H5Tclose);
  if (!type.valid()) throw UsageError(where + ": cannot read the type of " + what + ": " + last_error());
  const auto dtype = dtype_for(type.get());
  if (!dtype) {
    throw TypeError(where + ": " + what + " holds " + type_name(type.get()) +
                    " values; zkynet reads floats (as float32 or float64) and integers (as int64)");
  }
  Handle space(H5Dget_space(dataset), H5Sclose);
  if (!space.valid()) throw UsageError(where + ": cannot read the shape of " + what + ": " + last_error());
  const H5S_class_t kind = H5Sget_simple_extent_type(space.get());
  if (kind == H5S_SCALAR) return {*dtype, Shape{}};
  if (kind != H5S_SIMPLE) throw ShapeError(where + ": " + what + " has an empty (null) dataspace");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw UsageError(where + ": cannot read the shape of " + what + ": " + last_error());
  if (static_cast<std::size_t>(rank) > Shape::kMaxDims) {
    throw ShapeError(where + ": " + what + " has " + std::to_string(rank) + " dimensions; zkynet tensors have at most " +
                     std::to_string(Shape::kMaxDims));
  }
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
    throw UsageError(where + ": cannot read the shape of " + what + ": " + last_error());
  }
  Shape shape;
  for (hsize_t d : dims) {
    if (d > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max())) {
      throw ShapeError(where + ": " + what + " has a dimension of " + std::to_string(d) + ", beyond int64");
    }
    shape.push_back(static_cast<std::int64_t>(d));
  }
  checked_nbytes(shape, *dtype, where + ": " + what);  // a crafted file must not wrap the allocation
  return {*dtype, shape};
}

}  // namespace zkynet::h5
