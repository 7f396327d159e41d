// rnn, lstm and gru on CUDA (../recurrent.h says what they compute): cuBLAS GEMMs for the
// projections and fused kernels of our own for the cells, in the CPU's layout and arithmetic
// (../recurrent.cpp): the same packed weight matrix (K, W) (K = I + H inputs [x | h], W gate
// columns: lstm i f g o, rnn one block, gru r z n_x n_h), the same RecurrentSaved, each cell's
// formulas in the CPU's order, float32's exp and tanh the CPU's own Cephes-style ones (the
// file is compiled with --fmad=false, ops/CMakeLists.txt). Only the GEMMs' sums round otherwise.
//
// Why not cuDNN's RNN API (cudnnRNNForward, cudnnRNNBackwardData_v8/Weights_v8): it keeps the
// weights in its own packed buffer and its own reserve space, so every call would copy the
// parameters in and the gradients out, and its gate arithmetic rounds otherwise than the CPU
// loops. These kernels repeat the CPU's step for step, which keeps the two devices' numbers
// checkable against each other (tests/cuda) and is simpler to get right without a GPU at hand;
// at small hidden sizes a step is one GEMM and one launch either way.
//
// Forward: the input projections of all steps in one GEMM up front, (N, I) x (I, W) into the
// gates (N = T B rows, time-major), then per step the hidden projection (B, H) x (H, W) added
// to step t's rows and one cell kernel (one thread per (b, j), j < H), which writes h_t into
// the output and into the next step's [x | h] row. Backward: per step one cell kernel (the
// gradients of the gate pre-activations of step t, the LSTM's cell gradient carried in place)
// and one GEMM for the gradient reaching h_{t-1}; then the input and weight gradients of all
// steps in one GEMM each, and the bias gradients as cuda::sum (double accumulation).
#include "api.h"

#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>

namespace zkynet::kernels::cuda {
namespace {

using Cell = RecurrentCell;

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, std::int64_t{65535} * 32));
}

cudaStream_t stream_of(Device device) { return static_cast<cudaStream_t>(zkynet::detail::cuda_stream(device)); }

// "lstm on cuda:0: x (T, B, I) float32, hidden H": the start of every message, so that an error
// on the GPU names the call that failed.
// NOTE: built by appending (GCC 12's -Wrestrict false positive under nvcc, see conv.cu).
std::string context(Cell cell, const Tensor& x, std::int64_t hidden) {
  std::string s(cell_name(cell));
  s += " on ";
  s += x.device().str();
  s += ": x ";
  s += shape_str(x.shape());
  s += " ";
  s += dtype_name(x.dtype());
  s += ", hidden size ";
  s += std::to_string(hidden);
  return s;
}

void check_launch(const std::string& where, const char* step) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    std::string s = where;
    s += ": CUDA kernel launch failed (";
    s += step;
    s += "): ";
    s += cudaGetErrorString(status);
    throw Error(s);
  }
}

void check_cuda(cudaError_t status, const std::string& where, const char* step) {
  if (status != cudaSuccess) {
    std::string s = where;
    s += ": ";
    s += step;
    s += " failed: ";
    s += cudaGetErrorString(status);
    throw Error(s);
  }
}

// C = op(A) op(B) (+ beta C), row-major, through linalg.cu's cuBLAS handle (TF32 only when
// zkynet::cuda::allow_tf32()); sizes checked to fit cuBLAS's int, errors naming the call.
template <class S>
void gemm_step(const std::string& where, const char* step, Device device, bool ta, bool tb, std::int64_t m,
               std::int64_t n, std::int64_t k, const S* a, std::int64_t lda, const S* b, std::int64_t ldb, S* c,
               std::int64_t ldc, S beta) {
  if (m == 0 || n == 0) return;
  for (const std::int64_t v : {m, n, k, lda, ldb, ldc}) {
    if (v > INT_MAX) {
      std::string s = where;
      s += ": ";
      s += step;
      s += ": a GEMM of ";
      s += std::to_string(m);
      s += " x ";
      s += std::to_string(k);
      s += " by ";
      s += std::to_string(k);
      s += " x ";
      s += std::to_string(n);
      s += " exceeds cuBLAS's 32-bit sizes";
      throw ShapeError(s);
    }
  }
  if (k == 0) {  // an empty sum (input size 0): C = 0, C contiguous (only the input projections)
    if (beta == S(0)) {
      check_cuda(cudaMemsetAsync(c, 0, static_cast<std::size_t>(m * ldc) * sizeof(S), stream_of(device)), where, step);
    }
    return;
  }
  try {
    gemm<S>(device, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, beta);
  } catch (const Error& e) {
    std::string s = where;
    s += ": ";
    s += step;
    s += " (";
    s += std::to_string(m);
    s += " x ";
    s += std::to_string(k);
    s += " by ";
    s += std::to_string(k);
    s += " x ";
    s += std::to_string(n);
    s += "): ";
    s += e.what();
    throw Error(s);
  }
}

