// Softmax, log_softmax, logsumexp and the losses on CUDA (../softmax.h says what each computes).
// A lane (the elements along the axis for one position of the others) goes to a team of
// threads: a warp when contiguous and short, a block when contiguous and long, one thread when
// its elements lie 32 or more apart (neighbouring threads then read neighbouring lanes, so the
// loads coalesce). Each lane is shifted as on the CPU (softmax.cpp): by its maximum, taken as
// std::max takes it (a NaN never becomes the maximum; it poisons the sum instead), logsumexp's
// by 0 when that is infinite. Exp-sums and dot products accumulate in double: each thread adds
// its terms in runs of kSumRun, then the team's partials meet in a tree (accumulate.h's
// contract), so a lane's result may differ from the CPU's sequential sum in the last bits.
#include "../softmax.h"
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>
#include <zkynet/internal/strided_index.h>
#include <zkynet/ops/kernels.h>

#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <limits>
#include <string>

namespace zkynet::kernels::cuda {
namespace {

using zkynet::detail::layout_over;
using zkynet::detail::StridedLayout;
using kernels::detail::Lanes;
using kernels::detail::lanes_along;

constexpr int kThreads = 256;  // per block, whatever the team
constexpr int kWarp = 32;
// Contiguous lanes up to this long go one to a warp, longer ones one to a block.
constexpr std::int64_t kWarpLaneMax = 1024;
constexpr int kSumRun = 256;  // terms a thread adds before folding them into its total

struct Add {
  template <class V> __device__ V operator()(V a, V b) const { return a + b; }
};
// std::max's order: b only when a < b, so a NaN never wins.
struct Max {
  template <class V> __device__ V operator()(V a, V b) const { return a < b ? b : a; }
};

// The kSize threads that share one lane: 1 (a thread), kWarp (a warp) or kThreads (the block).
template <int S>
struct Team {
  static constexpr int kSize = S;
  static constexpr int kLanesPerBlock = kThreads / S;

  __device__ static std::int64_t lane() {
    return static_cast<std::int64_t>(blockIdx.x) * kLanesPerBlock + threadIdx.x / S;
  }
  __device__ static int rank() { return S == 1 ? 0 : static_cast<int>(threadIdx.x % S); }

