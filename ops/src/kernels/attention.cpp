// The fused attention kernels on the CPU (attention.h gives the algorithm). Every block product
// is one OpenBLAS GEMM on the calling thread: the blocks are sized so that M N K stays below
// OpenBLAS's threading threshold (see the NOTE in conv.cpp), and the tasks (the forward's
// (batch, row block) pairs, the backward's batch elements) split across zkynet's thread pool.
// NOTE: the backward gives each task a whole batch element, so that dQ, dK and dV each have one
// writer; a single (batch * heads) element therefore runs on one thread.
#include "attention.h"
#include "blas.h"

#include <zkynet/framework/error.h>
#include <zkynet/framework/parallel.h>


#include "random.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace zkynet::kernels {

namespace {

using detail::gemm;

// exp(x) for x <= ~0 (the shifted scores), over n values in place. float: Cephes' expf
// (range reduction by ln 2 in two parts, a degree-6 polynomial, 2^n through the exponent bits),
// relative error at most 8.3e-8 (measured over [-87.3, 5]), branch-free so that the loop
// vectorizes; below -87.3 it gives 0, above 80 inf, and NaN stays NaN. double: std::exp.
// NOTE: kept out of line: inlined into the callers' loops, GCC 12 no longer vectorizes it.
// Compiled for AVX-512 and AVX2 as well, picked at load time (the portable build's SSE2 alone
// gave it ~10 % of the char GPT's step); no FMA in any of them (-std=c++20: no contraction),
// so every version gives the same bits.
[[gnu::noinline, gnu::target_clones("avx512f", "avx2", "default")]] void exp_inplace(float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float t = v * 1.44269504088896341f + 12582912.0f;  // round(v / ln 2) in the low mantissa bits;
    // outside [-87.3, 80] (and for NaN) the result is replaced below
    const float k = t - 12582912.0f;
    const float r = (v - k * 0.693359375f) - k * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    const std::uint32_t bits = (std::bit_cast<std::uint32_t>(t) - 0x4B400000u + 127u) << 23;  // unsigned: wraps
    const float e = y * std::bit_cast<float>(bits);
    // The special cases as bit masks (all ones where true), so that the loop has no branch.
    // NOTE: quiet comparisons (__builtin_isless ...): with `<` GCC keeps a branch (it may trap on NaN).
    const std::uint32_t under = 0u - static_cast<std::uint32_t>(__builtin_isless(v, -87.3f));
    const std::uint32_t over = 0u - static_cast<std::uint32_t>(__builtin_isgreater(v, 80.0f));
    const std::uint32_t nan = 0u - static_cast<std::uint32_t>(__builtin_isunordered(v, v));
    std::uint32_t out = std::bit_cast<std::uint32_t>(e) & ~under;
    out = (out & ~over) | (0x7F800000u & over);
    out = (out & ~nan) | (std::bit_cast<std::uint32_t>(v) & nan);
    x[i] = std::bit_cast<float>(out);
  }
}
inline void exp_inplace(double* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

// One operand's batch element b as a row-major matrix: (B, rows, cols) or (B1, B2, rows, cols)
// with any strides but a unit stride along cols; b = b1 B2 + b2.
template <class T>
struct Operand {
  T* p = nullptr;
  std::int64_t inner = 1, s_outer = 0, s_inner = 0, ld = 0;

  Operand() = default;
  Operand(const Tensor& t, T* data) : p(data) {
    const Shape& st = t.strides();
    if (t.dim() == 4) {
      inner = t.shape()[1];
      s_outer = st[0];
      s_inner = st[1];
      ld = st[2];
    } else {
      s_outer = st[0];
      ld = st[1];
    }
  }
  T* at(std::int64_t b) const { return p + (b / inner) * s_outer + (b % inner) * s_inner; }
};

template <class T>
Operand<const T> in(const Tensor& t) {
  return Operand<const T>(t, t.data<T>());
}
template <class T>
Operand<T> out_of(const Tensor& t) {
  return t.defined() ? Operand<T>(t, t.data<T>()) : Operand<T>();
}

// What both passes share: sizes, operands, and the masked, scaled scores of one block.
template <class T>
struct Problem {
  std::int64_t batch, L, S, E, Ev, block;
  Operand<const T> q, k, v;
  const AttentionArgs& args;
  double keep;     // 1 - dropout_p
  T drop_scale;    // 1 / keep (0 when everything is dropped)

  Problem(const Tensor& qt, const Tensor& kt, const Tensor& vt, const AttentionArgs& a)
      : batch(attention_batch(qt)), L(qt.shape()[qt.dim() - 2]), S(kt.shape()[kt.dim() - 2]),
        E(qt.shape()[qt.dim() - 1]), Ev(vt.shape()[vt.dim() - 1]), block(attention_block(E, Ev)), q(in<T>(qt)),
        k(in<T>(kt)), v(in<T>(vt)), args(a), keep(1.0 - a.dropout_p),
        drop_scale(a.dropout_p >= 1.0 ? T(0) : static_cast<T>(1.0 / (1.0 - a.dropout_p))) {}

  bool dropout() const { return args.dropout_p > 0.0; }

  // The last key block a causal row block [i0, i0 + rows) needs: keys j <= i0 + rows - 1.
  std::int64_t key_end(std::int64_t i0, std::int64_t rows) const {
    return args.causal ? std::min(S, i0 + rows) : S;
  }

  // s (rows x cols, leading dimension ld) = scale Q[i0:] K[j0:]^T, masked.
  void scores(std::int64_t b, std::int64_t i0, std::int64_t rows, std::int64_t j0, std::int64_t cols, T* s,
              std::int64_t ld) const {
    gemm<T>(false, true, rows, cols, E, static_cast<T>(args.scale), q.at(b) + i0 * q.ld, q.ld, k.at(b) + j0 * k.ld,
            k.ld, T(0), s, ld);
    constexpr T kNegInf = -std::numeric_limits<T>::infinity();
    if (args.causal) {
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = std::max<std::int64_t>(0, i0 + r + 1 - j0); c < cols; ++c) s[r * ld + c] = kNegInf;
      }
    }
    const Tensor& m = args.mask;
    if (!m.defined()) return;
    const std::int64_t rs = args.mask_strides[0], cs = args.mask_strides[1];
    const std::int64_t base = args.mask_offsets[static_cast<std::size_t>(b)] + i0 * rs + j0 * cs;
    if (m.dtype() == DType::Int64) {
      const std::int64_t* p = m.data<std::int64_t>() + base;
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) {
          if (p[r * rs + c * cs] == 0) s[r * ld + c] = kNegInf;
        }
      }
    } else {
      const T* p = m.data<T>() + base;
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) s[r * ld + c] += p[r * rs + c * cs];
      }
    }
  }

  // The dropout factor of element (b, i, j): 0 or 1 / keep.
  T dropped(std::int64_t b, std::int64_t i, std::int64_t j) const {
    const auto n = static_cast<std::uint64_t>((b * L + i) * S + j);
    return counter_uniform(args.dropout_key, n) < keep ? drop_scale : T(0);
  }
};