// ---- elementwise math: the CPU's (recurrent.cpp), line for line ------------------------------
// float: its Cephes-style exp and tanh (about 1 ulp), so that equal inputs give equal bits on
// both devices; double: CUDA's exp and tanh (the CPU's are the C library's).

__device__ inline float exp_f(float x) {
  x = x < -87.3f ? -87.3f : x;  // std::max(x, -87.3f): NaN stays NaN
  x = 88.3f < x ? 88.3f : x;    // std::min(x, 88.3f)
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  const unsigned scale_bits = (__float_as_uint(shifted) - 0x4B400000u + 127u) << 23;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  return y * __uint_as_float(scale_bits);
}

__device__ inline float sigmoid_s(float x) { return 1.0f / (1.0f + exp_f(-x)); }
__device__ inline double sigmoid_s(double x) { return 1.0 / (1.0 + ::exp(-x)); }

__device__ inline float tanh_s(float x) {
  const float ax = ::fabsf(x);
  const float z = x * x;
  const float small =
      ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
       3.33332819422e-1f) * z * x + x;
  const float e = exp_f(2.0f * ax);
  const float big = ::copysignf(1.0f - 2.0f / (e + 1.0f), x);
  return ax < 0.625f ? small : big;
}
__device__ inline double tanh_s(double x) { return ::tanh(x); }

// ---- packing (recurrent.cpp's gate_blocks, source_rows, pack_weights, pack_bias) ---------------

std::int64_t gate_blocks(Cell cell) { return cell == Cell::Gru ? 4 : gate_count(cell); }

// The torch weight rows feeding packed gate column j: row of w_ih (or -1), row of w_hh (or -1).
__device__ inline std::int64_t source_ih(Cell cell, std::int64_t j, std::int64_t H) {
  return cell != Cell::Gru || j < 3 * H ? j : -1;
}
__device__ inline std::int64_t source_hh(Cell cell, std::int64_t j, std::int64_t H) {
  return cell != Cell::Gru || j < 2 * H ? j : j < 3 * H ? -1 : j - H;
}

// wt (K, W): column j holds w_ih's and w_hh's source rows (zeros where there is none).
template <class S>
__global__ void pack_weights_kernel(Cell cell, const S* wi, const S* wh, std::int64_t I, std::int64_t H,
                                    std::int64_t W, S* wt) {
  const std::int64_t K = I + H, total = K * W;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t k = e / W, j = e % W;
    S v = S(0);
    if (k < I) {
      const std::int64_t ri = source_ih(cell, j, H);
      if (ri >= 0) v = wi[ri * I + k];
    } else {
      const std::int64_t rh = source_hh(cell, j, H);
      if (rh >= 0) v = wh[rh * H + (k - I)];
    }
    wt[e] = v;
  }
}

// bias (W): b_ih + b_hh of the source rows, or one of them.
template <class S>
__global__ void pack_bias_kernel(Cell cell, const S* bi, const S* bh, std::int64_t H, std::int64_t W, S* out) {
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= W) return;
  const std::int64_t ri = source_ih(cell, j, H), rh = source_hh(cell, j, H);
  out[j] = (ri >= 0 ? bi[ri] : S(0)) + (rh >= 0 ? bh[rh] : S(0));
}

// xh (N, K): x in the first I columns of every row, h0 in the last H of the first B rows (the
// other rows' h part is written by the step before them).
template <class S>
__global__ void fill_xh_kernel(const S* x, const S* h0, std::int64_t N, std::int64_t B, std::int64_t I,
                               std::int64_t H, S* xh) {
  const std::int64_t K = I + H, total = N * K;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = e / K, k = e % K;
    if (k < I) {
      xh[e] = x[r * I + k];
    } else if (r < B) {
      xh[e] = h0[r * H + (k - I)];
    }
  }
}

