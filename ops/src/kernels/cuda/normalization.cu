// layer_norm and batch_norm on CUDA (../normalization.h says what each computes), own kernels as
// PyTorch's and MLX's. Every per-group sum goes through group_sums(): a group's elements are cut
// into chunks of kChunk, a block sums a chunk (each thread in runs of kSumRun, then a pairwise
// tree in shared memory) into double partials, and a second kernel adds each group's partials in
// order (the contract of ../accumulate.h). The elementwise steps repeat the CPU's arithmetic in
// double, in its order; compiled with --fmad=false (ops/CMakeLists.txt), so the only difference
// from the CPU is the order of the sums.
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

namespace zkynet::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kChunk = kThreads * 32;  // elements of one group per block
constexpr int kSumRun = 64;                     // terms a thread adds before folding them in

unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, std::int64_t{65535} * 32));
}

void check_launch(std::string_view op, const char* step, const NormGroups& l) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw Error(std::string(op) + ": CUDA kernel launch failed (" + step + ", " + std::to_string(l.outer) + " x " +
                std::to_string(l.groups) + " groups x " + std::to_string(l.inner) + "): " + cudaGetErrorString(status));
  }
}

cudaStream_t stream_of(const Tensor& t) { return static_cast<cudaStream_t>(zkynet::detail::cuda_stream(t.device())); }

template <int K>
struct Sums {
  double v[K];
};

// Element j of group g (j < outer * inner) at its flat position.
__device__ std::int64_t element(const NormGroups& l, std::int64_t g, std::int64_t j) {
  return ((j / l.inner) * l.groups + g) * l.inner + j % l.inner;
}

// Block b sums chunk b % chunks of group b / chunks: K sums of term(i, g) into partial[b * K ...].
template <int K, class Term>
__global__ void partial_sums(NormGroups l, std::int64_t chunks, Term term, double* partial) {
  __shared__ double lane[K][kThreads];
  const std::int64_t g = blockIdx.x / chunks;
  const std::int64_t count = l.outer * l.inner;
  const std::int64_t begin = (blockIdx.x % chunks) * kChunk;
  const std::int64_t end = begin + kChunk < count ? begin + kChunk : count;
  double total[K] = {};
  double run[K] = {};
  int terms = 0;
  for (std::int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    const Sums<K> s = term(element(l, g, j), g);
    for (int k = 0; k < K; ++k) run[k] += s.v[k];
    if (++terms == kSumRun) {
      for (int k = 0; k < K; ++k) {
        total[k] += run[k];
        run[k] = 0.0;
      }
      terms = 0;
    }
  }
  for (int k = 0; k < K; ++k) lane[k][threadIdx.x] = total[k] + run[k];
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) {
      for (int k = 0; k < K; ++k) lane[k][threadIdx.x] += lane[k][threadIdx.x + width];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    for (int k = 0; k < K; ++k) partial[static_cast<std::int64_t>(blockIdx.x) * K + k] = lane[k][0];
  }
}

// out[g * K + k] = (the partials of group g, added in order) / divisor.
template <int K>
__global__ void finish_sums(const double* partial, std::int64_t chunks, std::int64_t groups, double divisor,
                            double* out) {
  const std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  for (int k = 0; k < K; ++k) {
    double acc = 0.0;
    for (std::int64_t c = 0; c < chunks; ++c) acc += partial[(g * chunks + c) * K + k];
    out[g * K + k] = acc / divisor;
  }
}

// The K sums of term(i, g) over each group's elements, divided by `divisor`: a float64
// (groups, K) tensor on `device`.
template <int K, class Term>
Tensor group_sums(const NormGroups& l, const Term& term, double divisor, Device device, std::string_view op) {
  Tensor out = Tensor::empty({l.groups, K}, DType::Float64, device);
  if (l.groups == 0) return out;
  const std::int64_t chunks = std::max<std::int64_t>(1, (l.outer * l.inner + kChunk - 1) / kChunk);
  if (l.groups > (std::int64_t{1} << 31) / chunks) {
    throw ShapeError(std::string(op) + ": " + std::to_string(l.groups) + " groups of " +
                     std::to_string(l.outer * l.inner) + " elements are too many for one CUDA launch");
  }
  const Tensor partial = Tensor::empty({l.groups * chunks * K}, DType::Float64, device);
  const auto stream = static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device));
  partial_sums<K><<<static_cast<unsigned>(l.groups * chunks), kThreads, 0, stream>>>(l, chunks, term,
                                                                                     partial.device_data<double>());
  finish_sums<K><<<blocks_for(l.groups), kThreads, 0, stream>>>(partial.device_data<double>(), chunks, l.groups,
                                                                 divisor, out.device_data<double>());
  check_launch(op, "group sums", l);
  return out;
}

// ---- the terms ------------------------------------------------------------------------------

