// max_pool2d and avg_pool2d on CUDA (api.h says what each computes), own kernels as PyTorch's
// and MLX's: one thread per output in the forwards, per input element in avg_pool2d's backward,
// each following the CPU loop of ../conv.cpp term for term (the same window bounds, the same
// order of additions in T), so that values equal the CPU's bit for bit; max_pool2d's backward
// scatters with atomicAdd, which orders the sums of overlapping windows arbitrarily.
// Compiled with --fmad=false (ops/CMakeLists.txt): no fused multiply-adds the CPU does not make.
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <string>

namespace zkynet::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, std::int64_t{65535} * 32));
}

void check_launch(const char* op, const PoolWindow& w) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw Error(std::string(op) + ": CUDA kernel launch failed for input (" + std::to_string(w.n) + ", " +
                std::to_string(w.c) + ", " + std::to_string(w.in_h) + ", " + std::to_string(w.in_w) + "): " +
                cudaGetErrorString(status));
  }
}

// One axis of a window, as ../conv.cpp's Axis::valid_taps: the kernel offsets [lo, hi) of
// output o that fall inside [0, in).
__device__ void valid_taps(std::int64_t o, std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t p,
                           std::int64_t d, std::int64_t& lo, std::int64_t& hi) {
  const std::int64_t start = o * s - p;
  lo = start < 0 ? -start / d + (-start % d != 0) : 0;
  const std::int64_t room = in - 1 - start;
  hi = room < 0 ? 0 : (k < room / d + 1 ? k : room / d + 1);
  lo = lo < hi ? lo : hi;
}

// avg_pool2d's window along one axis, as ../conv.cpp's avg_windows: [lo, hi) inside the input
// and the count of the window clipped to the padded input.
struct AvgAxis {
  std::int64_t lo, hi, padded;
};
__device__ AvgAxis avg_axis(std::int64_t o, std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t p) {
  const std::int64_t start = o * s - p;
  const std::int64_t stop = start + k < in + p ? start + k : in + p;
  return {start > 0 ? start : 0, stop < in ? stop : in, stop - start};
}

template <class T>
__device__ bool is_nan(T v) {
  return v != v;
}

// Output (plane, oh, ow) per thread. The CPU's rule (clipped_argmax): from -inf, a strictly
// larger value or any NaN takes over, so the first maximum wins, or the last NaN; the CPU's
// faster paths for NaN-free windows pick the same first maximum.
template <class T>
__global__ void max_pool_forward(const T* x, T* y, std::int64_t* index, PoolWindow w, std::int64_t total) {
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t ow = t % w.out_w;
    const std::int64_t oh = (t / w.out_w) % w.out_h;
    const std::int64_t plane = t / (w.out_w * w.out_h);
    const T* src = x + plane * w.in_h * w.in_w;
    std::int64_t klo, khi, jlo, jhi;
    valid_taps(oh, w.in_h, w.k_h, w.s_h, w.p_h, w.d_h, klo, khi);
    valid_taps(ow, w.in_w, w.k_w, w.s_w, w.p_w, w.d_w, jlo, jhi);
    std::int64_t best = -1;
    T m = -std::numeric_limits<T>::infinity();
    if (klo < khi && jlo < jhi) {
      const std::int64_t at = (oh * w.s_h - w.p_h) * w.in_w + (ow * w.s_w - w.p_w);  // tap (0, 0), maybe outside
      best = at + klo * w.d_h * w.in_w + jlo * w.d_w;
      for (std::int64_t ki = klo; ki < khi; ++ki) {
        for (std::int64_t kj = jlo; kj < jhi; ++kj) {
          const std::int64_t i = at + ki * w.d_h * w.in_w + kj * w.d_w;
          const T v = src[i];
          if (v > m || is_nan(v)) {
            m = v;
            best = i;
          }
        }
      }
    }
    y[t] = best >= 0 ? src[best] : -std::numeric_limits<T>::infinity();
    index[t] = best;
  }
}

template <class T>
__global__ void fill_zero(T* p, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    p[i] = T(0);
  }
}

template <class T>
__global__ void max_pool_backward(const T* g, const std::int64_t* index, T* dx, std::int64_t out_plane,
                                  std::int64_t in_plane, std::int64_t total) {
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = index[t];
    if (i >= 0) atomicAdd(dx + (t / out_plane) * in_plane + i, g[t]);
  }
}

template <class T>
__global__ void avg_pool_forward(const T* x, T* y, PoolWindow w, bool count_include_pad, std::int64_t total) {
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t ow = t % w.out_w;
    const std::int64_t oh = (t / w.out_w) % w.out_h;
    const T* src = x + (t / (w.out_w * w.out_h)) * w.in_h * w.in_w;
    const AvgAxis a = avg_axis(oh, w.in_h, w.k_h, w.s_h, w.p_h);
    const AvgAxis b = avg_axis(ow, w.in_w, w.k_w, w.s_w, w.p_w);
    T sum = T(0);
    for (std::int64_t ih = a.lo; ih < a.hi; ++ih) {
      for (std::int64_t iw = b.lo; iw < b.hi; ++iw) sum += src[ih * w.in_w + iw];
    }
    const std::int64_t count = count_include_pad ? a.padded * b.padded : (a.hi - a.lo) * (b.hi - b.lo);
    y[t] = count > 0 ? sum / static_cast<T>(count) : T(0);
  }
}

