// Sums on CUDA with the contract of ../accumulate.h: terms accumulate in double (int64 for
// integers). Each output's terms are cut into chunks; a block sums a chunk (each thread a
// strided run, then a pairwise tree in shared memory) into a double partial; a second kernel
// adds each output's partials in double and rounds once.
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>
#include <zkynet/internal/strided_index.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <type_traits>

namespace zkynet::kernels::cuda {
namespace {

using zkynet::detail::StridedLayout;

constexpr int kThreads = 256;
constexpr std::int64_t kChunk = kThreads * 32;  // terms per block

template <class T>
using Acc = std::conditional_t<std::is_floating_point_v<T>, double, std::int64_t>;

template <class T>
__global__ void partial_sums(const T* p, StridedLayout kept, StridedLayout red, std::int64_t terms,
                             std::int64_t chunks, Acc<T>* partial) {
  __shared__ Acc<T> lane[kThreads];
  const std::int64_t block = blockIdx.x;
  const std::int64_t output = block / chunks;
  const std::int64_t begin = (block % chunks) * kChunk;
  const std::int64_t end = begin + kChunk < terms ? begin + kChunk : terms;
  const T* base = p + kept.at(output);
  Acc<T> acc = 0;
  for (std::int64_t r = begin + threadIdx.x; r < end; r += kThreads) acc += static_cast<Acc<T>>(base[red.at(r)]);
  lane[threadIdx.x] = acc;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) lane[threadIdx.x] += lane[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[block] = lane[0];
}

template <class T>
__global__ void finish_sums(const Acc<T>* partial, std::int64_t chunks, std::int64_t outputs, double scale, T* out) {
  const std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= outputs) return;
  Acc<T> acc = 0;
  for (std::int64_t c = 0; c < chunks; ++c) acc += partial[o * chunks + c];
  if constexpr (std::is_floating_point_v<T>) {
    out[o] = static_cast<T>(static_cast<double>(acc) * scale);
  } else {
    out[o] = static_cast<T>(acc);
  }
}

template <class T>
__global__ void fill_value(T* out, std::int64_t n, T value) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value;
}

// The input's axes split into kept and reduced ones, each as a strided layout.
void split_axes(const Tensor& a, const Shape& axes, StridedLayout& kept, StridedLayout& red) {
  for (std::int64_t d = 0; d < a.dim(); ++d) {
    StridedLayout& l = std::binary_search(axes.begin(), axes.end(), d) ? red : kept;
    l.size[l.ndim] = a.shape()[static_cast<std::size_t>(d)];
    l.stride[l.ndim] = a.strides()[static_cast<std::size_t>(d)];
    ++l.ndim;
  }
}

void check_launch() {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(std::string("sum: CUDA kernel launch failed: ") + cudaGetErrorString(status));
}

}  // namespace

Tensor sum(const Tensor& a, const Shape& axes, bool keepdim, double scale) {
  Shape out_shape;
  std::int64_t terms = 1;
  for (std::int64_t d = 0; d < a.dim(); ++d) {
    const std::int64_t n = a.shape()[static_cast<std::size_t>(d)];
    if (std::binary_search(axes.begin(), axes.end(), d)) {
      terms *= n;
      if (keepdim) out_shape.push_back(1);
    } else {
      out_shape.push_back(n);
    }
  }
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  const std::int64_t outputs = out.numel();
  if (outputs == 0) return out;
  const auto stream = static_cast<cudaStream_t>(zkynet::detail::cuda_stream(a.device()));
  const auto blocks = [](std::int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); };
  auto run = [&](auto zero) {
    using T = decltype(zero);
    if (terms == 0) {
      const T value = std::is_floating_point_v<T> ? static_cast<T>(0.0 * scale) : T(0);
      fill_value<<<blocks(outputs), kThreads, 0, stream>>>(out.device_data<T>(), outputs, value);
      return;
    }
    StridedLayout kept, red;
    split_axes(a, axes, kept, red);
    const std::int64_t chunks = (terms + kChunk - 1) / kChunk;
    const DType partial_dtype = std::is_floating_point_v<T> ? DType::Float64 : DType::Int64;
    const Tensor partial = Tensor::empty({outputs * chunks}, partial_dtype, a.device());
    auto* pp = static_cast<Acc<T>*>(partial.device_raw_data());
    partial_sums<<<static_cast<unsigned>(outputs * chunks), kThreads, 0, stream>>>(a.device_data<T>(), kept, red, terms,
                                                                                   chunks, pp);
    finish_sums<<<blocks(outputs), kThreads, 0, stream>>>(pp, chunks, outputs, scale, out.device_data<T>());
  };
  switch (a.dtype()) {
    case DType::Float32: run(float{}); break;
    case DType::Float64: run(double{}); break;
    case DType::Int64: run(std::int64_t{}); break;
  }
  check_launch();
  return out;
}

}  // namespace zkynet::kernels::cuda