// What one step's kernels read and write; pointers already offset to step t where marked.
template <class S>
struct Step {
  Cell cell;
  std::int64_t B, H, W, K, I;
  S* g;              // step t's gate rows (B, W): pre-activations in (minus bias), activations out
  const S* bias;     // (W)
  const S* h_prev;   // (B, H) with row stride h_prev_stride: h0 or h_{t-1}
  std::int64_t h_prev_stride;
  const S* c_prev;   // lstm: c0 or c_{t-1}, (B, H)
  S* c;              // lstm: c_t, (B, H)
  S* tc;             // lstm: tanh(c_t), (B, H)
  S* h;              // h_t, (B, H), in the output
  S* xh_next;        // step t + 1's xh rows (row stride K, h at column I), or null at the last step
  S* c_last;         // lstm at the last step: the output's c_T row, else null
};

template <class S>
__global__ void cell_forward_kernel(Step<S> s) {
  const std::int64_t total = s.B * s.H, H = s.H;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = e / H, j = e % H;
    S* g = s.g + b * s.W;
    S hv;
    if (s.cell == Cell::Lstm) {
      const S i = sigmoid_s(g[j] + s.bias[j]);
      const S f = sigmoid_s(g[H + j] + s.bias[H + j]);
      const S n = tanh_s(g[2 * H + j] + s.bias[2 * H + j]);
      const S o = sigmoid_s(g[3 * H + j] + s.bias[3 * H + j]);
      g[j] = i;
      g[H + j] = f;
      g[2 * H + j] = n;
      g[3 * H + j] = o;
      const S c = f * s.c_prev[e] + i * n;
      const S th = tanh_s(c);
      s.c[e] = c;
      s.tc[e] = th;
      hv = o * th;
      if (s.c_last) s.c_last[e] = c;
    } else if (s.cell == Cell::Gru) {
      const S r = sigmoid_s(g[j] + s.bias[j]);
      const S u = sigmoid_s(g[H + j] + s.bias[H + j]);
      const S hn = g[3 * H + j] + s.bias[3 * H + j];
      const S n = tanh_s((g[2 * H + j] + s.bias[2 * H + j]) + r * hn);
      g[j] = r;
      g[H + j] = u;
      g[2 * H + j] = n;
      g[3 * H + j] = hn;
      hv = n + u * (s.h_prev[b * s.h_prev_stride + j] - n);
    } else if (s.cell == Cell::RnnRelu) {
      const S a = g[j] + s.bias[j];
      hv = a < S(0) ? S(0) : a;  // NaN stays NaN
    } else {
      hv = tanh_s(g[j] + s.bias[j]);
    }
    s.h[e] = hv;
    if (s.xh_next) s.xh_next[b * s.K + s.I + j] = hv;
  }
}

// One step of back-propagation through time: the gradients of step t's gate pre-activations
// (da, (B, W)) from the gradient reaching h_t (dy_t plus, below the last step, step t + 1's
// contribution dh_next); the LSTM's dc carried in place (c_t's gradient in, c_{t-1}'s out), the
// GRU's direct part z dh of h_{t-1}'s gradient written into dh_prev (the GEMM adds the rest).
template <class S>
struct StepBack {
  Cell cell;
  std::int64_t B, H, W;
  const S* g;        // step t's gate activations (B, W) (lstm, gru)
  const S* h;        // h_t (B, H) (rnn)
  const S* h_prev;   // gru: h0 or h_{t-1}, (B, H)
  const S* c_prev;   // lstm: c0 or c_{t-1}
  const S* tc;       // lstm: tanh(c_t)
  const S* dy;       // the output's gradient at step t, (B, H)
  const S* dh_next;  // the gradient reaching h_t from step t + 1, (B, H), or null at the last step
  S* dc;             // lstm, (B, H)
  S* da;             // (B, W)
  S* dh_prev;        // gru: the direct part, (B, H)
};

