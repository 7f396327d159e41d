// Elementwise kernels on CUDA: one grid-stride loop per functor of ../functors.h, operands of any
// strides and broadcast (index arithmetic from strided_index.h, the same the host tests check).
#include "../functors.h"
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>
#include <zkynet/internal/strided_index.h>
#include <zkynet/ops/kernels.h>

#include <cuda_runtime.h>

#include <string>

namespace zkynet::kernels::cuda {
namespace {

using zkynet::detail::layout_over;
using zkynet::detail::StridedLayout;

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
}

template <class T, class F>
__global__ void unary_kernel(T* out, const T* a, StridedLayout la, std::int64_t n, F f) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = f(a[la.at(i)]);
  }
}

template <class T, class F>
__global__ void binary_kernel(T* out, const T* a, StridedLayout la, const T* b, StridedLayout lb, std::int64_t n, F f) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = f(a[la.at(i)], b[lb.at(i)]);
  }
}

// An operand on `device` in `dtype`: 0-d host numbers travel (8 bytes), nothing else does.
Tensor operand(const Tensor& t, Device device, DType dtype) {
  const Tensor on = t.device() == device ? t : t.to(device);
  return on.to(dtype);
}

Device device_of(const Tensor& a, const Tensor& b) { return a.device().is_cuda() ? a.device() : b.device(); }

void check_launch(std::string_view op) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(std::string(op) + ": CUDA kernel launch failed: " + cudaGetErrorString(status));
}

cudaStream_t stream(Device device) { return static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device)); }

// Calls body(T{}) for dtype; functors marked `floating` are never instantiated for int64.
template <class F, class Body>
void with_dtype(DType dtype, std::string_view op, Body&& body) {
  if (dtype == DType::Float32) return body(float{});
  if (dtype == DType::Float64) return body(double{});
  if constexpr (requires { F::floating; }) {
    throw TypeError(std::string(op) + ": needs floating-point operands, got int64");
  } else {
    body(std::int64_t{});
  }
}

}  // namespace

template <class F>
Tensor map_unary(const Tensor& a, DType dtype, const F& f, std::string_view op) {
  const Tensor x = operand(a, a.device(), dtype);
  Tensor out = Tensor::empty(a.shape(), dtype, a.device());
  if (out.numel() == 0) return out;
  with_dtype<F>(dtype, op, [&](auto zero) {
    using T = decltype(zero);
    unary_kernel<<<blocks_for(out.numel()), kThreads, 0, stream(a.device())>>>(
        out.device_data<T>(), x.device_data<T>(), layout_over(x, out.shape()), out.numel(), f);
  });
  check_launch(op);
  return out;
}

template <class F>
Tensor map_binary(const Tensor& a, const Tensor& b, DType dtype, const F& f, std::string_view op) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  const Device device = device_of(a, b);
  const Tensor x = operand(a, device, dtype);
  const Tensor y = operand(b, device, dtype);
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() == 0) return out;
  with_dtype<F>(dtype, op, [&](auto zero) {
    using T = decltype(zero);
    binary_kernel<<<blocks_for(out.numel()), kThreads, 0, stream(device)>>>(
        out.device_data<T>(), x.device_data<T>(), layout_over(x, shape), y.device_data<T>(), layout_over(y, shape),
        out.numel(), f);
  });
  check_launch(op);
  return out;
}

ZKYNET_UNARY_FUNCTORS(ZKYNET_INSTANTIATE_MAP_UNARY)
ZKYNET_BINARY_FUNCTORS(ZKYNET_INSTANTIATE_MAP_BINARY)

}  // namespace zkynet::kernels::cuda