template <class T>
void forward_impl(const Problem<T>& pb, const Operand<T>& out, T* lse) {
  const std::int64_t br = pb.block, bc = pb.block;
  const std::int64_t row_blocks = (pb.L + br - 1) / br;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  parallel_for(
      pb.batch * row_blocks,
      [&](std::int64_t begin, std::int64_t end) {
        std::vector<T> s(static_cast<std::size_t>(br * bc));
        std::vector<T> acc(static_cast<std::size_t>(br * pb.Ev));
        std::vector<T> mx(static_cast<std::size_t>(br)), sum(static_cast<std::size_t>(br));
        for (std::int64_t task = begin; task < end; ++task) {
          const std::int64_t b = task / row_blocks;
          const std::int64_t i0 = (task % row_blocks) * br;
          const std::int64_t rows = std::min(br, pb.L - i0);
          std::fill(acc.begin(), acc.end(), T(0));
          std::fill(mx.begin(), mx.end(), kNegInf);
          std::fill(sum.begin(), sum.end(), T(0));
          const std::int64_t jend = pb.key_end(i0, rows);
          for (std::int64_t j0 = 0; j0 < jend; j0 += bc) {
            const std::int64_t cols = std::min(bc, jend - j0);
            pb.scores(b, i0, rows, j0, cols, s.data(), bc);
            for (std::int64_t r = 0; r < rows; ++r) {
              T* sr = s.data() + r * bc;
              T m_new = mx[r];
              for (std::int64_t c = 0; c < cols; ++c) m_new = std::max(m_new, sr[c]);
              if (m_new == kNegInf) {  // every key so far masked out: nothing to add
                std::fill(sr, sr + cols, T(0));
                continue;
              }
              const T corr = std::exp(mx[r] - m_new);  // 0 for the first keys of a row
              for (std::int64_t c = 0; c < cols; ++c) sr[c] -= m_new;
              exp_inplace(sr, cols);
              T total = 0;
              for (std::int64_t c = 0; c < cols; ++c) total += sr[c];
              if (pb.dropout()) {
                for (std::int64_t c = 0; c < cols; ++c) sr[c] *= pb.dropped(b, i0 + r, j0 + c);
              }
              sum[r] = sum[r] * corr + total;
              mx[r] = m_new;
              if (corr != T(1)) {
                T* ar = acc.data() + r * pb.Ev;
                for (std::int64_t e = 0; e < pb.Ev; ++e) ar[e] *= corr;
              }
            }
            gemm<T>(false, false, rows, pb.Ev, cols, T(1), s.data(), bc, pb.v.at(b) + j0 * pb.v.ld, pb.v.ld, T(1),
                    acc.data(), pb.Ev);
          }
          // A row with every key masked: 0 / 0 = NaN and lse = -inf, as PyTorch's math path gives.
          for (std::int64_t r = 0; r < rows; ++r) {
            T* o = out.at(b) + (i0 + r) * out.ld;
            const T* ar = acc.data() + r * pb.Ev;
            for (std::int64_t e = 0; e < pb.Ev; ++e) o[e] = ar[e] / sum[r];
            lse[b * pb.L + i0 + r] = mx[r] + std::log(sum[r]);
          }
        }
      },
      1);
}

