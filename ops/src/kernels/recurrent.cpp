// The rnn, lstm and gru kernels on the CPU (recurrent.h says what they compute). CUDA operands
// go to cuda/recurrent.cu (cuBLAS and own cell kernels in this file's layout and arithmetic),
// after a check that every operand lies on one device.
//
// Buffers are time-major and contiguous: row t B + b of an (N = T B)-row matrix is step t of
// sequence b. The forward keeps what the backward needs in a RecurrentSaved (the operator holds
// it, freed with its graph): the inputs of every step's GEMM, the gate activations and, for the
// LSTM, the cell states and their tanh.
// NOTE: moved here verbatim from ops/src/recurrent.cpp: every value and gradient is the same
// bits as before; keep each loop's order (and the float path's own exp and tanh) when changing one.
// cuda/recurrent.cu repeats the cells' arithmetic (and that exp and tanh): change both together.
#include "recurrent.h"

#include <zkynet/framework/parallel.h>

#include "blas.h"

#include "cuda/api.h"
#include "same_device.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

namespace zkynet::kernels {

std::string_view cell_name(RecurrentCell cell) {
  switch (cell) {
    case RecurrentCell::RnnTanh: return "rnn_tanh";
    case RecurrentCell::RnnRelu: return "rnn_relu";
    case RecurrentCell::Lstm: return "lstm";
    case RecurrentCell::Gru: return "gru";
  }
  return "rnn";
}

namespace {

using Cell = RecurrentCell;
using Saved = RecurrentSaved;

// ---- elementwise math -------------------------------------------------------------------
// float: Cephes-style exp and tanh in plain arithmetic, so that the loops below vectorize
// (about 1 ulp); double: the C library (the float64 path serves tests and gradchecks).

inline float exp_f(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  // Round x log2(e) to the nearest integer n with the 1.5 2^23 trick: n sits in the low mantissa bits.
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  // 2^n: the biased exponent n + 127 (unsigned: wraps, never overflows, for NaN inputs).
  const std::uint32_t scale_bits = (std::bit_cast<std::uint32_t>(shifted) - 0x4B400000u + 127u) << 23;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  return y * std::bit_cast<float>(scale_bits);
}

inline float sigmoid_s(float x) { return 1.0f / (1.0f + exp_f(-x)); }
inline double sigmoid_s(double x) { return 1.0 / (1.0 + std::exp(-x)); }

inline float tanh_s(float x) {
  const float ax = std::fabs(x);
  const float z = x * x;
  const float small =
      ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
       3.33332819422e-1f) * z * x + x;
  const float e = exp_f(2.0f * ax);
  const float big = std::copysign(1.0f - 2.0f / (e + 1.0f), x);
  return ax < 0.625f ? small : big;
}
inline double tanh_s(double x) { return std::tanh(x); }

template <class S>
void sigmoid_inplace(S* __restrict p, std::int64_t n) {
  for (std::int64_t j = 0; j < n; ++j) p[j] = sigmoid_s(p[j]);
}
template <class S>
void tanh_inplace(S* __restrict p, std::int64_t n) {
  for (std::int64_t j = 0; j < n; ++j) p[j] = tanh_s(p[j]);
}

// ---- BLAS ---------------------------------------------------------------------------------

using detail::gemm;

// out[j] = sum over rows of m[r, j]  (m: rows x cols, contiguous).
template <class S>
void column_sums(const S* m, std::int64_t rows, std::int64_t cols, S* __restrict out) {
  std::fill(out, out + cols, S(0));
  for (std::int64_t r = 0; r < rows; ++r) {
    const S* __restrict row = m + r * cols;
    for (std::int64_t j = 0; j < cols; ++j) out[j] += row[j];
  }
}

struct Dims {
  std::int64_t steps, batch, in, hidden;
};

// ---- the kernels --------------------------------------------------------------------------
//
// Each step multiplies [x_t | h_{t-1}] (B, I + H) by one packed weight matrix, so the input
// and hidden products are one GEMM per step (forward: (B, K) x (K, W); backward: (B, W) x
// (W, K), K = I + H, W = the gate columns), and the weight gradients one (W, B) x (B, K) GEMM
// per step, accumulated. Gate columns (blocks of H): lstm i f g o, rnn one block, gru r z n_x n_h, where
// the gru's n gate keeps its input part (W_in x) and hidden part (W_hn h) apart (the packed
// matrix holds zeros in the other half of those two blocks).

std::int64_t gate_blocks(Cell cell) { return cell == Cell::Gru ? 4 : gate_count(cell); }

// The torch weight rows feeding packed gate column j: (row of w_ih or -1, row of w_hh or -1).
std::pair<std::int64_t, std::int64_t> source_rows(Cell cell, std::int64_t j, std::int64_t H) {
  if (cell != Cell::Gru || j < 2 * H) return {j, j};
  if (j < 3 * H) return {j, -1};
  return {-1, j - H};
}

// The packed weights, (K, W) when `by_column` (the forward's right operand) else (W, K) (the
// backward's).
template <class S>
Tensor pack_weights(Cell cell, const Tensor& w_ih_in, const Tensor& w_hh_in, std::int64_t I, std::int64_t H,
                    bool by_column) {
  const std::int64_t W = gate_blocks(cell) * H, K = I + H;
  const Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  const S* wi = w_ih.data<S>();
  const S* wh = w_hh.data<S>();
  Tensor out = Tensor::empty(by_column ? Shape{K, W} : Shape{W, K}, dtype_of<S>());
  S* o = out.data<S>();
  const std::int64_t sj = by_column ? 1 : K, sk = by_column ? W : 1;  // strides of column j, input k
  for (std::int64_t j = 0; j < W; ++j) {
    const auto [ri, rh] = source_rows(cell, j, H);
    for (std::int64_t k = 0; k < I; ++k) o[j * sj + k * sk] = ri >= 0 ? wi[ri * I + k] : S(0);
    for (std::int64_t k = 0; k < H; ++k) o[j * sj + (I + k) * sk] = rh >= 0 ? wh[rh * H + k] : S(0);
  }
  return out;
}

// The biases added to the packed columns (W): b_ih + b_hh, or one of them for the gru's n blocks.
template <class S>
Tensor pack_bias(Cell cell, const Tensor& b_ih_in, const Tensor& b_hh_in, std::int64_t H) {
  const std::int64_t W = gate_blocks(cell) * H;
  const Tensor b_ih = b_ih_in.contiguous(), b_hh = b_hh_in.contiguous();
  Tensor out = Tensor::empty({W}, dtype_of<S>());
  S* o = out.data<S>();
  for (std::int64_t j = 0; j < W; ++j) {
    const auto [ri, rh] = source_rows(cell, j, H);
    o[j] = (ri >= 0 ? b_ih.data<S>()[ri] : S(0)) + (rh >= 0 ? b_hh.data<S>()[rh] : S(0));
  }
  return out;
}

template <class S>
Tensor forward_impl(Cell cell, const std::array<const Tensor*, 7>& in, const Dims& d, Saved& s) {
  const std::int64_t T = d.steps, B = d.batch, I = d.in, H = d.hidden;
  const std::int64_t W = gate_blocks(cell) * H, K = I + H, N = T * B, BH = B * H;
  const DType dt = dtype_of<S>();
  const bool lstm = cell == Cell::Lstm;
  const Tensor wt_t = pack_weights<S>(cell, *in[3], *in[4], I, H, true);
  const Tensor bias_t = pack_bias<S>(cell, *in[5], *in[6], H);
  const S* wt = wt_t.data<S>();
  const S* bias = bias_t.data<S>();
  s.h0 = in[1]->contiguous();
  const S* h0 = s.h0.data<S>();

  s.xh = Tensor::empty({N, K}, dt);
  S* xh = s.xh.data<S>();
  {
    const Tensor x_t = in[0]->contiguous();
    const S* x = x_t.data<S>();
    for (std::int64_t r = 0; r < N; ++r) std::copy_n(x + r * I, I, xh + r * K);
    for (std::int64_t b = 0; b < B; ++b) std::copy_n(h0 + b * H, H, xh + b * K + I);
  }
  s.out = Tensor::empty({T + (lstm ? 1 : 0), B, H}, dt);
  S* out = s.out.data<S>();
  s.gates = Tensor::empty({N, W}, dt);
  S* gates = s.gates.data<S>();
  S* cs = nullptr;
  S* tc = nullptr;
  const S* c0 = nullptr;
  if (lstm) {
    s.c0 = in[2]->contiguous();
    c0 = s.c0.data<S>();
    s.cs = Tensor::empty({T, B, H}, dt);
    s.tc = Tensor::empty({N, H}, dt);
    cs = s.cs.data<S>();
    tc = s.tc.data<S>();
  }

  for (std::int64_t t = 0; t < T; ++t) {
    S* gt = gates + t * B * W;
    gemm<S>(false, false, B, W, K, xh + t * B * K, K, wt, W, S(0), gt, W);
    for (std::int64_t b = 0; b < B; ++b) {
      S* __restrict g = gt + b * W;
      for (std::int64_t j = 0; j < W; ++j) g[j] += bias[j];
      const std::int64_t row = t * B + b;
      S* __restrict h = out + row * H;
      if (lstm) {
        sigmoid_inplace(g, 2 * H);
        tanh_inplace(g + 2 * H, H);
        sigmoid_inplace(g + 3 * H, H);
        const S* __restrict cp = t == 0 ? c0 + b * H : cs + (row - B) * H;
        S* __restrict c = cs + row * H;
        S* __restrict th = tc + row * H;
        for (std::int64_t j = 0; j < H; ++j) c[j] = g[H + j] * cp[j] + g[j] * g[2 * H + j];
        for (std::int64_t j = 0; j < H; ++j) th[j] = tanh_s(c[j]);
        for (std::int64_t j = 0; j < H; ++j) h[j] = g[3 * H + j] * th[j];
      } else if (cell == Cell::Gru) {
        sigmoid_inplace(g, 2 * H);
        for (std::int64_t j = 0; j < H; ++j) g[2 * H + j] += g[j] * g[3 * H + j];
        tanh_inplace(g + 2 * H, H);
        const S* __restrict hp = t == 0 ? h0 + b * H : out + (row - B) * H;
        for (std::int64_t j = 0; j < H; ++j) {
          const S n = g[2 * H + j];
          h[j] = n + g[H + j] * (hp[j] - n);
        }
      } else if (cell == Cell::RnnRelu) {
        for (std::int64_t j = 0; j < H; ++j) h[j] = g[j] < S(0) ? S(0) : g[j];  // NaN stays NaN
      } else {
        for (std::int64_t j = 0; j < H; ++j) h[j] = tanh_s(g[j]);
      }
      if (t + 1 < T) std::copy_n(h, H, xh + (row + B) * K + I);
    }
  }
  if (lstm) std::copy_n(cs + (T - 1) * BH, BH, out + T * BH);
  if (!lstm && cell != Cell::Gru) s.gates = Tensor();  // the rnn's backward needs h only
  return s.out;
}

// One sequence's step of the LSTM's backward: from the gradient dh of h_t and dc of c_t (updated
// to that of c_{t-1}), the gradients a of the gate pre-activations (i f g o).
template <class S>
void lstm_step_backward(std::int64_t H, const S* __restrict g, const S* __restrict c_prev, const S* __restrict tanh_c,
                        const S* __restrict dh, S* __restrict dc, S* __restrict a) {
  const S* __restrict gi = g;
  const S* __restrict gf = g + H;
  const S* __restrict gg = g + 2 * H;
  const S* __restrict go = g + 3 * H;
  S* __restrict ai = a;
  S* __restrict af = a + H;
  S* __restrict ag = a + 2 * H;
  S* __restrict ao = a + 3 * H;
  for (std::int64_t j = 0; j < H; ++j) {
    const S i = gi[j], f = gf[j], n = gg[j], o = go[j], tj = tanh_c[j];
    const S dct = dc[j] + dh[j] * o * (S(1) - tj * tj);
    ai[j] = dct * n * i * (S(1) - i);
    af[j] = dct * c_prev[j] * f * (S(1) - f);
    ag[j] = dct * i * (S(1) - n * n);
    ao[j] = dh[j] * tj * o * (S(1) - o);
    dc[j] = dct * f;
  }
}

// The GRU's: the gradients a of the packed columns (r z n_x n_h) and the direct part z dh of
// the gradient of h_{t-1}.
template <class S>
void gru_step_backward(std::int64_t H, const S* __restrict g, const S* __restrict h_prev, const S* __restrict dh,
                       S* __restrict a, S* __restrict direct) {
  const S* __restrict gr = g;
  const S* __restrict gz = g + H;
  const S* __restrict gn = g + 2 * H;
  const S* __restrict ghn = g + 3 * H;
  S* __restrict ar = a;
  S* __restrict az = a + H;
  S* __restrict anx = a + 2 * H;
  S* __restrict anh = a + 3 * H;
  for (std::int64_t j = 0; j < H; ++j) {
    const S r = gr[j], u = gz[j], n = gn[j];
    const S dan = dh[j] * (S(1) - u) * (S(1) - n * n);
    ar[j] = dan * ghn[j] * r * (S(1) - r);
    az[j] = dh[j] * (h_prev[j] - n) * u * (S(1) - u);
    anx[j] = dan;
    anh[j] = dan * r;
    direct[j] = dh[j] * u;
  }
}

// Gradients in the order x, h0, c0, w_ih, w_hh, b_ih, b_hh (undefined where not needed).
template <class S>
std::array<Tensor, 7> backward_impl(Cell cell, const Tensor& grad_in, const Tensor& w_ih, const Tensor& w_hh,
                                    const std::array<bool, 7>& needs, const Saved& s) {
  const std::int64_t B = s.out.size(1), H = s.out.size(2), K = s.xh.size(1), I = K - H;
  const std::int64_t N = s.xh.size(0), T = N / B, BH = B * H;
  const std::int64_t G = gate_count(cell), W = gate_blocks(cell) * H;
  const DType dt = dtype_of<S>();
  const bool lstm = cell == Cell::Lstm;
  const Tensor grad = grad_in.contiguous();
  const S* dy = grad.data<S>();
  const S* out = s.out.data<S>();
  const S* h0 = s.h0.data<S>();
  const Tensor wc_t = pack_weights<S>(cell, w_ih, w_hh, I, H, false);  // (W, K)
  const S* wc = wc_t.data<S>();

  Tensor da_t = Tensor::empty({N, W}, dt);  // gradients of the packed gate columns
  S* da = da_t.data<S>();
  Tensor dxh_t = Tensor::empty({N, K}, dt);  // gradients of [x_t | h_{t-1}]
  S* dxh = dxh_t.data<S>();
  Tensor dh_t = Tensor::empty({B, H}, dt);  // gradient reaching h_t: from the output and from step t + 1
  S* dh = dh_t.data<S>();
  Tensor dc_t;
  S* dc = nullptr;
  if (lstm) {
    dc_t = Tensor::empty({B, H}, dt);
    dc = dc_t.data<S>();
    std::copy_n(dy + T * BH, BH, dc);  // the gradient of c_T (the value's last row)
  }
  const S* gates = s.gates.defined() ? s.gates.data<S>() : nullptr;
  // The weight gradients dA^T [x | h] are accumulated one step at a time, in the order
  // T - 1, ..., 0: per-step products stay in OpenBLAS's small-matrix kernel (one thread, no
  // packing), as fast on one core as one (W, N) x (N, K) product, and never wait on BLAS worker
  // threads (which a loaded 2-core machine deschedules). With a second thread in zkynet's pool
  // they overlap the recurrence: the recurrence publishes each finished step; the helper adds
  // finished steps, and the caller, once its recurrence is done, adds any left. Whoever holds
  // `adding` adds the next steps in order into the one sum, so the result is the same bits as
  // with one thread, whichever thread added what.
  const bool weight_grads = needs[3] || needs[4];
  const bool overlap = weight_grads && T > 1 && num_threads() > 1;
  Tensor dwc_t = weight_grads ? Tensor::empty({W, K}, dt) : Tensor();
  S* dwc = weight_grads ? dwc_t.data<S>() : nullptr;
  const S* xh = s.xh.data<S>();
  auto add_step = [&](std::int64_t t) {
    gemm<S>(true, false, W, K, B, da + t * B * W, W, xh + t * B * K, K, t == T - 1 ? S(0) : S(1), dwc, K);
  };
  std::atomic<std::int64_t> finished{0};  // steps T - 1, T - 2, ... whose dA rows are final
  std::atomic<std::int64_t> added{0};     // steps T - 1, T - 2, ... added into dwc (changed under `adding`)
  std::atomic<bool> adding{false};
  auto add_finished_steps = [&] {
    int idle = 0;
    while (added.load(std::memory_order_acquire) < T) {
      bool expected = false;
      if (added.load(std::memory_order_acquire) >= finished.load(std::memory_order_acquire) ||
          !adding.compare_exchange_weak(expected, true, std::memory_order_acquire)) {
        if (++idle > 64) std::this_thread::yield();
        continue;
      }
      idle = 0;
      std::int64_t k = added.load(std::memory_order_relaxed);
      for (; k < finished.load(std::memory_order_acquire); ++k) {
        add_step(T - 1 - k);
        added.store(k + 1, std::memory_order_release);
      }
      adding.store(false, std::memory_order_release);
    }
  };

  auto recurrence = [&] {
  for (std::int64_t t = T - 1; t >= 0; --t) {
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t row = t * B + b;
      S* __restrict dhb = dh + b * H;
      const S* __restrict dyb = dy + row * H;
      if (t + 1 < T) {
        const S* __restrict next = dxh + (row + B) * K + I;
        for (std::int64_t j = 0; j < H; ++j) dhb[j] = dyb[j] + next[j];
      } else {
        std::copy_n(dyb, H, dhb);
      }
      S* __restrict a = da + row * W;
      if (lstm) {
        const S* __restrict g = gates + row * W;
        const S* __restrict cp = t == 0 ? s.c0.data<S>() + b * H : s.cs.data<S>() + (row - B) * H;
        const S* __restrict th = s.tc.data<S>() + row * H;
        lstm_step_backward(H, g, cp, th, dhb, dc + b * H, a);
      } else if (cell == Cell::Gru) {
        const S* __restrict g = gates + row * W;
        const S* __restrict hp = t == 0 ? h0 + b * H : out + (row - B) * H;
        gru_step_backward(H, g, hp, dhb, a, dxh + row * K + I);
        std::fill_n(dxh + row * K, I, S(0));
      } else {
        const S* __restrict h = out + row * H;
        if (cell == Cell::RnnRelu) {
          for (std::int64_t j = 0; j < H; ++j) a[j] = h[j] > S(0) ? dhb[j] : S(0);
        } else {
          for (std::int64_t j = 0; j < H; ++j) a[j] = dhb[j] * (S(1) - h[j] * h[j]);
        }
      }
    }
    if (overlap) {
      finished.store(T - t, std::memory_order_release);
    } else if (weight_grads) {
      add_step(t);
    }
    if (t > 0 || needs[0] || needs[1]) {
      gemm<S>(false, false, B, K, W, da + t * B * W, W, wc, K, cell == Cell::Gru ? S(1) : S(0), dxh + t * B * K, K);
    }
  }
  };
  if (overlap) {
    // Chunk 0 (the caller): the recurrence, then the steps not added yet; chunk 1: the helper.
    // A busy pool runs both chunks here, one after the other.
    parallel_for(
        2,
        [&](std::int64_t begin, std::int64_t) {
          if (begin == 0) recurrence();
          add_finished_steps();
        },
        1);
  } else {
    recurrence();
  }

