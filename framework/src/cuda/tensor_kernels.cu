// The framework's own kernels on CUDA tensors: fill, copy (any strides, converting dtypes) and
// the in-place add that accumulates gradients. One thread per element, row-major over the shape.
#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>
#include <zkynet/internal/strided_index.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace zkynet::detail {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

cudaStream_t stream_of(const Tensor& t) { return static_cast<cudaStream_t>(cuda_stream(t.device())); }

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(std::string(what) + ": kernel launch failed: " + cudaGetErrorString(status));
}

template <class T>
__global__ void fill_kernel(T* p, StridedLayout l, std::int64_t n, T value) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[l.at(i)] = value;
}

template <class To, class From>
__global__ void copy_kernel(To* dst, StridedLayout ld, const From* src, StridedLayout ls, std::int64_t n) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[ld.at(i)] = static_cast<To>(src[ls.at(i)]);
}

template <class T>
__global__ void add_kernel(T* dst, StridedLayout ld, const T* src, StridedLayout ls, std::int64_t n) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[ld.at(i)] += src[ls.at(i)];
}

template <class F>
void with_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    case DType::Int64: f(std::int64_t{}); return;
  }
}

}  // namespace

void cuda_fill(const Tensor& t, double value) {
  if (t.numel() == 0) return;
  with_dtype(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    fill_kernel<<<blocks_for(t.numel()), kThreads, 0, stream_of(t)>>>(t.device_data<T>(), layout_over(t, t.shape()),
                                                                       t.numel(), static_cast<T>(value));
  });
  check_launch("fill_");
}

void cuda_copy(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  with_dtype(dst.dtype(), [&](auto to_zero) {
    using To = decltype(to_zero);
    with_dtype(src.dtype(), [&](auto from_zero) {
      using From = decltype(from_zero);
      copy_kernel<<<blocks_for(dst.numel()), kThreads, 0, stream_of(dst)>>>(
          dst.device_data<To>(), layout_over(dst, dst.shape()), src.device_data<From>(), layout_over(src, dst.shape()),
          dst.numel());
    });
  });
  check_launch("copy_");
}

void cuda_add_inplace(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  with_dtype(dst.dtype(), [&](auto zero) {
    using T = decltype(zero);
    add_kernel<<<blocks_for(dst.numel()), kThreads, 0, stream_of(dst)>>>(
        dst.device_data<T>(), layout_over(dst, dst.shape()), src.device_data<T>(), layout_over(src, dst.shape()),
        dst.numel());
  });
  check_launch("add_");
}

}  // namespace zkynet::detail