template <class T>
void backward_impl(const Problem<T>& pb, const Operand<const T>& dout, const Operand<const T>& out, const T* lse,
                   const Operand<T>& dq, const Operand<T>& dk, const Operand<T>& dv) {
  const std::int64_t br = pb.block, bc = pb.block;
  parallel_for(
      pb.batch,
      [&](std::int64_t begin, std::int64_t end) {
        std::vector<T> p(static_cast<std::size_t>(br * bc)), dp(static_cast<std::size_t>(br * bc));
        std::vector<T> d(static_cast<std::size_t>(pb.L));
        for (std::int64_t b = begin; b < end; ++b) {
          const T* go = dout.at(b);
          const T* o = out.at(b);
          const std::int64_t lg = dout.ld, lo = out.ld;
          for (std::int64_t i = 0; i < pb.L; ++i) {
            T acc = 0;
            for (std::int64_t e = 0; e < pb.Ev; ++e) acc += go[i * lg + e] * o[i * lo + e];
            d[static_cast<std::size_t>(i)] = acc;
          }
          const T* q = pb.q.at(b);
          const T* k = pb.k.at(b);
          const T* v = pb.v.at(b);
          const std::int64_t lq = pb.q.ld, lk = pb.k.ld, lv = pb.v.ld;
          T* dqb = dq.p ? dq.at(b) : nullptr;
          T* dkb = dk.p ? dk.at(b) : nullptr;
          T* dvb = dv.p ? dv.at(b) : nullptr;
          const T scale = static_cast<T>(pb.args.scale);
          for (std::int64_t j0 = 0; j0 < pb.S; j0 += bc) {
            const std::int64_t cols = std::min(bc, pb.S - j0);
            // Causal: rows i >= j0 only.
            const std::int64_t i_first = pb.args.causal ? (j0 / br) * br : 0;
            for (std::int64_t i0 = i_first; i0 < pb.L; i0 += br) {
              const std::int64_t rows = std::min(br, pb.L - i0);
              pb.scores(b, i0, rows, j0, cols, p.data(), bc);
              for (std::int64_t r = 0; r < rows; ++r) {
                const T l = lse[b * pb.L + i0 + r];
                T* pr = p.data() + r * bc;
                for (std::int64_t c = 0; c < cols; ++c) pr[c] -= l;
                exp_inplace(pr, cols);
              }
              // dP~ = dO V^T.
              gemm<T>(false, true, rows, cols, pb.Ev, T(1), go + i0 * lg, lg, v + j0 * lv, lv, T(0), dp.data(), bc);
              // dS = P o (dP~ o Z - D), in dp; then P becomes P~ = P o Z for dV.
              for (std::int64_t r = 0; r < rows; ++r) {
                T* pr = p.data() + r * bc;
                T* dpr = dp.data() + r * bc;
                const T di = d[static_cast<std::size_t>(i0 + r)];
                for (std::int64_t c = 0; c < cols; ++c) {
                  const T z = pb.dropout() ? pb.dropped(b, i0 + r, j0 + c) : T(1);
                  dpr[c] = pr[c] * (dpr[c] * z - di);
                  pr[c] *= z;
                }
              }
              if (dvb) gemm<T>(true, false, cols, pb.Ev, rows, T(1), p.data(), bc, go + i0 * lg, lg, T(1),
                               dvb + j0 * dv.ld, dv.ld);
              if (dqb) gemm<T>(false, false, rows, pb.E, cols, scale, dp.data(), bc, k + j0 * lk, lk, T(1),
                               dqb + i0 * dq.ld, dq.ld);
              if (dkb) gemm<T>(true, false, cols, pb.E, rows, scale, dp.data(), bc, q + i0 * lq, lq, T(1),
                               dkb + j0 * dk.ld, dk.ld);
            }
          }
        }
      },
      1);
}

