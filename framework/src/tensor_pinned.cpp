// Pinned host memory and non-blocking copies of Tensor (PyTorch's pin_memory, is_pinned,
// to(device, non_blocking)). The pool and the streams live behind detail:: (src/cuda/pinned.cpp,
// or no_cuda.cpp's stubs).
#include <zkynet/framework/error.h>
#include <zkynet/framework/tensor.h>
#include <zkynet/internal/device.h>

#include <cstring>
#include <string_view>

namespace zkynet {

namespace {

Tensor pinned(const Shape& shape, DType dtype, std::string_view where) {
  const std::size_t nbytes = checked_nbytes(shape, dtype, where);
  return Tensor::from_blob(detail::pinned_allocate(nbytes), shape, dtype, [](void* p) { detail::pinned_release(p); });
}

}  // namespace

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) { return pinned(shape, dtype, "empty_pinned"); }

bool Tensor::is_pinned() const { return defined() && device().is_cpu() && detail::is_pinned(storage()->data()); }

Tensor Tensor::pin_memory() const {
  if (!device().is_cpu()) {
    throw UsageError("pin_memory: only CPU tensors can be pinned, got a " + shape_str(shape()) + " tensor on " +
                     device().str());
  }
  if (is_pinned()) return *this;
  const Tensor src = contiguous();
  Tensor out = pinned(shape(), dtype(), "pin_memory");
  const std::size_t nbytes = checked_nbytes(shape(), dtype(), "pin_memory");
  if (nbytes > 0) std::memcpy(out.raw_data(), src.raw_data(), nbytes);
  return out;
}

Tensor Tensor::to(Device target, bool non_blocking) const {
  if (!non_blocking || target == device() || device().is_cuda() == target.is_cuda()) return to(target);
  const Tensor src = contiguous();
  const std::size_t nbytes = checked_nbytes(shape(), dtype(), "to(non_blocking)");
  // PyTorch too makes a non-blocking copy to the host land in pinned memory: from pageable
  // memory the copy could not be asynchronous.
  Tensor out = target.is_cpu() ? pinned(shape(), dtype(), "to(non_blocking)") : empty(shape(), dtype(), target);
  const Device gpu = target.is_cuda() ? target : device();
  detail::await_copy(detail::copy_async(out.device_raw_data(), target, src.device_raw_data(), device(), nbytes), gpu);
  return out;
}

}  // namespace zkynet