template <class S>
__global__ void cell_backward_kernel(StepBack<S> s) {
  const std::int64_t total = s.B * s.H, H = s.H;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = e / H, j = e % H;
    const S dh = s.dh_next ? s.dy[e] + s.dh_next[e] : s.dy[e];
    S* a = s.da + b * s.W;
    if (s.cell == Cell::Lstm) {
      const S* g = s.g + b * s.W;
      const S i = g[j], f = g[H + j], n = g[2 * H + j], o = g[3 * H + j], tj = s.tc[e];
      const S dct = s.dc[e] + dh * o * (S(1) - tj * tj);
      a[j] = dct * n * i * (S(1) - i);
      a[H + j] = dct * s.c_prev[e] * f * (S(1) - f);
      a[2 * H + j] = dct * i * (S(1) - n * n);
      a[3 * H + j] = dh * tj * o * (S(1) - o);
      s.dc[e] = dct * f;
    } else if (s.cell == Cell::Gru) {
      const S* g = s.g + b * s.W;
      const S r = g[j], u = g[H + j], n = g[2 * H + j];
      const S dan = dh * (S(1) - u) * (S(1) - n * n);
      a[j] = dan * g[3 * H + j] * r * (S(1) - r);
      a[H + j] = dh * (s.h_prev[e] - n) * u * (S(1) - u);
      a[2 * H + j] = dan;
      a[3 * H + j] = dan * r;
      s.dh_prev[e] = dh * u;
    } else if (s.cell == Cell::RnnRelu) {
      a[j] = s.h[e] > S(0) ? dh : S(0);
    } else {
      const S hv = s.h[e];
      a[j] = dh * (S(1) - hv * hv);
    }
  }
}

// The packed weight gradient dwc (W, K) back to torch's rows: dw_ih (G H, I) and dw_hh (G H, H)
// (either may be null).
template <class S>
__global__ void unpack_weights_kernel(Cell cell, const S* dwc, std::int64_t I, std::int64_t H, std::int64_t W,
                                      S* dwi, S* dwh) {
  const std::int64_t K = I + H, total = W * K;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = e / K, k = e % K;
    if (k < I) {
      const std::int64_t ri = source_ih(cell, j, H);
      if (dwi && ri >= 0) dwi[ri * I + k] = dwc[e];
    } else {
      const std::int64_t rh = source_hh(cell, j, H);
      if (dwh && rh >= 0) dwh[rh * H + (k - I)] = dwc[e];
    }
  }
}

// The packed columns' sums (W) back to the bias rows (G H): db_ih and db_hh (either null).
template <class S>
__global__ void unpack_bias_kernel(Cell cell, const S* sums, std::int64_t H, std::int64_t W, S* dbi, S* dbh) {
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= W) return;
  const std::int64_t ri = source_ih(cell, j, H), rh = source_hh(cell, j, H);
  if (dbi && ri >= 0) dbi[ri] = sums[j];
  if (dbh && rh >= 0) dbh[rh] = sums[j];
}

template <class S>
S* ptr(const Tensor& t) {
  return t.defined() ? t.device_data<S>() : nullptr;
}

