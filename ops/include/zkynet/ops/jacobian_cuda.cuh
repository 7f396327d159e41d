// CUDA kernels for Jacobian-based operators (jacobian.h), generated from the same functor the
// CPU runs. Include this in a .cu file and register each functor once:
//
//   struct Softplus {
//     static constexpr std::string_view name = "softplus";
//     template <class S> ZKYNET_HD S operator()(S x) const { using std::exp; using std::log; return log(S(1) + exp(x)); }
//   };
//   ZKYNET_CUDA_ELEMENTWISE(Softplus, 1)      // op::elementwise(Softplus{}, x) now runs on CUDA too
//   ZKYNET_CUDA_JACOBIAN(Dot, 2)              // op::jacobian_op(Dot{}, a, b) likewise
//
// The functor type must be the same one the calling code uses (a named namespace, not an
// anonymous one, when the call is in another file), its operator() marked ZKYNET_HD, and the
// .cu compiled with --expt-relaxed-constexpr (zkynet::ops passes it on to CUDA sources). The
// operators' values equal the CPU's up to rounding: the same scalar code, evaluated per element.
//
// Elementwise functors: one thread per element; the forward is f on values, the backward f on
// dual numbers (N tangents), scaled by the incoming gradient. General functors write a whole
// output per call: the forward runs f in one thread, the backward one thread per input element,
// each with its own dual copy of the inputs (as the CPU's one pass per element, in parallel).
#pragma once

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/ops/jacobian.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>

namespace zkynet::jacobian_cuda {

inline constexpr int kThreads = 256;

inline unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)));
}

inline cudaStream_t stream_of(Device device) { return static_cast<cudaStream_t>(zkynet::cuda::stream(device.index)); }

inline void check_launch(std::string_view op) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw Error(std::string(op) + ": CUDA kernel launch failed: " + cudaGetErrorString(status));
}

// Operand pointers as a kernel argument; step 0 reads a single element for every output.
template <class T, std::size_t N>
struct Operands {
  const T* p[N];
  std::int64_t step[N];
};

// Operand k on `device`, in `dtype`, either one element (read for every output) or contiguous
// over `shape` (broadcasting materialized on the device: a copy there, never through the host).
inline Tensor operand_over(const Tensor& t, const Shape& shape, DType dtype, Device device) {
  Tensor on = t.device() == device ? t : t.to(device);  // only 0-d host numbers reach here
  on = on.to(dtype);
  if (on.numel() == 1) return on.reshape({});
  return on.shape() == shape && on.is_contiguous() ? on : on.expand(shape).contiguous();
}

template <class T, std::size_t N>
Operands<T, N> operands_over(std::array<Tensor, N>& buffers, const std::array<Tensor, N>& in, const Shape& shape,
                             DType dtype, Device device) {
  Operands<T, N> ops{};
  std::int64_t numel = 1;
  for (auto d : shape) numel *= d;
  for (std::size_t k = 0; k < N; ++k) {
    buffers[k] = operand_over(in[k], shape, dtype, device);
    ops.p[k] = buffers[k].template device_data<T>();
    ops.step[k] = buffers[k].numel() == 1 && numel != 1 ? 0 : 1;
  }
  return ops;
}

template <class F, class T, std::size_t N, std::size_t... I>
__device__ T apply_values(const F& f, const Operands<T, N>& in, std::int64_t i, std::index_sequence<I...>) {
  return static_cast<T>(f(in.p[I][i * in.step[I]]...));
}

template <class T, std::size_t N>
__device__ Dual<T, N> seeded(T value, std::size_t k) {
  Dual<T, N> d(value, {});
  d.d[k] = T(1);
  return d;
}

template <class F, class T, std::size_t N, std::size_t... I>
__device__ Dual<T, N> apply_duals(const F& f, const Operands<T, N>& in, std::int64_t i, std::index_sequence<I...>) {
  return Dual<T, N>(f(seeded<T, N>(in.p[I][i * in.step[I]], I)...));
}

template <class F, class T, std::size_t N>
__global__ void elementwise_forward_kernel(F f, Operands<T, N> in, T* out, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = apply_values(f, in, i, std::make_index_sequence<N>{});
  }
}

template <class T, std::size_t N>
struct Outputs {
  T* p[N];  // null where the partial is not needed
};

template <class F, class T, std::size_t N>
__global__ void elementwise_partials_kernel(F f, Operands<T, N> in, const T* grad, Outputs<T, N> out, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const Dual<T, N> y = apply_duals(f, in, i, std::make_index_sequence<N>{});
    for (std::size_t k = 0; k < N; ++k) {
      if (out.p[k] != nullptr) out.p[k][i] = grad[i] * y.d[k];
    }
  }
}