  std::array<Tensor, 7> grads;
  if (needs[0]) {
    Tensor dx = Tensor::empty({T, B, I}, dt);
    S* p = dx.data<S>();
    for (std::int64_t r = 0; r < N; ++r) std::copy_n(dxh + r * K, I, p + r * I);
    grads[0] = dx;
  }
  if (needs[1]) {
    Tensor dh0 = Tensor::empty({B, H}, dt);
    for (std::int64_t b = 0; b < B; ++b) std::copy_n(dxh + b * K + I, H, dh0.data<S>() + b * H);
    grads[1] = dh0;
  }
  if (needs[2] && lstm) grads[2] = dc_t;
  if (weight_grads) {
    if (needs[3]) {
      Tensor dw = Tensor::empty({G * H, I}, dt);
      S* p = dw.data<S>();
      for (std::int64_t j = 0; j < W; ++j) {
        const std::int64_t ri = source_rows(cell, j, H).first;
        if (ri >= 0) std::copy_n(dwc + j * K, I, p + ri * I);
      }
      grads[3] = dw;
    }
    if (needs[4]) {
      Tensor dw = Tensor::empty({G * H, H}, dt);
      S* p = dw.data<S>();
      for (std::int64_t j = 0; j < W; ++j) {
        const std::int64_t rh = source_rows(cell, j, H).second;
        if (rh >= 0) std::copy_n(dwc + j * K + I, H, p + rh * H);
      }
      grads[4] = dw;
    }
  }
  if (needs[5] || needs[6]) {
    Tensor sums = Tensor::empty({W}, dt);
    column_sums(da, N, W, sums.data<S>());
    for (std::size_t which : {std::size_t{5}, std::size_t{6}}) {
      if (!needs[which]) continue;
      Tensor db = Tensor::empty({G * H}, dt);
      for (std::int64_t j = 0; j < W; ++j) {
        const auto [ri, rh] = source_rows(cell, j, H);
        const std::int64_t r = which == 5 ? ri : rh;
        if (r >= 0) db.data<S>()[r] = sums.data<S>()[j];
      }
      grads[which] = db;
    }
  }
  return grads;
}


}  // namespace

