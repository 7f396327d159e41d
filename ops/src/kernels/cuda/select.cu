// Indexing and selection on CUDA (../select.h says what each computes):
// - gather/scatter: one thread per element of the index. Its target position is the element's
//   own position in a "pinned" view of the data (narrowed to the index's shape, stride 0 along
//   the axis) plus index value x the axis stride; index_select and embedding pass their index
//   as an expanded view, so one kernel serves all three. Scatter-adds use atomicAdd.
// - argmax: a lane per warp (shuffle reduction under a total order that reproduces the CPU's
//   "first maximum, or first NaN") for long lanes, a lane per thread otherwise.
// - variance: two passes over contiguous lanes, each a chunked block reduction into double
//   partials, added per lane in double.
// - map_ternary: the three-operand elementwise functors of ../functors.h.
#include "../functors.h"
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>
#include <zkynet/internal/strided_index.h>
#include <zkynet/ops/kernels.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace zkynet::kernels::cuda {
namespace {

using zkynet::detail::layout_over;
using zkynet::detail::StridedLayout;

constexpr int kThreads = 256;
constexpr int kWarp = 32;

// Grid-stride kernels: enough blocks for n threads, at most 65535 x 8.
unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
}

cudaStream_t stream(Device device) { return static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device)); }

void check_launch(std::string_view op) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(std::string(op) + ": CUDA kernel launch failed: " + cudaGetErrorString(status));
}

// Calls body(T{}) for dtype; with FloatingOnly (functors marked `floating`), never for int64.
template <bool FloatingOnly, class Body>
void with_dtype(DType dtype, std::string_view op, Body&& body) {
  if (dtype == DType::Float32) return body(float{});
  if (dtype == DType::Float64) return body(double{});
  if constexpr (FloatingOnly) {
    throw TypeError(std::string(op) + ": needs floating-point operands, got int64");
  } else {
    body(std::int64_t{});
  }
}

// ---- three-operand maps -------------------------------------------------------------------

template <class T, class F>
__global__ void ternary_kernel(T* out, const T* a, StridedLayout la, const T* b, StridedLayout lb, const T* c,
                               StridedLayout lc, std::int64_t n, F f) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = f(a[la.at(i)], b[lb.at(i)], c[lc.at(i)]);
  }
}

// An operand on `device` in `dtype`: 0-d host numbers travel (8 bytes), as in elementwise.cu.
Tensor operand(const Tensor& t, Device device, DType dtype) {
  const Tensor on = t.device() == device ? t : t.to(device);
  return on.to(dtype);
}

// ---- gather, scatter ----------------------------------------------------------------------

// t narrowed to `shape` outside `axis` and held at position 0 along it (stride 0 there): each
// element's position before the index moves it along the axis.
Tensor pinned(const Tensor& t, const Shape& shape, std::int64_t axis) {
  Tensor v = t;
  for (std::int64_t d = 0; d < t.dim(); ++d) v = v.slice(d, 0, d == axis ? 1 : shape[static_cast<std::size_t>(d)]);
  return v.expand(shape);
}

template <class T>
__global__ void gather_kernel(T* out, const T* x, StridedLayout lx, const std::int64_t* index, StridedLayout li,
                              std::int64_t axis_stride, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = x[lx.at(i) + index[li.at(i)] * axis_stride];
  }
}

template <class T, bool Add>
__global__ void scatter_kernel(T* dst, StridedLayout ld, const T* src, StridedLayout ls, const std::int64_t* index,
                               StridedLayout li, std::int64_t axis_stride, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    T* at = dst + ld.at(i) + index[li.at(i)] * axis_stride;
    if constexpr (Add) {
      atomicAdd(at, src[ls.at(i)]);  // repeated indices: the order of these adds is not fixed
    } else {
      *at = src[ls.at(i)];
    }
  }
}

