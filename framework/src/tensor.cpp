#include <zkynet/framework/allocator.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/tensor.h>
#include <zkynet/internal/device.h>
#include <zkynet/internal/xt.h>

#include <xtensor/xnoalias.hpp>

#include <cmath>
#include <numeric>
#include <sstream>

namespace zkynet {

using internal::xview;

// ---- shapes -----------------------------------------------------------------------------

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  if (shape.size() == 1) return "(" + std::to_string(shape[0]) + ",)";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + ")";
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) {
      throw ShapeError("shape " + shape_str(shape) + " has more than 2^63 elements");
    }
  }
  return n;
}

std::size_t checked_nbytes(const Shape& shape, DType dtype, std::string_view where) {
  for (auto d : shape) {
    if (d < 0) throw ShapeError(std::string(where) + ": negative dimension in shape " + shape_str(shape));
  }
  std::int64_t n = 1;
  std::int64_t bytes = 0;
  for (auto d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) n = -1;
    if (n < 0) break;
  }
  if (n < 0 || __builtin_mul_overflow(n, static_cast<std::int64_t>(dtype_size(dtype)), &bytes)) {
    throw ShapeError(std::string(where) + ": shape " + shape_str(shape) + " of " + std::string(dtype_name(dtype)) +
                     " needs more than 2^63 bytes");
  }
  return static_cast<std::size_t>(bytes);
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  std::int64_t stride = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<std::int64_t>(shape[i], 1);
  }
  return strides;
}

namespace {

std::int64_t normalize_axis(std::int64_t axis, std::int64_t ndim, const char* where) {
  const std::int64_t a = axis < 0 ? axis + ndim : axis;
  if (a < 0 || a >= ndim) {
    throw IndexError(std::string(where) + ": axis " + std::to_string(axis) + " out of range for " +
                     std::to_string(ndim) + "-d tensor");
  }
  return a;
}

}  // namespace

// ---- nested lists -------------------------------------------------------------------------

Shape NestedList::shape() const {
  if (std::holds_alternative<double>(item_)) return {};
  const auto& items = std::get<std::vector<NestedList>>(item_);
  Shape shape{static_cast<std::int64_t>(items.size())};
  if (items.empty()) return shape;
  const Shape inner = items.front().shape();
  for (const auto& item : items) {
    if (item.shape() != inner) {
      throw ShapeError("Tensor from nested list: ragged rows " + shape_str(inner) + " and " +
                       shape_str(item.shape()));
    }
  }
  shape.insert(shape.end(), inner.begin(), inner.end());
  return shape;
}

void NestedList::flatten_into(std::vector<double>& out) const {
  if (std::holds_alternative<double>(item_)) {
    out.push_back(std::get<double>(item_));
    return;
  }
  for (const auto& item : std::get<std::vector<NestedList>>(item_)) item.flatten_into(out);
}

// ---- storage ------------------------------------------------------------------------------

Storage::Storage(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = device.is_cpu() ? cpu_allocate(nbytes) : detail::device_allocate(nbytes, device);
}

Storage::Storage(void* external, std::size_t nbytes, Device device, std::function<void(void*)> release)
    : data_(external), nbytes_(nbytes), device_(device), release_(std::move(release)) {
  if (!release_) release_ = [](void*) {};
}

Storage::~Storage() {
  if (release_) {
    release_(data_);
  } else if (device_.is_cpu()) {
    cpu_release(data_, nbytes_);
  } else {
    detail::device_release(data_, device_);
  }
}

// ---- construction -------------------------------------------------------------------------

Tensor::Tensor(double scalar) : Tensor(Tensor::scalar(scalar, DType::Float64)) {}