void require_cpu(const Tensor& t) {
  if (!t.device().is_cpu()) throw DeviceError("this kernel has no CUDA implementation yet");
}

// GELU in float: Phi2(x) = 1 + erf(x / sqrt 2) from two polynomials, so that the loops vectorize
// (a call to erff per element was ~10 % of the char GPT's training step). With a = |x| / sqrt 2:
//   a < 1:       erf(a) = a P(a^2),           P of degree 6, relative error 1.4e-9 in exact arithmetic;
//   1 <= a <= 4: erfc(a) = exp(R(a - 2.5)),   R of degree 10 fit to log erfc, error 1.9e-9;
//   a > 4:       erfc(a) = 0 (it is < 1.6e-8: erf rounds to +-1 in float).
// Both least-squares fits over Chebyshev nodes of the interval (numpy.polyfit, this project's).
// For x < 0 beyond a = 1 the result is erfc(a) itself, not 1 - (1 - erfc(a)): no cancellation.
// Measured in float over [-6, 6] (2e6 points) against scipy's erf in double: erf within 3 ulp;
// 1 + erf within 2.1e-7 absolute everywhere and 3.5e-6 relative down to x = -5.6 (the tests
// in tests/ops/test_attention.cpp check the kernel against std::erf). double: std::erf.
constexpr float kErfSmall[] = {7.882500358e-05f, -8.018859080e-04f, 5.189312622e-03f, -2.685432881e-02f,
                               1.128359735e-01f, -3.761262596e-01f, 1.128379107e+00f};
constexpr float kLogErfc[] = {-4.104941809e-08f, -6.582513379e-08f, 1.844964117e-06f, -1.297614835e-05f,
                              7.693983935e-05f,  -4.207069287e-04f, 2.165525686e-03f, -1.085816510e-02f,
                              -9.438937306e-01f, -5.352680683e+00f, -7.806815147e+00f};
constexpr std::int64_t kGeluChunk = 256;