__global__ void first_bad_index_kernel(const std::int64_t* index, std::int64_t n, std::int64_t size,
                                       unsigned long long* first) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if (index[i] < 0 || index[i] >= size) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

// ---- argmax -------------------------------------------------------------------------------

// Whether (va at ja) comes before (vb at jb) in "first NaN, else largest value, else first
// position"; j < 0 marks no candidate. A total order, so any reduction tree agrees with the
// CPU's left-to-right scan.
template <class T>
__device__ bool precedes(T va, std::int64_t ja, T vb, std::int64_t jb) {
  if (jb < 0) return true;
  if (ja < 0) return false;
  if (fn::is_nan(va) != fn::is_nan(vb)) return fn::is_nan(va);
  if (!fn::is_nan(va) && va != vb) return va > vb;
  return ja < jb;
}

// One lane per thread: lane k starts at (k / inner) n inner + k % inner, its elements `inner`
// apart; the CPU's scan, which stops at the first NaN.
template <class T>
__global__ void argmax_per_thread(const T* p, std::int64_t lanes, std::int64_t n, std::int64_t inner,
                                  std::int64_t* out) {
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < lanes;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const T* lane = p + (k / inner) * n * inner + k % inner;
    std::int64_t b = 0;
    T best = lane[0];
    for (std::int64_t j = 1; j < n && !fn::is_nan(best); ++j) {
      const T v = lane[j * inner];
      if (fn::is_nan(v) || v > best) {
        b = j;
        best = v;
      }
    }
    out[k] = b;
  }
}

// One lane per warp: each thread scans every 32nd element, then the warp reduces.
template <class T>
__global__ void argmax_per_warp(const T* p, std::int64_t lanes, std::int64_t n, std::int64_t inner, std::int64_t* out) {
  const int t = static_cast<int>(threadIdx.x % kWarp);
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * blockDim.x / kWarp;
  for (std::int64_t k = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; k < lanes;
       k += warps) {
    const T* lane = p + (k / inner) * n * inner + k % inner;
    T best = T(0);
    std::int64_t b = -1;
    for (std::int64_t j = t; j < n && !(b >= 0 && fn::is_nan(best)); j += kWarp) {
      const T v = lane[j * inner];
      if (b < 0 || fn::is_nan(v) || v > best) {
        b = j;
        best = v;
      }
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      const T v = __shfl_down_sync(0xffffffffu, best, offset);
      const std::int64_t j = __shfl_down_sync(0xffffffffu, b, offset);
      if (precedes(v, j, best, b)) {
        best = v;
        b = j;
      }
    }
    if (t == 0) out[k] = b;
  }
}

// ---- variance -----------------------------------------------------------------------------

// Block `b` of `blocks` sums chunk b % chunks of lane b / chunks (lanes contiguous, n long) in
// double: the elements (mean null) or their squared deviations from mean[lane].
template <class T>
__global__ void lane_partials(const T* p, std::int64_t n, std::int64_t chunk, std::int64_t chunks, std::int64_t blocks,
                              const double* mean, double* partial) {
  __shared__ double acc[kThreads];
  for (std::int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const std::int64_t lane = b / chunks;
    const std::int64_t begin = (b % chunks) * chunk;
    const std::int64_t end = begin + chunk < n ? begin + chunk : n;
    const T* q = p + lane * n;
    const double m = mean ? mean[lane] : 0.0;
    double s = 0;
    for (std::int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
      const double v = static_cast<double>(q[j]);
      if (mean) {
        const double dev = v - m;
        s += dev * dev;
      } else {
        s += v;
      }
    }
    acc[threadIdx.x] = s;
    __syncthreads();
    for (unsigned width = blockDim.x / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) acc[threadIdx.x] += acc[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) partial[b] = acc[0];
    __syncthreads();  // acc is refilled for the next block
  }
}