Tensor recurrent_forward(RecurrentCell cell, const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                         const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, RecurrentSaved& saved) {
  detail::require_same_device(cell_name(cell), x.device(), h0, c0, w_ih, w_hh, b_ih, b_hh);
  if (x.device().is_cuda()) return cuda::recurrent_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, saved);
  const std::array<const Tensor*, 7> in{&x, &h0, c0.defined() ? &c0 : nullptr, &w_ih, &w_hh, &b_ih, &b_hh};
  const Dims d{x.size(0), x.size(1), x.size(2), w_hh.size(1)};
  return dispatch_floating(x.dtype(), [&](auto zero) { return forward_impl<decltype(zero)>(cell, in, d, saved); });
}

std::array<Tensor, 7> recurrent_backward(RecurrentCell cell, const Tensor& grad, const Tensor& w_ih,
                                         const Tensor& w_hh, const std::array<bool, 7>& needs,
                                         const RecurrentSaved& saved) {
  detail::require_same_device(cell_name(cell), grad.device(), w_ih, w_hh, saved.out);
  if (grad.device().is_cuda()) return cuda::recurrent_backward(cell, grad, w_ih, w_hh, needs, saved);
  return dispatch_floating(
      grad.dtype(), [&](auto zero) { return backward_impl<decltype(zero)>(cell, grad, w_ih, w_hh, needs, saved); });
}

}  // namespace zkynet::kernels