  // op over the team's values, the result in every thread of the team.
  template <class V, class Op>
  __device__ static V reduce(V v, Op op) {
    if constexpr (S > 1) {
      for (int offset = (S < kWarp ? S : kWarp) / 2; offset > 0; offset /= 2) {
        v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
      }
    }
    if constexpr (S > kWarp) {
      __shared__ V partial[S / kWarp];
      __syncthreads();  // the previous reduction's readers are done with `partial`
      if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = v;
      __syncthreads();
      v = partial[0];
      for (int w = 1; w < S / kWarp; ++w) v = op(v, partial[w]);
    }
    return v;
  }
};

// The lane's maximum (n elements `stride` apart), -inf for an empty lane.
template <class Team, class T>
__device__ T team_max(const T* p, std::int64_t n, std::int64_t stride) {
  T m = -std::numeric_limits<T>::infinity();
  for (std::int64_t j = Team::rank(); j < n; j += Team::kSize) m = Max{}(m, p[j * stride]);
  return Team::reduce(m, Max{});
}

// term(0) + ... + term(n - 1) in double, blocked per thread, then a tree across the team.
template <class Team, class Term>
__device__ double team_sum(std::int64_t n, const Term& term) {
  double total = 0.0;
  double run = 0.0;
  int count = 0;
  for (std::int64_t j = Team::rank(); j < n; j += Team::kSize) {
    run += term(j);
    if (++count == kSumRun) {
      total += run;
      run = 0.0;
      count = 0;
    }
  }
  return Team::reduce(total + run, Add{});
}

// sum_j exp(p[j] - shift) in double, as team_sum adds.
template <class Team, class T>
__device__ double team_sum_exp(const T* p, std::int64_t n, std::int64_t stride, T shift) {
  return team_sum<Team>(n, [&](std::int64_t j) { return ::exp(static_cast<double>(p[j * stride] - shift)); });
}

// ---- one functor per lane operation: run<Team>(k, start, stride) for lane k, which starts at
// element `start` of its tensor with its elements `stride` apart ------------------------------

template <class T>
struct SoftmaxLane {
  const T* x;
  T* y;
  std::int64_t n;
  template <class Team>
  __device__ void run(std::int64_t, std::int64_t start, std::int64_t stride) const {
    const T* p = x + start;
    const T shift = team_max<Team>(p, n, stride);
    const double total = team_sum_exp<Team>(p, n, stride, shift);
    for (std::int64_t j = Team::rank(); j < n; j += Team::kSize) {
      // Rounded to T before the division, as the CPU stores exp first.
      const T e = static_cast<T>(::exp(static_cast<double>(p[j * stride] - shift)));
      y[start + j * stride] = static_cast<T>(static_cast<double>(e) / total);
    }
  }
};

template <class T>
struct SoftmaxBackwardLane {
  const T* g;
  const T* y;
  T* d;
  std::int64_t n;
  template <class Team>
  __device__ void run(std::int64_t, std::int64_t start, std::int64_t stride) const {
    const T* gp = g + start;
    const T* yp = y + start;
    const double dot = team_sum<Team>(
        n, [&](std::int64_t j) { return static_cast<double>(gp[j * stride]) * static_cast<double>(yp[j * stride]); });
    for (std::int64_t j = Team::rank(); j < n; j += Team::kSize) {
      const std::int64_t i = j * stride;
      d[start + i] = static_cast<T>(static_cast<double>(yp[i]) * (static_cast<double>(gp[i]) - dot));
    }
  }
};

template <class T>
struct LogSoftmaxLane {
  const T* x;
  T* y;
  std::int64_t n;
  template <class Team>
  __device__ void run(std::int64_t, std::int64_t start, std::int64_t stride) const {
    const T* p = x + start;
    const T shift = team_max<Team>(p, n, stride);
    const double log_total = ::log(team_sum_exp<Team>(p, n, stride, shift));
    for (std::int64_t j = Team::rank(); j < n; j += Team::kSize) {
      y[start + j * stride] = static_cast<T>(static_cast<double>(p[j * stride] - shift) - log_total);
    }
  }
};

template <class T>
struct LogSoftmaxBackwardLane {
  const T* g;
  const T* y;
  T* d;
  std::int64_t n;
  template <class Team>
  __device__ void run(std::int64_t, std::int64_t start, std::int64_t stride) const {
    const T* gp = g + start;
    const T* yp = y + start;
    const double total = team_sum<Team>(n, [&](std::int64_t j) { return static_cast<double>(gp[j * stride]); });
    for (std::int64_t j = Team::rank(); j < n; j += Team::kSize) {
      const std::int64_t i = j * stride;
      d[start + i] = static_cast<T>(static_cast<double>(gp[i]) - ::exp(static_cast<double>(yp[i])) * total);
    }
  }
};

template <class T>
struct LogsumexpLane {
  const T* x;
  T* out;
  std::int64_t n;
  template <class Team>
  __device__ void run(std::int64_t k, std::int64_t start, std::int64_t stride) const {
    const T* p = x + start;
    const T m = team_max<Team>(p, n, stride);
    const T shift = ::isfinite(m) ? m : T(0);
    const double total = team_sum_exp<Team>(p, n, stride, shift);
    if (Team::rank() == 0) out[k] = static_cast<T>(static_cast<double>(shift) + ::log(total));
  }
};

template <class T>
struct CrossEntropyLane {
  const T* x;
  const std::int64_t* target;
  T* out;
  std::int64_t n;
  template <class Team>
  __device__ void run(std::int64_t k, std::int64_t start, std::int64_t stride) const {
    const T* p = x + start;
    const T shift = team_max<Team>(p, n, stride);  // +inf or all -inf: NaN, as torch's log_softmax
    const double total = team_sum_exp<Team>(p, n, stride, shift);
    if (Team::rank() == 0) out[k] = static_cast<T>(::log(total) - static_cast<double>(p[target[k] * stride] - shift));
  }
};

// Sample k's gradient: grad[k], or the shared 0-d grad (over `count` when `mean`, in T).
template <class T>
__device__ T sample_grad(const T* g, std::int64_t k, bool shared, std::int64_t count, bool mean) {
  if (!shared) return g[k];
  return mean ? static_cast<T>(g[0] / static_cast<T>(count)) : g[0];
}

template <class T>
struct CrossEntropyBackwardLane {
  const T* x;
  const std::int64_t* target;
  const T* g;
  T* d;
  std::int64_t n;
  std::int64_t rows;
  bool shared;
  bool mean;
  template <class Team>
  __device__ void run(std::int64_t k, std::int64_t start, std::int64_t stride) const {
    const T* p = x + start;
    const T shift = team_max<Team>(p, n, stride);
    const double total = team_sum_exp<Team>(p, n, stride, shift);
    const T gk = sample_grad(g, k, shared, rows, mean);
    const double gn = static_cast<double>(gk);
    const std::int64_t t = target[k];
    for (std::int64_t j = Team::rank(); j < n; j += Team::kSize) {
      T v = static_cast<T>(gn * ::exp(static_cast<double>(p[j * stride] - shift)) / total);
      if (j == t) v = v - gk;
      d[start + j * stride] = v;
    }
  }
};

template <class Team, class Op>
__global__ void lanes_kernel(Op op, std::int64_t lanes, std::int64_t n, std::int64_t inner) {
  const std::int64_t k = Team::lane();
  if (k >= lanes) return;  // whole teams only: a block team has exactly one lane
  op.template run<Team>(k, (k / inner) * n * inner + k % inner, inner);
}

// ---- per-row and elementwise kernels ------------------------------------------------------

template <class T>
__global__ void nll_kernel(const T* x, const std::int64_t* target, T* out, std::int64_t rows, std::int64_t c) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < rows) out[k] = -x[k * c + target[k]];
}