template <class Body>
void with_floating(DType dtype, Body&& body) {
  if (dtype == DType::Float32) return body(float{});
  return body(double{});
}

__device__ inline std::int64_t numel_of_device(const Shape& shape) {
  std::int64_t n = 1;
  for (std::size_t d = 0; d < shape.size(); ++d) n *= shape[d];
  return n;
}

template <class F, std::size_t N>
Tensor elementwise_forward(const F& f, const std::array<Tensor, N>& in, const Shape& shape, DType dtype, Device device) {
  Tensor out = Tensor::empty(shape, dtype, device);
  const std::int64_t n = out.numel();
  if (n == 0) return out;
  with_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::array<Tensor, N> buffers;
    const Operands<T, N> ops = operands_over<T, N>(buffers, in, shape, dtype, device);
    elementwise_forward_kernel<F, T, N><<<blocks_for(n), kThreads, 0, stream_of(device)>>>(f, ops, out.device_data<T>(), n);
  });
  check_launch(F::name);
  return out;
}

template <class F, std::size_t N>
std::array<Tensor, N> elementwise_partials(const F& f, const Tensor& grad_in, const std::array<Tensor, N>& in,
                                           const std::array<bool, N>& needs, DType dtype, Device device) {
  const Shape& shape = grad_in.shape();
  const Tensor grad = grad_in.to(dtype).contiguous();
  std::array<Tensor, N> out;
  for (std::size_t k = 0; k < N; ++k) {
    if (needs[k]) out[k] = Tensor::empty(shape, dtype, device);
  }
  const std::int64_t n = grad.numel();
  if (n == 0) return out;
  with_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::array<Tensor, N> buffers;
    const Operands<T, N> ops = operands_over<T, N>(buffers, in, shape, dtype, device);
    Outputs<T, N> o{};
    for (std::size_t k = 0; k < N; ++k) o.p[k] = needs[k] ? out[k].template device_data<T>() : nullptr;
    elementwise_partials_kernel<F, T, N><<<blocks_for(n), kThreads, 0, stream_of(device)>>>(f, ops, grad.device_data<T>(), o, n);
  });
  check_launch(F::name);
  return out;
}

// ---- general functors --------------------------------------------------------------------

template <class F, class T, std::size_t N>
__global__ void general_forward_kernel(F f, std::array<const T*, N> in, std::array<Shape, N> shapes, T* out) {
  if (blockIdx.x == 0 && threadIdx.x == 0) f(in, shapes, out);
}

// Thread t evaluates f on its own dual copy of every input (`total` elements, operand j at
// offsets[j]) with element first + t of operand k seeded, then contracts the output's tangents
// with the gradient: one column of the vector-Jacobian product.
template <class F, class T, std::size_t N>
__global__ void general_vjp_kernel(F f, std::array<const T*, N> in, std::array<Shape, N> shapes,
                                   std::array<std::int64_t, N> offsets, std::int64_t total, std::size_t k,
                                   std::int64_t first, std::int64_t count, const T* grad, std::int64_t out_numel,
                                   Dual<T, 1>* scratch, T* result) {
  using D = Dual<T, 1>;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= count) return;
  D* mine = scratch + t * (total + out_numel);
  std::array<const D*, N> ptrs;
  for (std::size_t j = 0; j < N; ++j) {
    const std::int64_t size = numel_of_device(shapes[j]);
    for (std::int64_t e = 0; e < size; ++e) mine[offsets[j] + e] = D(in[j][e]);
    ptrs[j] = mine + offsets[j];
  }
  mine[offsets[k] + first + t].d[0] = T(1);
  D* out = mine + total;
  f(ptrs, shapes, out);
  T acc = T(0);
  for (std::int64_t j = 0; j < out_numel; ++j) acc += grad[j] * out[j].d[0];
  result[first + t] = acc;
}

template <class F, std::size_t N>
Tensor general_forward(const F& f, const std::array<Tensor, N>& in, const Shape& out_shape, DType dtype, Device device) {
  Tensor out = Tensor::empty(out_shape, dtype, device);
  with_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::array<Tensor, N> buffers;
    std::array<const T*, N> ptrs;
    std::array<Shape, N> shapes;
    for (std::size_t k = 0; k < N; ++k) {
      buffers[k] = (in[k].device() == device ? in[k] : in[k].to(device)).to(dtype).contiguous();
      ptrs[k] = buffers[k].template device_data<T>();
      shapes[k] = in[k].shape();
    }
    general_forward_kernel<F, T, N><<<1, 1, 0, stream_of(device)>>>(f, ptrs, shapes, out.device_data<T>());
  });
  check_launch(F::name);
  return out;
}

