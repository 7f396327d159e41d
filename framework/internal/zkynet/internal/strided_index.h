// Index arithmetic shared by host and device kernels: where element `flat` (row-major over a
// shape) lives in a strided operand. Compiled by g++ for the CPU tests and by nvcc for CUDA,
// so the GPU kernels' offsets are checked on a machine without a GPU.
#pragma once

#include <zkynet/framework/tensor.h>
#include <zkynet/internal/host_device.h>

#include <cstdint>

namespace zkynet::detail {

// A shape and the strides of one operand over it, by value (kernel arguments), at most
// Shape::kMaxDims dimensions. Broadcast operands have stride 0 on their expanded axes.
struct StridedLayout {
  int ndim = 0;
  std::int64_t size[Shape::kMaxDims] = {};
  std::int64_t stride[Shape::kMaxDims] = {};

  // The element's distance, in elements, from the operand's first element.
  ZKYNET_HD std::int64_t at(std::int64_t flat) const {
    if (ndim <= 1) return ndim == 0 ? 0 : flat * stride[0];  // no division: the common flat case
    std::int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      off += (flat % size[d]) * stride[d];
      flat /= size[d];
    }
    return off;
  }
};

// `t` viewed over `shape` (t's shape broadcast to it, numpy's rules; the caller checked them).
// Axes of size 1 are dropped and neighbours that step through memory as one are merged, so a
// contiguous operand becomes one axis of stride 1.
inline StridedLayout layout_over(const Tensor& t, const Shape& shape) {
  StridedLayout l;
  const std::size_t lead = shape.size() - t.shape().size();
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    const bool own = d >= lead && t.shape()[d - lead] == shape[d];
    const std::int64_t stride = own ? t.strides()[d - lead] : 0;
    if (l.ndim > 0 && l.stride[l.ndim - 1] == stride * shape[d]) {
      l.size[l.ndim - 1] *= shape[d];
      l.stride[l.ndim - 1] = stride;
      continue;
    }
    l.size[l.ndim] = shape[d];
    l.stride[l.ndim] = stride;
    ++l.ndim;
  }
  return l;
}

}  // namespace zkynet::detail