template <class S>
Tensor forward_impl(Cell cell, const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in, const Tensor& w_ih_in,
                    const Tensor& w_hh_in, const Tensor& b_ih_in, const Tensor& b_hh_in, RecurrentSaved& s) {
  const std::int64_t T = x_in.size(0), B = x_in.size(1), I = x_in.size(2), H = w_hh_in.size(1);
  const std::int64_t W = gate_blocks(cell) * H, K = I + H, N = T * B, BH = B * H;
  const DType dt = dtype_of<S>();
  const Device device = x_in.device();
  const bool lstm = cell == Cell::Lstm;
  const std::string where = context(cell, x_in, H);
  const cudaStream_t stream = stream_of(device);

  const Tensor x = x_in.contiguous();
  const Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  const Tensor b_ih = b_ih_in.contiguous(), b_hh = b_hh_in.contiguous();
  const Tensor wt_t = Tensor::empty({K, W}, dt, device);
  const Tensor bias_t = Tensor::empty({W}, dt, device);
  S* wt = wt_t.device_data<S>();
  pack_weights_kernel<S><<<blocks_for(K * W), kThreads, 0, stream>>>(cell, w_ih.device_data<S>(),
                                                                      w_hh.device_data<S>(), I, H, W, wt);
  pack_bias_kernel<S><<<blocks_for(W), kThreads, 0, stream>>>(cell, b_ih.device_data<S>(), b_hh.device_data<S>(), H,
                                                               W, bias_t.device_data<S>());
  check_launch(where, "packing the weights");

  s.h0 = h0_in.contiguous();
  s.xh = Tensor::empty({N, K}, dt, device);
  S* xh = s.xh.device_data<S>();
  fill_xh_kernel<S><<<blocks_for(N * K), kThreads, 0, stream>>>(x.device_data<S>(), s.h0.device_data<S>(), N, B, I,
                                                                 H, xh);
  check_launch(where, "gathering [x | h0]");
  s.out = Tensor::empty({T + (lstm ? 1 : 0), B, H}, dt, device);
  S* out = s.out.device_data<S>();
  s.gates = Tensor::empty({N, W}, dt, device);
  S* gates = s.gates.device_data<S>();
  S* cs = nullptr;
  S* tc = nullptr;
  if (lstm) {
    s.c0 = c0_in.contiguous();
    s.cs = Tensor::empty({T, B, H}, dt, device);
    s.tc = Tensor::empty({N, H}, dt, device);
    cs = s.cs.device_data<S>();
    tc = s.tc.device_data<S>();
  }

  // Every step's input projection at once: gates = x W_x (the first I rows of wt).
  gemm_step<S>(where, "input projections", device, false, false, N, W, I, xh, K, wt, W, gates, W, S(0));
  for (std::int64_t t = 0; t < T; ++t) {
    S* gt = gates + t * B * W;
    // gates_t += h_{t-1} W_h (the last H rows of wt); h_{t-1} is step t's xh rows past column I.
    gemm_step<S>(where, "hidden projection", device, false, false, B, W, H, xh + t * B * K + I, K, wt + I * W, W, gt,
                 W, S(1));
    Step<S> st{};
    st.cell = cell;
    st.B = B;
    st.H = H;
    st.W = W;
    st.K = K;
    st.I = I;
    st.g = gt;
    st.bias = bias_t.device_data<S>();
    st.h_prev = xh + t * B * K + I;
    st.h_prev_stride = K;
    st.h = out + t * BH;
    st.xh_next = t + 1 < T ? xh + (t + 1) * B * K : nullptr;
    if (lstm) {
      st.c_prev = t == 0 ? s.c0.device_data<S>() : cs + (t - 1) * BH;
      st.c = cs + t * BH;
      st.tc = tc + t * BH;
      st.c_last = t + 1 == T ? out + T * BH : nullptr;
    }
    cell_forward_kernel<S><<<blocks_for(BH), kThreads, 0, stream>>>(st);
    check_launch(where, "cell forward");
  }
  if (!lstm && cell != Cell::Gru) s.gates = Tensor();  // the rnn's backward needs h only
  return s.out;
}