Tensor::Tensor(std::initializer_list<NestedList> values) {
  const NestedList list(values);
  std::vector<double> flat;
  flat.reserve(16);
  list.flatten_into(flat);
  *this = from_vector(flat, list.shape());
}

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides,
                       std::int64_t offset, DType dtype) {
  Tensor t;
  t.storage_ = std::move(storage);
  t.shape_ = shape;
  t.strides_ = strides;
  t.offset_ = offset;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  auto storage = std::make_shared<Storage>(checked_nbytes(shape, dtype, "Tensor::empty"), device);
  return view_of(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(std::int64_t n, DType dtype, Device device) {
  if (!device.is_cpu()) return arange(n, dtype).to(device);
  Tensor t = empty({n}, dtype);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(i);
  });
  return t;
}

Tensor Tensor::eye(std::int64_t n, DType dtype, Device device) {
  if (!device.is_cpu()) return eye(n, dtype).to(device);
  Tensor t = zeros({n, n}, dtype);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < n; ++i) p[i * n + i] = T(1);
  });
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  if (!device.is_cpu()) return randn(shape, gen, dtype).to(device);
  Tensor t = empty(shape, dtype);
  dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::normal_distribution<T> dist(T(0), T(1));
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen.engine());
  });
  return t;
}

Tensor Tensor::uniform(const Shape& shape, double low, double high, Generator& gen, DType dtype, Device device) {
  if (!device.is_cpu()) return uniform(shape, low, high, gen, dtype).to(device);
  Tensor t = empty(shape, dtype);
  dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::uniform_real_distribution<T> dist(static_cast<T>(low), static_cast<T>(high));
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen.engine());
  });
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, std::function<void(void*)> release,
                         Device device) {
  const std::size_t nbytes = checked_nbytes(shape, dtype, "Tensor::from_blob");
  auto storage = std::make_shared<Storage>(data, nbytes, device, std::move(release));
  return view_of(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

// ---- element access -----------------------------------------------------------------------

Device Tensor::device() const { return storage_ ? storage_->device() : Device::cpu(); }

std::int64_t Tensor::size(std::int64_t axis) const {
  return shape_[static_cast<std::size_t>(normalize_axis(axis, dim(), "Tensor::size"))];
}

void Tensor::check_dtype(DType requested) const {
  if (!defined()) throw UsageError("Tensor: access to an undefined tensor");
  if (requested != dtype_) {
    throw TypeError("Tensor: element type " + std::string(dtype_name(requested)) + " requested from a " +
                    std::string(dtype_name(dtype_)) + " tensor of shape " + shape_str(shape_));
  }
}

void* Tensor::raw_data() const {
  if (defined() && !storage_->device().is_cpu()) {
    throw DeviceError("Tensor: the memory of a " + shape_str(shape_) + " tensor on " + storage_->device().str() +
                      " is not readable from the host; copy it with .cpu() first");
  }
  return device_raw_data();
}

void* Tensor::device_raw_data() const {
  if (!defined()) throw UsageError("Tensor: access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<std::int64_t>(dtype_size(dtype_));
}

bool Tensor::is_contiguous() const {
  if (numel_ == 0) return true;  // no element to misplace, as in PyTorch
  std::int64_t expected = 1;
  for (std::size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

double Tensor::item() const {
  if (numel_ != 1) {
    throw ShapeError("Tensor::item: tensor of shape " + shape_str(shape_) + " has " + std::to_string(numel_) +
                     " elements, not 1");
  }
  if (!device().is_cpu()) return cpu().item();
  return dispatch_dtype(dtype_, [&](auto zero) { return static_cast<double>(*data<decltype(zero)>()); });
}

double Tensor::at(std::initializer_list<std::int64_t> index) const {
  if (!device().is_cpu()) return cpu().at(index);
  if (static_cast<std::int64_t>(index.size()) != dim()) {
    throw IndexError("Tensor::at: " + std::to_string(index.size()) + " indices for a tensor of shape " +
                     shape_str(shape_));
  }
  std::int64_t pos = 0;
  std::size_t axis = 0;
  for (auto i : index) {
    if (i < 0 || i >= shape_[axis]) {
      throw IndexError("Tensor::at: index " + std::to_string(i) + " out of range for axis " +
                       std::to_string(axis) + " of shape " + shape_str(shape_));
    }
    pos += i * strides_[axis++];
  }
  return dispatch_dtype(dtype_, [&](auto zero) { return static_cast<double>(data<decltype(zero)>()[pos]); });
}

std::vector<double> Tensor::to_doubles() const {
  const Tensor c = cpu().contiguous().to(DType::Float64);
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

// ---- views --------------------------------------------------------------------------------

Tensor Tensor::reshape(const Shape& requested) const {
  Shape shape = requested;
  std::int64_t known = 1;
  int inferred = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (inferred >= 0) throw ShapeError("reshape: more than one -1 in " + shape_str(requested));
      inferred = static_cast<int>(i);
    } else if (shape[i] < 0) {
      throw ShapeError("reshape: negative size " + std::to_string(shape[i]) + " in " + shape_str(requested) +
                       " (only one -1, to be inferred, is allowed)");
    } else if (__builtin_mul_overflow(known, shape[i], &known)) {
      throw ShapeError("reshape: shape " + shape_str(requested) + " has more than 2^63 elements");
    }
  }
  if (inferred >= 0) {
    if (known == 0) {
      throw ShapeError("reshape: cannot infer the -1 in " + shape_str(requested) + " for " + shape_str(shape_) +
                       ": the other sizes multiply to 0, so any size would fit");
    }
    shape[static_cast<std::size_t>(inferred)] = numel_ / known;
  }
  if (shape_numel(shape) != numel_) {
    throw ShapeError("reshape: cannot view " + shape_str(shape_) + " (" + std::to_string(numel_) +
                     " elements) as " + shape_str(requested));
  }
  const Tensor source = is_contiguous() ? *this : contiguous();
  return view_of(source.storage_, shape, contiguous_strides(shape), source.offset_, dtype_);
}

Tensor Tensor::transpose(std::int64_t axis0, std::int64_t axis1) const {
  const auto a = static_cast<std::size_t>(normalize_axis(axis0, dim(), "transpose"));
  const auto b = static_cast<std::size_t>(normalize_axis(axis1, dim(), "transpose"));
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::permute(const Shape& axes) const {
  if (static_cast<std::int64_t>(axes.size()) != dim()) {
    throw ShapeError("permute: " + std::to_string(axes.size()) + " axes for a tensor of shape " + shape_str(shape_));
  }
  Tensor t = *this;
  std::vector<bool> seen(axes.size(), false);
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const auto a = static_cast<std::size_t>(normalize_axis(axes[i], dim(), "permute"));
    if (seen[a]) throw ShapeError("permute: axis " + std::to_string(a) + " repeated in " + shape_str(axes));
    seen[a] = true;
    t.shape_[i] = shape_[a];
    t.strides_[i] = strides_[a];
  }
  return t;
}

Tensor Tensor::slice(std::int64_t axis, std::int64_t start, std::int64_t stop, std::int64_t step) const {
  const auto a = static_cast<std::size_t>(normalize_axis(axis, dim(), "slice"));
  if (step <= 0) throw ShapeError("slice: step must be positive, got " + std::to_string(step));
  const std::int64_t n = shape_[a];
  auto clampi = [n](std::int64_t i) { return std::clamp(i < 0 ? i + n : i, std::int64_t{0}, n); };
  start = clampi(start);
  stop = clampi(stop);
  Tensor t = *this;
  // Written so that a step near 2^63 cannot overflow: the length, then the stride of a slice
  // of at most one element, which never steps.
  t.shape_[a] = stop > start ? (stop - start - 1) / step + 1 : 0;
  t.offset_ = offset_ + start * strides_[a];
  t.strides_[a] = t.shape_[a] > 1 ? strides_[a] * step : strides_[a];
  t.numel_ = shape_numel(t.shape_);
  return t;
}

Tensor Tensor::expand(const Shape& shape) const {
  if (shape.size() < shape_.size()) {
    throw ShapeError("expand: cannot expand " + shape_str(shape_) + " to fewer dimensions " + shape_str(shape));
  }
  const std::size_t lead = shape.size() - shape_.size();
  Shape strides(shape.size(), 0);
  for (std::size_t i = 0; i < shape_.size(); ++i) {
    const std::int64_t have = shape_[i];
    const std::int64_t want = shape[lead + i];
    if (have == want) {
      strides[lead + i] = strides_[i];
    } else if (have != 1) {
      throw ShapeError("expand: cannot broadcast " + shape_str(shape_) + " to " + shape_str(shape));
    }
  }
  return view_of(storage_, shape, strides, offset_, dtype_);
}

// ---- copies -------------------------------------------------------------------------------

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype, device());
  if (!device().is_cpu()) {
    detail::cuda_copy(out, *this);
    return out;
  }
  dispatch_dtype(dtype, [&](auto to_zero) {
    using To = decltype(to_zero);
    dispatch_dtype(dtype_, [&](auto from_zero) {
      using From = decltype(from_zero);
      if (is_contiguous()) {
        std::transform(data<From>(), data<From>() + numel_, out.data<To>(), [](From v) { return static_cast<To>(v); });
        return;
      }
      auto dst = xview<To>(out);
      xt::noalias(dst) = xt::cast<To>(xview<From>(*this));
    });
  });
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  const Tensor src = contiguous();
  Tensor out = empty(shape_, dtype_, target);
  detail::copy_bytes(out.device_raw_data(), target, src.device_raw_data(), device(),
                     static_cast<std::size_t>(numel_) * dtype_size(dtype_));
  return out;
}

Tensor& Tensor::fill_(double value) {
  bump_version();
  if (!device().is_cpu()) {
    detail::cuda_fill(*this, value);
    return *this;
  }
  dispatch_dtype(dtype_, [&](auto zero) {
    using T = decltype(zero);
    if (is_contiguous()) {
      std::fill_n(data<T>(), numel_, static_cast<T>(value));
    } else {
      auto dst = xview<T>(*this);
      dst.fill(static_cast<T>(value));
    }
  });
  return *this;
}

Tensor& Tensor::copy_(const Tensor& source) {
  if (source.shape_ != shape_) {
    throw ShapeError("copy_: source shape " + shape_str(source.shape_) + " differs from " + shape_str(shape_));
  }
  if (source.device() != device()) return copy_(source.to(device()));  // the one explicit transfer
  if (!device().is_cpu()) {
    bump_version();
    detail::cuda_copy(*this, source);
    return *this;
  }
  const Tensor src = source.to(dtype_);
  bump_version();
  dispatch_dtype(dtype_, [&](auto zero) {
    using T = decltype(zero);
    if (is_contiguous() && src.is_contiguous()) {
      std::copy_n(src.data<T>(), numel_, data<T>());
    } else {
      auto dst = xview<T>(*this);
      xt::noalias(dst) = xview<T>(src);
    }
  });
  return *this;
}

Tensor& Tensor::add_(const Tensor& other) {
  if (other.shape_ != shape_) {
    throw ShapeError("add_: shape " + shape_str(other.shape_) + " differs from " + shape_str(shape_));
  }
  if (other.device() != device()) {
    throw DeviceError("add_: operands on " + device().str() + " and " + other.device().str() +
                      " (move one with .to(device))");
  }
  const Tensor src = other.to(dtype_);
  bump_version();
  if (!device().is_cpu()) {
    detail::cuda_add_inplace(*this, src);
    return *this;
  }
  dispatch_dtype(dtype_, [&](auto zero) {
    using T = decltype(zero);
    if (is_contiguous() && src.is_contiguous()) {
      T* d = data<T>();
      const T* s = src.data<T>();
      for (std::int64_t i = 0; i < numel_; ++i) d[i] += s[i];
    } else {
      auto dst = xview<T>(*this);
      xt::noalias(dst) += xview<T>(src);
    }
  });
  return *this;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  const auto x = a.to_doubles();
  const auto y = b.to_doubles();
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return false;
    if (std::abs(x[i] - y[i]) > atol + rtol * std::abs(y[i])) return false;
  }
  return true;
}

}  // namespace zkynet