// result[o] = (sum of lane o's partials) / divisor, in double; a lane of no chunks sums to 0.
__global__ void lane_means(const double* partial, std::int64_t chunks, std::int64_t lanes, double divisor,
                           double* result) {
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < lanes;
       o += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    double s = 0;
    for (std::int64_t c = 0; c < chunks; ++c) s += partial[o * chunks + c];
    result[o] = s / divisor;
  }
}

// out[o] = (sum of lane o's partials) / divisor, its square root when root, rounded to T once.
template <class T>
__global__ void lane_variances(const double* partial, std::int64_t chunks, std::int64_t lanes, double divisor,
                               bool root, T* out) {
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < lanes;
       o += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    double s = 0;
    for (std::int64_t c = 0; c < chunks; ++c) s += partial[o * chunks + c];
    const double v = s / divisor;
    out[o] = static_cast<T>(root ? ::sqrt(v) : v);  // ::, not kernels::sqrt(Tensor)
  }
}

}  // namespace

// ---- definitions (api.h) ------------------------------------------------------------------

template <class F>
Tensor map_ternary(const Tensor& a, const Tensor& b, const Tensor& c, DType dtype, const F& f, std::string_view op) {
  const Shape shape = broadcast_shapes(broadcast_shapes(a.shape(), b.shape(), op), c.shape(), op);
  const Device device = a.device().is_cuda() ? a.device() : b.device().is_cuda() ? b.device() : c.device();
  const Tensor x = operand(a, device, dtype);
  const Tensor y = operand(b, device, dtype);
  const Tensor z = operand(c, device, dtype);
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() == 0) return out;
  constexpr bool floating_only = requires { F::floating; };
  with_dtype<floating_only>(dtype, op, [&](auto zero) {
    using T = decltype(zero);
    ternary_kernel<<<blocks_for(out.numel()), kThreads, 0, stream(device)>>>(
        out.device_data<T>(), x.device_data<T>(), layout_over(x, shape), y.device_data<T>(), layout_over(y, shape),
        z.device_data<T>(), layout_over(z, shape), out.numel(), f);
  });
  check_launch(op);
  return out;
}

ZKYNET_TERNARY_FUNCTORS(ZKYNET_INSTANTIATE_MAP_TERNARY)

std::int64_t first_index_out_of_range(const Tensor& index, std::int64_t size) {
  const std::int64_t n = index.numel();
  if (n == 0) return -1;
  const Tensor t = index.contiguous();
  // Starts at n (none); the kernel lowers it to the first bad position. Read back: one sync.
  const Tensor first = Tensor::full({1}, static_cast<double>(n), DType::Int64, index.device());
  first_bad_index_kernel<<<blocks_for(n), kThreads, 0, stream(index.device())>>>(
      t.device_data<std::int64_t>(), n, size, static_cast<unsigned long long*>(first.device_raw_data()));
  check_launch("index check");
  const std::int64_t at = first.cpu().data<std::int64_t>()[0];
  return at < n ? at : -1;
}

Tensor gather(const Tensor& x, std::int64_t axis, const Tensor& index) {
  const Shape& shape = index.shape();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const std::int64_t n = out.numel();
  if (n == 0) return out;
  const Tensor source = pinned(x, shape, axis);
  const std::int64_t axis_stride = x.strides()[static_cast<std::size_t>(axis)];
  with_dtype<false>(x.dtype(), "gather", [&](auto zero) {
    using T = decltype(zero);
    gather_kernel<<<blocks_for(n), kThreads, 0, stream(x.device())>>>(
        out.device_data<T>(), source.device_data<T>(), layout_over(source, shape), index.device_data<std::int64_t>(),
        layout_over(index, shape), axis_stride, n);
  });
  check_launch("gather");
  return out;
}