template <class T>
struct ValueTerm {  // x
  const T* x;
  __device__ Sums<1> operator()(std::int64_t i, std::int64_t) const { return {{static_cast<double>(x[i])}}; }
};

template <class T>
struct SquaredDeviationTerm {  // (x - mean)^2
  const T* x;
  const double* mean;
  __device__ Sums<1> operator()(std::int64_t i, std::int64_t g) const {
    const double d = static_cast<double>(x[i]) - mean[g];
    return {{d * d}};
  }
};

// What the backward reads: the gradient, x, the weight (or none) and the statistics.
template <class T>
struct BackwardOperands {
  const T* grad;
  const T* x;
  const T* weight;  // null without one
  const double* mean;
  const double* rstd;
  NormGroups l;
  AffineAxis axis;

  __device__ double xhat(std::int64_t i, std::int64_t g) const {
    return (static_cast<double>(x[i]) - mean[g]) * rstd[g];
  }
  // grad * weight at element i of group g: dxhat.
  __device__ double dxhat(std::int64_t i, std::int64_t g) const {
    const std::int64_t k = axis == AffineAxis::Inner ? i % l.inner : g;
    return static_cast<double>(grad[i]) * (weight ? static_cast<double>(weight[k]) : 1.0);
  }
};

template <class T>
struct DxhatTerm {  // (dxhat, dxhat * xhat)
  BackwardOperands<T> o;
  __device__ Sums<2> operator()(std::int64_t i, std::int64_t g) const {
    const double d = o.dxhat(i, g);
    return {{d, d * o.xhat(i, g)}};
  }
};

// (grad * xhat, grad) for the affine gradients. Along the group axis the sums run over each
// group; along the inner axis over the rows, through the layout {rows, inner, 1}, whose group
// is the inner position: the statistics' group is then the row's.
template <class T>
struct AffineTerm {
  BackwardOperands<T> o;
  __device__ Sums<2> operator()(std::int64_t i, std::int64_t) const {
    const std::int64_t g = (i / o.l.inner) % o.l.groups;
    const double gi = static_cast<double>(o.grad[i]);
    return {{gi * o.xhat(i, g), gi}};
  }
};

// ---- elementwise kernels ----------------------------------------------------------------------

__global__ void inverse_std_kernel(const double* var, double eps, double* rstd, std::int64_t n) {
  const std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g < n) rstd[g] = 1.0 / ::sqrt(var[g] + eps);
}

template <class T>
__global__ void normalize_kernel(const T* x, const T* weight, const T* bias, NormGroups l, AffineAxis axis,
                                 const double* mean, const double* rstd, T* y, std::int64_t total) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t g = (i / l.inner) % l.groups;
    const std::int64_t k = axis == AffineAxis::Inner ? i % l.inner : g;
    double v = (static_cast<double>(x[i]) - mean[g]) * rstd[g];
    if (weight) v *= static_cast<double>(weight[k]);
    if (bias) v += static_cast<double>(bias[k]);
    y[i] = static_cast<T>(v);
  }
}

// dx from the per-group (mean dxhat, mean dxhat * xhat) when batch_stats, else rstd * dxhat.
template <class T>
__global__ void input_grad_kernel(BackwardOperands<T> o, const double* means, bool batch_stats, T* dx,
                                  std::int64_t total) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t g = (i / o.l.inner) % o.l.groups;
    const double r = o.rstd[g];
    const double d = o.dxhat(i, g);
    dx[i] = static_cast<T>(batch_stats ? r * (d - means[2 * g] - o.xhat(i, g) * means[2 * g + 1]) : r * d);
  }
}

// dweight[s] = sums[s][0], dbias[s] = sums[s][1], rounded to T (either may be null).
template <class T>
__global__ void affine_grads_kernel(const double* sums, T* dw, T* db, std::int64_t n) {
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= n) return;
  if (dw) dw[s] = static_cast<T>(sums[2 * s]);
  if (db) db[s] = static_cast<T>(sums[2 * s + 1]);
}

// t = (1 - momentum) t + momentum v (times n / (n - 1) when unbias), t 1-d of any stride.
template <class T>
__global__ void blend_kernel(T* t, std::int64_t stride, const double* v, bool unbias, double n, double momentum,
                             std::int64_t size) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= size) return;
  const double value = unbias ? v[c] * n / (n - 1.0) : v[c];
  T& r = t[c * stride];
  r = static_cast<T>((1.0 - momentum) * static_cast<double>(r) + momentum * value);
}

const double* stats_data(const Tensor& t) { return t.device_data<double>(); }

}  // namespace

Moments moments(const Tensor& x_in, const NormGroups& l, std::string_view op) {
  const Tensor x = x_in.contiguous();
  const Device device = x.device();
  const double n = static_cast<double>(l.count());
  Moments out;
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.device_data<T>();
    out.mean = group_sums<1>(l, ValueTerm<T>{p}, n, device, op).reshape({l.groups});
    out.var = group_sums<1>(l, SquaredDeviationTerm<T>{p, stats_data(out.mean)}, n, device, op).reshape({l.groups});
  });
  return out;
}