template <class T>
__global__ void nll_backward_kernel(const std::int64_t* target, const T* g, T* d, std::int64_t rows, std::int64_t c,
                                    bool shared, bool mean) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < rows) d[k * c + target[k]] = -sample_grad(g, k, shared, rows, mean);
}

template <class T, std::size_t N>
struct Operands {
  const T* p[N];
  StridedLayout layout[N];
};

template <class T, std::size_t N, class F>
__global__ void map_kernel(T* out, Operands<T, N> in, std::int64_t count, F f) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (N == 2) {
      out[i] = f(in.p[0][in.layout[0].at(i)], in.p[1][in.layout[1].at(i)]);
    } else {
      out[i] = f(in.p[0][in.layout[0].at(i)], in.p[1][in.layout[1].at(i)], in.p[2][in.layout[2].at(i)]);
    }
  }
}

// ---- host side ----------------------------------------------------------------------------

cudaStream_t stream(Device device) { return static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device)); }

void check_launch(std::string_view op) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw Error(std::string(op) + ": CUDA kernel launch failed: " + cudaGetErrorString(status));
  }
}

unsigned blocks_for(std::int64_t threads, std::string_view op) {
  const std::int64_t blocks = (threads + kThreads - 1) / kThreads;
  if (blocks > INT_MAX) throw ShapeError(std::string(op) + ": too many lanes for one CUDA grid");
  return static_cast<unsigned>(blocks);
}

// Grid-stride loops need no more blocks than the device holds at once.
unsigned strided_blocks(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535 * 8));
}

// An operand on `device` in `dtype`, contiguous: 0-d host numbers travel (8 bytes).
Tensor operand(const Tensor& t, Device device, DType dtype) {
  const Tensor on = t.device() == device ? t : t.to(device);
  return on.to(dtype).contiguous();
}