Tensor scatter(const Tensor& src, std::int64_t axis, const Tensor& index, const Shape& shape, bool add) {
  Tensor dst = Tensor::zeros(shape, src.dtype(), src.device());
  const std::int64_t n = index.numel();
  if (n == 0) return dst;
  const Tensor target = pinned(dst, index.shape(), axis);
  const std::int64_t axis_stride = dst.strides()[static_cast<std::size_t>(axis)];
  with_dtype<true>(src.dtype(), "scatter", [&](auto zero) {
    using T = decltype(zero);
    const auto launch = [&](auto kernel) {
      kernel<<<blocks_for(n), kThreads, 0, stream(src.device())>>>(
          target.device_data<T>(), layout_over(target, index.shape()), src.device_data<T>(),
          layout_over(src, index.shape()), index.device_data<std::int64_t>(), layout_over(index, index.shape()),
          axis_stride, n);
    };
    if (add) {
      launch(scatter_kernel<T, true>);
    } else {
      launch(scatter_kernel<T, false>);
    }
  });
  check_launch("scatter");
  return dst;
}

Tensor argmax(const Tensor& x, std::int64_t axis) {
  Shape shape = x.shape();
  const std::int64_t n = shape[static_cast<std::size_t>(axis)];
  shape[static_cast<std::size_t>(axis)] = 1;
  Tensor out = Tensor::empty(shape, DType::Int64, x.device());
  const std::int64_t lanes = out.numel();
  if (lanes == 0) return out;
  const Tensor in = x.contiguous();
  std::int64_t inner = 1;
  for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
  // A warp per lane where lanes are long and either contiguous or too few to fill the device
  // one per thread; else a thread per lane (neighbouring threads read neighbouring elements).
  const bool per_warp = n > 2 * kWarp && (inner == 1 || lanes < 16384);
  with_dtype<false>(x.dtype(), "argmax", [&](auto zero) {
    using T = decltype(zero);
    if (per_warp) {
      argmax_per_warp<<<blocks_for(lanes * kWarp), kThreads, 0, stream(x.device())>>>(
          in.device_data<T>(), lanes, n, inner, out.device_data<std::int64_t>());
    } else {
      argmax_per_thread<<<blocks_for(lanes), kThreads, 0, stream(x.device())>>>(
          in.device_data<T>(), lanes, n, inner, out.device_data<std::int64_t>());
    }
  });
  check_launch("argmax");
  return out;
}

Tensor variance_lanes(const Tensor& x, std::int64_t n, double divisor, bool root, const Shape& out_shape) {
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  const std::int64_t lanes = out.numel();
  if (lanes == 0) return out;
  // Block size: the power of two covering a lane, 32 to 256 threads; a chunk is 16 per thread.
  int threads = kWarp;
  while (threads < kThreads && threads < n) threads *= 2;
  const std::int64_t chunk = static_cast<std::int64_t>(threads) * 16;
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  const std::int64_t blocks = lanes * chunks;
  const Tensor partial = Tensor::empty({std::max<std::int64_t>(blocks, 1)}, DType::Float64, x.device());
  const Tensor mean = Tensor::empty({lanes}, DType::Float64, x.device());
  auto* pp = static_cast<double*>(partial.device_raw_data());
  auto* mp = static_cast<double*>(mean.device_raw_data());
  const cudaStream_t s = stream(x.device());
  const unsigned grid = static_cast<unsigned>(std::min<std::int64_t>(blocks, 65535 * 8));
  with_dtype<true>(x.dtype(), "var", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.device_data<T>();
    if (blocks > 0) lane_partials<<<grid, threads, 0, s>>>(p, n, chunk, chunks, blocks, nullptr, pp);
    lane_means<<<blocks_for(lanes), kThreads, 0, s>>>(pp, chunks, lanes, static_cast<double>(n), mp);
    if (blocks > 0) lane_partials<<<grid, threads, 0, s>>>(p, n, chunk, chunks, blocks, mp, pp);
    lane_variances<<<blocks_for(lanes), kThreads, 0, s>>>(pp, chunks, lanes, divisor, root, out.device_data<T>());
  });
  check_launch("var");
  return out;
}

}  // namespace zkynet::kernels::cuda