template <class S>
std::array<Tensor, 7> backward_impl(Cell cell, const Tensor& grad_in, const Tensor& w_ih_in, const Tensor& w_hh_in,
                                    const std::array<bool, 7>& needs, const RecurrentSaved& s) {
  const std::int64_t B = s.out.size(1), H = s.out.size(2), K = s.xh.size(1), I = K - H;
  const std::int64_t N = s.xh.size(0), T = N / B, BH = B * H;
  const std::int64_t G = gate_count(cell), W = gate_blocks(cell) * H;
  const DType dt = dtype_of<S>();
  const Device device = grad_in.device();
  const bool lstm = cell == Cell::Lstm;
  const cudaStream_t stream = stream_of(device);
  std::string where(cell_name(cell));
  where += " backward on ";
  where += device.str();
  where += ": ";
  where += std::to_string(T);
  where += " steps, batch ";
  where += std::to_string(B);
  where += ", input size ";
  where += std::to_string(I);
  where += ", hidden size ";
  where += std::to_string(H);
  where += ", ";
  where += dtype_name(dt);

  const Tensor grad = grad_in.contiguous();
  const S* dy = grad.device_data<S>();
  const S* out = s.out.device_data<S>();
  const Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  const Tensor wt_t = Tensor::empty({K, W}, dt, device);
  const S* wt = wt_t.device_data<S>();
  pack_weights_kernel<S><<<blocks_for(K * W), kThreads, 0, stream>>>(cell, w_ih.device_data<S>(),
                                                                      w_hh.device_data<S>(), I, H, W,
                                                                      wt_t.device_data<S>());
  check_launch(where, "packing the weights");

  const Tensor da_t = Tensor::empty({N, W}, dt, device);  // gradients of the packed gate columns
  S* da = da_t.device_data<S>();
  const Tensor dhp_t = Tensor::empty({T, B, H}, dt, device);  // row t: the gradient of h_{t-1} from step t
  S* dhp = dhp_t.device_data<S>();
  Tensor dc_t;
  S* dc = nullptr;
  if (lstm) {
    dc_t = Tensor::empty({B, H}, dt, device);
    dc = dc_t.device_data<S>();
    check_cuda(cudaMemcpyAsync(dc, dy + T * BH, static_cast<std::size_t>(BH) * sizeof(S), cudaMemcpyDeviceToDevice,
                               stream),
               where, "copying c_T's gradient");
  }
  const S* gates = ptr<S>(s.gates);
  const S* h0 = s.h0.device_data<S>();

  for (std::int64_t t = T - 1; t >= 0; --t) {
    StepBack<S> st{};
    st.cell = cell;
    st.B = B;
    st.H = H;
    st.W = W;
    st.g = gates ? gates + t * B * W : nullptr;
    st.h = out + t * BH;
    st.h_prev = t == 0 ? h0 : out + (t - 1) * BH;
    if (lstm) {
      st.c_prev = t == 0 ? s.c0.device_data<S>() : s.cs.device_data<S>() + (t - 1) * BH;
      st.tc = s.tc.device_data<S>() + t * BH;
    }
    st.dy = dy + t * BH;
    st.dh_next = t + 1 < T ? dhp + (t + 1) * BH : nullptr;
    st.dc = dc;
    st.da = da + t * B * W;
    st.dh_prev = dhp + t * BH;
    cell_backward_kernel<S><<<blocks_for(BH), kThreads, 0, stream>>>(st);
    check_launch(where, "cell backward");
    if (t > 0 || needs[1]) {
      // dh_{t-1} (+)= da_t W_h^T: the last H rows of wt, transposed.
      gemm_step<S>(where, "gradient of the previous hidden state", device, false, true, B, H, W, da + t * B * W, W,
                   wt + I * W, W, dhp + t * BH, H, cell == Cell::Gru ? S(1) : S(0));
    }
  }

  std::array<Tensor, 7> grads;
  if (needs[0]) {  // dx = da W_x^T, every step at once
    grads[0] = Tensor::empty({T, B, I}, dt, device);
    gemm_step<S>(where, "input gradient", device, false, true, N, I, W, da, W, wt, W, grads[0].device_data<S>(), I,
                 S(0));
  }
  if (needs[1]) {
    grads[1] = Tensor::empty({B, H}, dt, device);
    check_cuda(cudaMemcpyAsync(grads[1].device_data<S>(), dhp, static_cast<std::size_t>(BH) * sizeof(S),
                               cudaMemcpyDeviceToDevice, stream),
               where, "copying h0's gradient");
  }
  if (needs[2] && lstm) grads[2] = dc_t;
  if (needs[3] || needs[4]) {  // dwc = da^T [x | h], every step at once
    const Tensor dwc_t = Tensor::empty({W, K}, dt, device);
    gemm_step<S>(where, "weight gradients", device, true, false, W, K, N, da, W, s.xh.device_data<S>(), K,
                 dwc_t.device_data<S>(), K, S(0));
    if (needs[3]) grads[3] = Tensor::empty({G * H, I}, dt, device);
    if (needs[4]) grads[4] = Tensor::empty({G * H, H}, dt, device);
    unpack_weights_kernel<S><<<blocks_for(W * K), kThreads, 0, stream>>>(cell, dwc_t.device_data<S>(), I, H, W,
                                                                          ptr<S>(grads[3]), ptr<S>(grads[4]));
    check_launch(where, "unpacking the weight gradients");
  }
  if (needs[5] || needs[6]) {
    const Tensor sums = sum(da_t, Shape{0}, false, 1.0);  // (W), accumulated in double
    if (needs[5]) grads[5] = Tensor::empty({G * H}, dt, device);
    if (needs[6]) grads[6] = Tensor::empty({G * H}, dt, device);
    unpack_bias_kernel<S><<<blocks_for(W), kThreads, 0, stream>>>(cell, sums.device_data<S>(), H, W,
                                                                   ptr<S>(grads[5]), ptr<S>(grads[6]));
    check_launch(where, "unpacking the bias gradients");
  }
  return grads;
}

}  // namespace

Tensor recurrent_forward(RecurrentCell cell, const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                         const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, RecurrentSaved& saved) {
  return dispatch_floating(x.dtype(), [&](auto zero) {
    return forward_impl<decltype(zero)>(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, saved);
  });
}

std::array<Tensor, 7> recurrent_backward(RecurrentCell cell, const Tensor& grad, const Tensor& w_ih,
                                         const Tensor& w_hh, const std::array<bool, 7>& needs,
                                         const RecurrentSaved& saved) {
  return dispatch_floating(grad.dtype(), [&](auto zero) {
    return backward_impl<decltype(zero)>(cell, grad, w_ih, w_hh, needs, saved);
  });
}

}  // namespace zkynet::kernels::cuda