// c[0] x^(N-1) + ... + c[N-1], unrolled (a loop inside the element loop stops vectorization).
template <std::size_t N, std::size_t... I>
inline float horner_at(const float (&c)[N], float x, std::index_sequence<I...>) {
  float r = c[0];
  ((r = r * x + c[I + 1]), ...);
  return r;
}
template <std::size_t N>
inline float horner(const float (&c)[N], float x) {
  return horner_at(c, x, std::make_index_sequence<N - 1>{});
}

// when ? x : y through bit masks: GCC keeps a branch for a float select under -ftrapping-math.
inline float pick(bool when, float x, float y) {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(when);
  return std::bit_cast<float>((std::bit_cast<std::uint32_t>(x) & m) | (std::bit_cast<std::uint32_t>(y) & ~m));
}

// phi2[i] = 1 + erf(x[i] / sqrt 2) for n <= kGeluChunk values; `tail` is scratch of n floats.
[[gnu::noinline, gnu::target_clones("avx512f", "avx2", "default")]] void phi2(const float* x, std::int64_t n, float* phi, float* tail) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]) * 0.70710678118654752440f;
    const float lo = pick(__builtin_isless(a, 1.0f), 1.0f, a);
    const float ab = pick(__builtin_isgreater(lo, 4.0f), 4.0f, lo);  // NaN stays NaN
    tail[i] = horner(kLogErfc, ab - 2.5f);
  }
  exp_inplace(tail, n);
  for (std::int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]) * 0.70710678118654752440f;
    const float small = a * horner(kErfSmall, a * a);
    const float e = pick(__builtin_isgreater(a, 4.0f), 0.0f, tail[i]);
    const bool pos = __builtin_isgreaterequal(x[i], 0.0f);
    phi[i] = pick(__builtin_isless(a, 1.0f), pick(pos, 1.0f + small, 1.0f - small), pick(pos, 2.0f - e, e));
  }
}

void gelu_chunk(const float* x, std::int64_t n, float* y) {
  float phi[kGeluChunk], tail[kGeluChunk];
  phi2(x, n, phi, tail);
  for (std::int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * phi[i];
}

// grad * (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
void gelu_backward_chunk(const float* g, const float* x, std::int64_t n, float* dx) {
  float phi[kGeluChunk], tail[kGeluChunk], dens[kGeluChunk];
  phi2(x, n, phi, tail);
  for (std::int64_t i = 0; i < n; ++i) dens[i] = -0.5f * x[i] * x[i];
  exp_inplace(dens, n);
  for (std::int64_t i = 0; i < n; ++i) {
    dx[i] = g[i] * (0.5f * phi[i] + x[i] * dens[i] * 0.39894228040143267794f);
  }
}

template <class T> constexpr T kSqrtHalf = T(0.70710678118654752440);
template <class T> constexpr T kSqrt2OverPi = T(0.79788456080286535588);
template <class T> constexpr T kInvSqrt2Pi = T(0.39894228040143267794);
template <class T> constexpr T kGeluCubic = T(0.044715);

}  // namespace

std::int64_t attention_block(std::int64_t e, std::int64_t ev) {
  // OpenBLAS computes M N K <= 262144 on the calling thread: block^2 * max(E, Ev) under it.
  const std::int64_t width = std::max<std::int64_t>({e, ev, 1});
  std::int64_t block = 64;
  while (block > 8 && block * block * width > std::int64_t{65536} * 4) block /= 2;
  return block;
}

Tensor gelu(const Tensor& x_in, bool approximate) {
  require_cpu(x_in);
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    T* o = y.data<T>();
    parallel_for(x.numel(), [&](std::int64_t begin, std::int64_t end) {
      if constexpr (std::is_same_v<T, float>) {
        if (!approximate) {
          for (std::int64_t i = begin; i < end; i += kGeluChunk) gelu_chunk(p + i, std::min(kGeluChunk, end - i), o + i);
          return;
        }
      }
      for (std::int64_t i = begin; i < end; ++i) {
        const T a = p[i];
        o[i] = approximate ? T(0.5) * a * (T(1) + std::tanh(kSqrt2OverPi<T> * (a + kGeluCubic<T> * a * a * a)))
                           : T(0.5) * a * (T(1) + std::erf(a * kSqrtHalf<T>));
      }
    });
  });
  return y;
}