// The outputs o whose window (along one axis) may hold input position i: o * s - p <= i and
// o * s - p + k > i. A superset is fine: the caller checks each against its window.
__device__ void outputs_over(std::int64_t i, std::int64_t out, std::int64_t k, std::int64_t s, std::int64_t p,
                             std::int64_t& lo, std::int64_t& hi) {
  const std::int64_t first = i + p - k;  // o * s > first
  lo = first < 0 ? 0 : first / s + 1;
  const std::int64_t last = (i + p) / s;  // o * s <= i + p (i + p >= 0)
  hi = last + 1 < out ? last + 1 : out;
}

// Input element (plane, ih, iw) per thread: the sum of grad / count over the windows holding
// it, added in T in the order the CPU adds them (output rows, then columns).
template <class T>
__global__ void avg_pool_backward(const T* g, T* dx, PoolWindow w, bool count_include_pad, std::int64_t total) {
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t iw = t % w.in_w;
    const std::int64_t ih = (t / w.in_w) % w.in_h;
    const T* src = g + (t / (w.in_w * w.in_h)) * w.out_h * w.out_w;
    std::int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    outputs_over(ih, w.out_h, w.k_h, w.s_h, w.p_h, oh_lo, oh_hi);
    outputs_over(iw, w.out_w, w.k_w, w.s_w, w.p_w, ow_lo, ow_hi);
    T acc = T(0);
    for (std::int64_t oh = oh_lo; oh < oh_hi; ++oh) {
      const AvgAxis a = avg_axis(oh, w.in_h, w.k_h, w.s_h, w.p_h);
      if (ih < a.lo || ih >= a.hi) continue;
      for (std::int64_t ow = ow_lo; ow < ow_hi; ++ow) {
        const AvgAxis b = avg_axis(ow, w.in_w, w.k_w, w.s_w, w.p_w);
        if (iw < b.lo || iw >= b.hi) continue;
        const std::int64_t count = count_include_pad ? a.padded * b.padded : (a.hi - a.lo) * (b.hi - b.lo);
        if (count == 0) continue;
        acc += src[oh * w.out_w + ow] / static_cast<T>(count);
      }
    }
    dx[t] = acc;
  }
}

cudaStream_t stream_of(const Tensor& t) { return static_cast<cudaStream_t>(zkynet::detail::cuda_stream(t.device())); }

}  // namespace

Tensor max_pool2d(const Tensor& input, const PoolWindow& w, Tensor* indices) {
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty({w.n, w.c, w.out_h, w.out_w}, x.dtype(), x.device());
  Tensor ind = Tensor::empty(out.shape(), DType::Int64, x.device());
  const std::int64_t total = out.numel();
  if (total > 0) {
    const cudaStream_t stream = stream_of(x);
    dispatch_floating(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      max_pool_forward<T><<<blocks_for(total), kThreads, 0, stream>>>(
          x.device_data<T>(), out.device_data<T>(), ind.device_data<std::int64_t>(), w, total);
    });
    check_launch("max_pool2d", w);
  }
  if (indices) *indices = ind;
  return out;
}

Tensor max_pool2d_backward(const Tensor& grad, const Shape& input_shape, const Tensor& indices) {
  const Tensor gy = grad.contiguous();
  const Tensor ind = indices.contiguous();
  Tensor dx = Tensor::empty(input_shape, grad.dtype(), grad.device());
  const PoolWindow w{.n = input_shape[0], .c = input_shape[1], .in_h = input_shape[2], .in_w = input_shape[3],
                     .out_h = grad.size(2), .out_w = grad.size(3)};
  const std::int64_t in_total = dx.numel();
  const std::int64_t total = gy.numel();
  if (in_total == 0) return dx;
  const cudaStream_t stream = stream_of(gy);
  dispatch_floating(grad.dtype(), [&](auto zero) {
    using T = decltype(zero);
    fill_zero<T><<<blocks_for(in_total), kThreads, 0, stream>>>(dx.device_data<T>(), in_total);
    if (total > 0) {
      max_pool_backward<T><<<blocks_for(total), kThreads, 0, stream>>>(
          gy.device_data<T>(), ind.device_data<std::int64_t>(), dx.device_data<T>(), w.out_h * w.out_w,
          w.in_h * w.in_w, total);
    }
  });
  check_launch("max_pool2d backward", w);
  return dx;
}

Tensor avg_pool2d(const Tensor& input, const PoolWindow& w, bool count_include_pad) {
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty({w.n, w.c, w.out_h, w.out_w}, x.dtype(), x.device());
  const std::int64_t total = out.numel();
  if (total == 0) return out;
  const cudaStream_t stream = stream_of(x);
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    avg_pool_forward<T><<<blocks_for(total), kThreads, 0, stream>>>(x.device_data<T>(), out.device_data<T>(), w,
                                                                     count_include_pad, total);
  });
  check_launch("avg_pool2d", w);
  return out;
}

void avg_pool2d_backward(const Tensor& grad, const Tensor& dx, const PoolWindow& w, bool count_include_pad) {
  const Tensor gy = grad.contiguous();
  const std::int64_t total = dx.numel();
  if (total == 0) return;
  const cudaStream_t stream = stream_of(gy);
  dispatch_floating(grad.dtype(), [&](auto zero) {
    using T = decltype(zero);
    avg_pool_backward<T><<<blocks_for(total), kThreads, 0, stream>>>(gy.device_data<T>(), dx.device_data<T>(), w,
                                                                      count_include_pad, total);
  });
  check_launch("avg_pool2d backward", w);
}

}  // namespace zkynet::kernels::cuda
