// A strided n-dimensional array over shared storage.
//
//   using zkynet::Tensor;
//   Tensor a = {{1.0, 2.0}, {3.0, 4.0}};          // 2x2 float64
//   Tensor b = a.transpose(0, 1);                  // a view: same storage
//   zkynet::Generator gen(42);
//   Tensor r = Tensor::randn({128, 784}, gen, zkynet::DType::Float32);
//   std::cout << a.reshape({4}) << "\n";
#pragma once

#include <zkynet/framework/dtype.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/shape.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace zkynet {

// "(2,3)" for {2, 3}; "()" for a scalar.
std::string shape_str(const Shape& shape);
// The number of elements; throws ShapeError when it exceeds int64.
std::int64_t shape_numel(const Shape& shape);
// The bytes a contiguous tensor of `shape` needs; throws ShapeError, naming `where`, for a
// negative dimension or a count beyond int64 (instead of a wrapped, too small allocation).
std::size_t checked_nbytes(const Shape& shape, DType dtype, std::string_view where);

// A buffer on one device. CPU buffers come from (and return to) the caching allocator
// unless the storage wraps memory owned elsewhere.
class Storage {
 public:
  Storage(std::size_t nbytes, Device device);
  Storage(void* external, std::size_t nbytes, Device device, std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  // Counts in-place writes, so that back() can refuse values modified after the forward pass.
  std::uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_;
  std::size_t nbytes_;
  Device device_;
  std::atomic<std::uint64_t> version_{0};
  std::function<void(void*)> release_;  // empty: the caching allocator owns the buffer
};

// A seeded source of random numbers; the same seed gives the same tensors.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : engine_(seed) {}
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

// A nested list of numbers: `{{1, 2}, {3, 4}}`. Rows must have equal lengths.
class NestedList {
 public:
  NestedList(double value) : item_(value) {}  // NOLINT: implicit by design
  NestedList(std::initializer_list<NestedList> items) : item_(std::vector<NestedList>(items)) {}

  Shape shape() const;
  void flatten_into(std::vector<double>& out) const;

 private:
  std::variant<double, std::vector<NestedList>> item_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false
  Tensor(double scalar);  // NOLINT: a 0-d float64 tensor, so `m(3.0)` reads naturally
  Tensor(std::initializer_list<NestedList> values);  // float64, shape from the nesting

  static Tensor empty(const Shape& shape, DType dtype = DType::Float64, Device device = {});
  // Uninitialised pinned host memory (torch.empty(..., pin_memory=True)); see pin_memory().
  static Tensor empty_pinned(const Shape& shape, DType dtype = DType::Float64);
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float64, Device device = {});
  static Tensor ones(const Shape& shape, DType dtype = DType::Float64, Device device = {});
  static Tensor full(const Shape& shape, double value, DType dtype = DType::Float64, Device device = {});
  static Tensor scalar(double value, DType dtype = DType::Float64);
  static Tensor arange(std::int64_t n, DType dtype = DType::Float64, Device device = {});
  static Tensor eye(std::int64_t n, DType dtype = DType::Float64, Device device = {});
  // Normal(0, 1) and uniform [low, high) samples drawn from `gen`: the same seed gives the same
  // values on every device (they are drawn on the host).
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::Float64, Device device = {});
  static Tensor uniform(const Shape& shape, double low, double high, Generator& gen,
                        DType dtype = DType::Float64, Device device = {});

  // Copies `values` (row-major) into a new tensor of `shape`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // Wraps memory owned by the caller (on `device`) without copying; `release` runs when the
  // last view dies.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype,
                          std::function<void(void*)> release = [](void*) {}, Device device = {});
  // A view with explicit strides (in elements) and offset into `storage`.
  static Tensor view_of(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides,
                        std::int64_t offset, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  std::int64_t dim() const { return static_cast<std::int64_t>(shape_.size()); }
  std::int64_t size(std::int64_t axis) const;
  std::int64_t numel() const { return numel_; }
  std::int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool shares_storage_with(const Tensor& other) const { return storage_ && storage_ == other.storage_; }

  // Typed pointer to the first element, for host code: throws TypeError when T is not the
  // dtype, UsageError when the memory is on a device (copy it with cpu() first).
  template <class T>
  T* data() const;
  void* raw_data() const;
  // The same pointers on any device, for device kernels.
  template <class T>
  T* device_data() const;
  void* device_raw_data() const;

  double item() const;  // the single element, as double (copied to the host); numel() == 1
  double at(std::initializer_list<std::int64_t> index) const;
  std::vector<double> to_doubles() const;  // row-major copy of the elements

  // Views share storage; reshape copies only when the strides cannot express the new shape.
  Tensor reshape(const Shape& shape) const;  // one dimension may be -1
  Tensor transpose(std::int64_t axis0, std::int64_t axis1) const;
  Tensor permute(const Shape& axes) const;
  Tensor slice(std::int64_t axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1) const;
  Tensor expand(const Shape& shape) const;  // broadcast view (stride 0 on new axes)
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  // A copy on `device` (this tensor itself when it is there already). Copies between devices
  // happen only here and in copy_: no operator moves data silently.
  Tensor to(Device device) const;
  // non_blocking (PyTorch's name): the host does not wait for a copy between the host and a
  // CUDA device. It runs on the device's copy stream, and kernels queued afterwards on the
  // device wait for it; a copy to the host lands in pinned memory, readable on the host only
  // after cuda::synchronize(). From pageable host memory the driver copies before returning.
  Tensor to(Device device, bool non_blocking) const;
  Tensor cuda(int index = 0) const { return to(Device::cuda(index)); }
  Tensor cpu() const { return to(Device::cpu()); }
  // A copy in pinned (page-locked) host memory, from a pool that reuses buffers once their
  // copies have completed: copies from it to a GPU run asynchronously (to(device, true)).
  // This tensor itself when pinned already. CPU tensors only; UsageError "pin_memory needs a
  // CUDA device" without one (a build without CUDA, or no GPU), as in PyTorch.
  Tensor pin_memory() const;
  bool is_pinned() const;  // false in builds without CUDA

  // The storage's count of in-place writes (views share it, as in PyTorch). Every in-place
  // write calls bump_version(): the methods below do, and so must code writing through data().
  // NOTE: memory written by its foreign owner (a numpy array zkynet wraps) cannot be counted.
  std::uint64_t version() const { return storage_ ? storage_->version() : 0; }
  void bump_version() const {
    if (storage_) storage_->bump_version();
  }

  // In-place helpers used by autodiff and optimizers (same shapes required).
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& source);
  Tensor& add_(const Tensor& other);

  std::string str() const;

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  std::int64_t offset_ = 0;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::Float64;

  void check_dtype(DType requested) const;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Shape& shape);

// Row-major strides for a contiguous tensor of `shape`.
Shape contiguous_strides(const Shape& shape);

// True when shapes match and every element differs by at most atol + rtol * |b|.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  Tensor t = empty(shape, dtype_of<T>());
  if (static_cast<std::int64_t>(values.size()) != t.numel()) {
    throw ShapeError("Tensor::from_vector: " + std::to_string(values.size()) +
                     " values do not fill shape " + shape_str(shape));
  }
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

template <class T>
T* Tensor::data() const {
  check_dtype(dtype_of<T>());
  return static_cast<T*>(raw_data());
}

template <class T>
T* Tensor::device_data() const {
  check_dtype(dtype_of<T>());
  return static_cast<T*>(device_raw_data());
}

}  // namespace zkynet