Tensor inverse_std(const Tensor& var_in, double eps, std::string_view op) {
  const Tensor var = var_in.to(DType::Float64).contiguous();
  Tensor out = Tensor::empty(var.shape(), DType::Float64, var.device());
  const std::int64_t n = var.numel();
  if (n == 0) return out;
  inverse_std_kernel<<<blocks_for(n), kThreads, 0, stream_of(var)>>>(stats_data(var), eps, out.device_data<double>(), n);
  check_launch(op, "inverse_std", NormGroups{1, n, 1});
  return out;
}

Tensor normalize(const Tensor& x_in, const Tensor& weight, const Tensor& bias, const NormGroups& l, AffineAxis axis,
                 const Tensor& mean_in, const Tensor& rstd_in, std::string_view op) {
  const Tensor x = x_in.contiguous();
  const Tensor mean = mean_in.contiguous();
  const Tensor rstd = rstd_in.contiguous();
  const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const std::int64_t total = x.numel();
  if (total == 0) return out;
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    normalize_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(x)>>>(
        x.device_data<T>(), w.defined() ? w.device_data<T>() : nullptr, b.defined() ? b.device_data<T>() : nullptr, l,
        axis, stats_data(mean), stats_data(rstd), out.device_data<T>(), total);
  });
  check_launch(op, "normalize", l);
  return out;
}

NormGrads normalize_backward(const Tensor& grad_in, const Tensor& x_in, const Tensor& weight, const NormGroups& l,
                             AffineAxis axis, const Tensor& mean_in, const Tensor& rstd_in, bool batch_stats,
                             std::array<bool, 3> needs, std::string_view op) {
  const Tensor grad = grad_in.contiguous();
  const Tensor x = x_in.contiguous();
  const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  const Tensor mean = mean_in.contiguous();
  const Tensor rstd = rstd_in.contiguous();
  const Device device = x.device();
  const std::int64_t affine_size = axis == AffineAxis::Inner ? l.inner : l.groups;
  NormGrads out;
  if (needs[0]) out.input = Tensor::empty(x.shape(), x.dtype(), device);
  if (needs[1]) out.weight = Tensor::empty({affine_size}, x.dtype(), device);
  if (needs[2]) out.bias = Tensor::empty({affine_size}, x.dtype(), device);
  const std::int64_t total = x.numel();
  const cudaStream_t stream = stream_of(x);
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const BackwardOperands<T> o{grad.device_data<T>(), x.device_data<T>(), w.defined() ? w.device_data<T>() : nullptr,
                                stats_data(mean),      stats_data(rstd),   l,
                                axis};
    if (needs[0] && total > 0) {
      // (mean dxhat, mean dxhat * xhat) per group, only under batch statistics.
      const Tensor means = batch_stats ? group_sums<2>(l, DxhatTerm<T>{o}, static_cast<double>(l.count()), device, op)
                                       : Tensor();
      input_grad_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
          o, batch_stats ? stats_data(means) : nullptr, batch_stats, out.input.template device_data<T>(), total);
      check_launch(op, "input gradient", l);
    }
    if (!needs[1] && !needs[2]) return;
    T* dw = needs[1] ? out.weight.template device_data<T>() : nullptr;
    T* db = needs[2] ? out.bias.template device_data<T>() : nullptr;
    if (affine_size == 0) return;
    const NormGroups over = axis == AffineAxis::Group ? l : NormGroups{l.outer * l.groups, l.inner, 1};
    const Tensor sums = group_sums<2>(over, AffineTerm<T>{o}, 1.0, device, op);
    affine_grads_kernel<T><<<blocks_for(affine_size), kThreads, 0, stream>>>(stats_data(sums), dw, db, affine_size);
    check_launch(op, "weight and bias gradients", l);
  });
  return out;
}

void update_running_stats(const Tensor& running_mean, const Tensor& running_var, const Moments& batch,
                          std::int64_t count, double momentum, std::string_view op) {
  const Tensor mean = batch.mean.contiguous();
  const Tensor var = batch.var.contiguous();
  const std::int64_t size = var.numel();
  if (size == 0) return;
  const cudaStream_t stream = stream_of(mean);
  const double n = static_cast<double>(count);
  const auto blend = [&](const Tensor& t, const Tensor& v, bool unbias) {
    dispatch_floating(t.dtype(), [&](auto zero) {
      using T = decltype(zero);
      blend_kernel<T><<<blocks_for(size), kThreads, 0, stream>>>(t.device_data<T>(), t.strides()[0], stats_data(v),
                                                                 unbias, n, momentum, size);
    });
  };
  blend(running_mean, mean, false);
  blend(running_var, var, true);
  check_launch(op, "running statistics", NormGroups{1, size, 1});
}

}  // namespace zkynet::kernels::cuda
