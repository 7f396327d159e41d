// xtensor views of zkynet tensors, for kernels inside .cpp files only (never a public header).
#pragma once

#include <zkynet/framework/tensor.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>

#include <cstddef>
#include <vector>

namespace zkynet::internal {

using XShape = std::vector<std::size_t>;
using XStrides = std::vector<std::ptrdiff_t>;

inline XShape xshape(const Shape& shape) { return XShape(shape.begin(), shape.end()); }
inline XStrides xstrides(const Shape& strides) { return XStrides(strides.begin(), strides.end()); }

// A strided, non-owning xtensor expression over `t` (which must outlive it).
template <class T>
auto xview(const Tensor& t) {
  // NOTE: xtensor checks the buffer size against the element count, not the strided span.
  return xt::adapt(t.data<T>(), static_cast<std::size_t>(t.numel()), xt::no_ownership(), xshape(t.shape()),
                   xstrides(t.strides()));
}

}  // namespace zkynet::internal