// d/dx: Phi(x) + x phi(x) (exact); 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 c x^2), t = tanh(u).
// At +-inf both give NaN, as torch's do.
Tensor gelu_backward(const Tensor& grad, const Tensor& x_in, bool approximate) {
  require_cpu(x_in);
  const Tensor x = x_in.contiguous();
  const Tensor g = grad.cpu().contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    const T* gp = g.data<T>();
    T* o = dx.data<T>();
    parallel_for(x.numel(), [&](std::int64_t begin, std::int64_t end) {
      if constexpr (std::is_same_v<T, float>) {
        if (!approximate) {
          for (std::int64_t i = begin; i < end; i += kGeluChunk) {
            gelu_backward_chunk(gp + i, p + i, std::min(kGeluChunk, end - i), o + i);
          }
          return;
        }
      }
      for (std::int64_t i = begin; i < end; ++i) {
        const T a = p[i];
        T d;
        if (approximate) {
          const T t = std::tanh(kSqrt2OverPi<T> * (a + kGeluCubic<T> * a * a * a));
          d = T(0.5) * (T(1) + t) +
              T(0.5) * a * (T(1) - t * t) * kSqrt2OverPi<T> * (T(1) + T(3) * kGeluCubic<T> * a * a);
        } else {
          d = T(0.5) * (T(1) + std::erf(a * kSqrtHalf<T>)) + a * std::exp(T(-0.5) * a * a) * kInvSqrt2Pi<T>;
        }
        o[i] = gp[i] * d;
      }
    });
  });
  return dx;
}

std::int64_t attention_batch(const Tensor& t) { return t.dim() == 4 ? t.shape()[0] * t.shape()[1] : t.shape()[0]; }

Tensor attention_result(const Tensor& like, std::int64_t cols, bool zero) {
  Shape shape = like.shape();
  shape.back() = cols;
  const bool heads_inside = like.dim() == 4 && like.strides()[1] < like.strides()[2];
  if (heads_inside) std::swap(shape[1], shape[2]);
  Tensor t = zero ? Tensor::zeros(shape, like.dtype()) : Tensor::empty(shape, like.dtype());
  return heads_inside ? t.transpose(1, 2) : t;
}

AttentionForward attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args) {
  require_cpu(q);
  AttentionForward r;
  const std::int64_t batch = attention_batch(q), L = q.shape()[q.dim() - 2];
  r.lse = Tensor::empty({batch, L}, q.dtype());
  if (k.shape()[k.dim() - 2] == 0) {  // no keys at all: softmax over nothing times nothing is 0, as torch's math path
    r.out = attention_result(q, v.shape()[v.dim() - 1], true);
    r.lse.fill_(-std::numeric_limits<double>::infinity());
    return r;
  }
  r.out = attention_result(q, v.shape()[v.dim() - 1], false);
  dispatch_floating(q.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Problem<T> pb(q, k, v, args);
    forward_impl<T>(pb, out_of<T>(r.out), r.lse.data<T>());
  });
  return r;
}

void attention_backward_into(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const AttentionArgs& args, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv) {
  require_cpu(q);
  const Tensor g = grad.cpu();
  dispatch_floating(q.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Problem<T> pb(q, k, v, args);
    backward_impl<T>(pb, in<T>(g), in<T>(out), lse.data<T>(), out_of<T>(dq), out_of<T>(dk), out_of<T>(dv));
  });
}

AttentionGrads attention_backward(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const AttentionArgs& args,
                                  std::array<bool, 3> needs) {
  // The three products share the recomputed blocks: dQ, dK and dV are computed together (null:
  // not needed), each laid out as its operand.
  AttentionGrads r;
  if (needs[0]) r.query = attention_result(q, q.shape().back(), true);
  if (needs[1]) r.key = attention_result(k, k.shape().back(), true);
  if (needs[2]) r.value = attention_result(v, v.shape().back(), true);
  attention_backward_into(grad, q, k, v, out, lse, args, r.query, r.key, r.value);
  return r;
}

}  // namespace zkynet::kernels