// body(T{}) for a floating dtype (the operators checked it).
template <class Body>
void with_floating(DType dtype, std::string_view op, Body&& body) {
  if (dtype == DType::Float32) return body(float{});
  if (dtype == DType::Float64) return body(double{});
  throw TypeError(std::string(op) + ": needs a floating-point tensor on CUDA, got int64");
}

template <class Team, class Op>
void launch_team(const Op& op, const Lanes& l, Device device, std::string_view name) {
  const std::int64_t blocks = (l.count() + Team::kLanesPerBlock - 1) / Team::kLanesPerBlock;
  if (blocks > INT_MAX) throw ShapeError(std::string(name) + ": too many lanes for one CUDA grid");
  lanes_kernel<Team><<<static_cast<unsigned>(blocks), kThreads, 0, stream(device)>>>(op, l.count(), l.n, l.inner);
}

// One lane operation over every lane of `l`, each lane to the team that suits its layout.
template <class Op>
void launch_lanes(const Op& op, const Lanes& l, Device device, std::string_view name) {
  if (l.count() == 0) return;
  if (l.inner >= kWarp) {
    launch_team<Team<1>>(op, l, device, name);
  } else if (l.n <= kWarpLaneMax) {
    launch_team<Team<kWarp>>(op, l, device, name);
  } else {
    launch_team<Team<kThreads>>(op, l, device, name);
  }
  check_launch(name);
}

}  // namespace

Tensor softmax(const Tensor& x, std::int64_t axis) {
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  with_floating(x.dtype(), "softmax", [&](auto zero) {
    using T = decltype(zero);
    const Lanes l = lanes_along(x.shape(), axis);
    launch_lanes(SoftmaxLane<T>{in.device_data<T>(), out.device_data<T>(), l.n}, l, x.device(), "softmax");
  });
  return out;
}

Tensor softmax_backward(const Tensor& grad, const Tensor& y_in, std::int64_t axis) {
  const Tensor g = operand(grad, y_in.device(), y_in.dtype());
  const Tensor y = y_in.contiguous();
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  with_floating(y.dtype(), "softmax", [&](auto zero) {
    using T = decltype(zero);
    const Lanes l = lanes_along(y.shape(), axis);
    launch_lanes(SoftmaxBackwardLane<T>{g.device_data<T>(), y.device_data<T>(), dx.device_data<T>(), l.n}, l,
                 y.device(), "softmax");
  });
  return dx;
}

Tensor log_softmax(const Tensor& x, std::int64_t axis) {
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  with_floating(x.dtype(), "log_softmax", [&](auto zero) {
    using T = decltype(zero);
    const Lanes l = lanes_along(x.shape(), axis);
    launch_lanes(LogSoftmaxLane<T>{in.device_data<T>(), out.device_data<T>(), l.n}, l, x.device(), "log_softmax");
  });
  return out;
}

Tensor log_softmax_backward(const Tensor& grad, const Tensor& y_in, std::int64_t axis) {
  const Tensor g = operand(grad, y_in.device(), y_in.dtype());
  const Tensor y = y_in.contiguous();
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  with_floating(y.dtype(), "log_softmax", [&](auto zero) {
    using T = decltype(zero);
    const Lanes l = lanes_along(y.shape(), axis);
    launch_lanes(LogSoftmaxBackwardLane<T>{g.device_data<T>(), y.device_data<T>(), dx.device_data<T>(), l.n}, l,
                 y.device(), "log_softmax");
  });
  return dx;
}