// Scratch per thread: (inputs + outputs) dual numbers; columns go in chunks that keep it under
// 256 MiB.
inline constexpr std::int64_t kScratchBytes = std::int64_t{256} << 20;

template <class F, std::size_t N>
std::array<Tensor, N> general_vjp(const F& f, const Tensor& grad_in, const std::array<Tensor, N>& in,
                                  const std::array<bool, N>& needs, DType dtype, Device device) {
  std::array<Tensor, N> result;
  with_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    std::array<Tensor, N> buffers;
    std::array<const T*, N> ptrs;
    std::array<Shape, N> shapes;
    std::array<std::int64_t, N> offsets;
    std::int64_t total = 0;
    for (std::size_t k = 0; k < N; ++k) {
      buffers[k] = (in[k].device() == device ? in[k] : in[k].to(device)).to(dtype).contiguous();
      ptrs[k] = buffers[k].template device_data<T>();
      shapes[k] = in[k].shape();
      offsets[k] = total;
      total += in[k].numel();
    }
    const Tensor grad = grad_in.to(dtype).contiguous();
    const std::int64_t out_numel = grad.numel();
    const std::int64_t per_thread = (total + out_numel) * static_cast<std::int64_t>(sizeof(Dual<T, 1>));
    const std::int64_t chunk = std::max<std::int64_t>(1, kScratchBytes / std::max<std::int64_t>(per_thread, 1));
    for (std::size_t k = 0; k < N; ++k) {
      if (!needs[k]) continue;
      result[k] = Tensor::empty(in[k].shape(), dtype, device);
      const std::int64_t m = in[k].numel();
      if (m == 0) continue;
      const std::int64_t count_max = std::min(chunk, m);
      const Tensor scratch = Tensor::empty({count_max * (total + out_numel) * 2}, dtype, device);
      auto* duals = reinterpret_cast<Dual<T, 1>*>(scratch.template device_data<T>());
      for (std::int64_t first = 0; first < m; first += count_max) {
        const std::int64_t count = std::min(count_max, m - first);
        general_vjp_kernel<F, T, N><<<blocks_for(count), kThreads, 0, stream_of(device)>>>(
            f, ptrs, shapes, offsets, total, k, first, count, grad.template device_data<T>(), out_numel, duals,
            result[k].template device_data<T>());
        check_launch(F::name);
      }
      if (result[k].device() != in[k].device()) result[k] = result[k].to(in[k].device());  // a 0-d host operand
    }
  });
  return result;
}

template <class F, std::size_t N>
bool register_elementwise() {
  static const detail::ElementwiseDeviceKernels<F, N> kernels{&elementwise_forward<F, N>, &elementwise_partials<F, N>};
  detail::register_device_kernels(typeid(detail::ElementwiseDeviceKernels<F, N>), &kernels);
  return true;
}

template <class F, std::size_t N>
bool register_general() {
  static const detail::GeneralDeviceKernels<F, N> kernels{&general_forward<F, N>, &general_vjp<F, N>};
  detail::register_device_kernels(typeid(detail::GeneralDeviceKernels<F, N>), &kernels);
  return true;
}

}  // namespace zkynet::jacobian_cuda

#define ZKYNET_JACOBIAN_CUDA_CONCAT_(a, b) a##b
#define ZKYNET_JACOBIAN_CUDA_NAME_(line) ZKYNET_JACOBIAN_CUDA_CONCAT_(zkynet_jacobian_cuda_registered_, line)

// Registers the CUDA kernels of elementwise functor F of N operands (at load time; no CUDA call).
#define ZKYNET_CUDA_ELEMENTWISE(F, N)                                                 \
  namespace {                                                                         \
  [[maybe_unused]] const bool ZKYNET_JACOBIAN_CUDA_NAME_(__LINE__) =                  \
      ::zkynet::jacobian_cuda::register_elementwise<F, N>();                          \
  }

// Registers the CUDA kernels of general functor F of N operands.
#define ZKYNET_CUDA_JACOBIAN(F, N)                                                    \
  namespace {                                                                         \
  [[maybe_unused]] const bool ZKYNET_JACOBIAN_CUDA_NAME_(__LINE__) =                  \
      ::zkynet::jacobian_cuda::register_general<F, N>();                              \
  }