Tensor logsumexp_last(const Tensor& x) {
  const Shape& s = x.shape();
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(Shape(s.begin(), s.end() - 1), x.dtype(), x.device());
  with_floating(x.dtype(), "logsumexp", [&](auto zero) {
    using T = decltype(zero);
    const Lanes l{out.numel(), s.back(), 1};
    launch_lanes(LogsumexpLane<T>{in.device_data<T>(), out.device_data<T>(), l.n}, l, x.device(), "logsumexp");
  });
  return out;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target) {
  const Tensor x = logits.contiguous();
  const Tensor t = operand(target, logits.device(), DType::Int64);
  const Lanes l{logits.shape()[0], logits.shape()[1], 1};
  Tensor per = Tensor::empty({l.outer}, logits.dtype(), logits.device());
  with_floating(logits.dtype(), "cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    launch_lanes(CrossEntropyLane<T>{x.device_data<T>(), t.device_data<std::int64_t>(), per.device_data<T>(), l.n}, l,
                 logits.device(), "cross_entropy");
  });
  return per;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& grad, bool mean) {
  const Tensor x = logits.contiguous();
  const Tensor t = operand(target, logits.device(), DType::Int64);
  const Tensor g = operand(grad, logits.device(), logits.dtype());
  const Lanes l{logits.shape()[0], logits.shape()[1], 1};
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  with_floating(logits.dtype(), "cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    launch_lanes(CrossEntropyBackwardLane<T>{x.device_data<T>(), t.device_data<std::int64_t>(), g.device_data<T>(),
                                             dx.device_data<T>(), l.n, l.outer, grad.dim() == 0, mean},
                 l, logits.device(), "cross_entropy");
  });
  return dx;
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target) {
  const std::int64_t rows = log_probs.shape()[0];
  const Tensor x = log_probs.contiguous();
  const Tensor t = operand(target, log_probs.device(), DType::Int64);
  Tensor per = Tensor::empty({rows}, log_probs.dtype(), log_probs.device());
  if (rows == 0) return per;
  with_floating(log_probs.dtype(), "nll_loss", [&](auto zero) {
    using T = decltype(zero);
    nll_kernel<<<blocks_for(rows, "nll_loss"), kThreads, 0, stream(log_probs.device())>>>(
        x.device_data<T>(), t.device_data<std::int64_t>(), per.device_data<T>(), rows, log_probs.shape()[1]);
  });
  check_launch("nll_loss");
  return per;
}

Tensor nll_loss_backward(const Tensor& log_probs, const Tensor& target, const Tensor& grad, bool mean) {
  const std::int64_t rows = log_probs.shape()[0];
  const Tensor t = operand(target, log_probs.device(), DType::Int64);
  const Tensor g = operand(grad, log_probs.device(), log_probs.dtype());
  Tensor dx = Tensor::zeros(log_probs.shape(), log_probs.dtype(), log_probs.device());
  if (rows == 0) return dx;
  with_floating(log_probs.dtype(), "nll_loss", [&](auto zero) {
    using T = decltype(zero);
    nll_backward_kernel<<<blocks_for(rows, "nll_loss"), kThreads, 0, stream(log_probs.device())>>>(
        t.device_data<std::int64_t>(), g.device_data<T>(), dx.device_data<T>(), rows, log_probs.shape()[1],
        grad.dim() == 0, mean);
  });
  check_launch("nll_loss");
  return dx;
}

template <class F, std::size_t N>
Tensor map_loss(const std::array<Tensor, N>& operands, DType dtype, Device device, const F& f, std::string_view op) {
  Shape shape = operands[0].shape();
  for (std::size_t k = 1; k < N; ++k) shape = broadcast_shapes(shape, operands[k].shape(), op);
  std::array<Tensor, N> on;
  for (std::size_t k = 0; k < N; ++k) {
    const Tensor moved = operands[k].device() == device ? operands[k] : operands[k].to(device);
    on[k] = moved.to(dtype);
  }
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() == 0) return out;
  with_floating(dtype, op, [&](auto zero) {
    using T = decltype(zero);
    Operands<T, N> in;
    for (std::size_t k = 0; k < N; ++k) {
      in.p[k] = on[k].template device_data<T>();
      in.layout[k] = layout_over(on[k], shape);
    }
    map_kernel<<<strided_blocks(out.numel()), kThreads, 0, stream(device)>>>(out.device_data<T>(), in, out.numel(), f);
  });
  check_launch(op);
  return out;
}

ZKYNET_LOSS_FUNCTORS(ZKYNET_INSTANTIATE_MAP_LOSS)

}  // namespace zkynet::kernels::cuda
