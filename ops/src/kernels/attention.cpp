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
#include <vector>

namespace zkynet::kernels {

namespace {

using detail::gemm;

// exp(x) for x <= ~0 (the shifted scores), over n values in place. float: Cephes' expf
// (range reduction by ln 2 in two parts, a degree-6 polynomial, 2^n through the exponent bits),
// relative error at most 8.3e-8 (measured over [-87.3, 5]), branch-free so that the loop
// vectorizes; below -87.3 it gives 0, above 80 inf, and NaN stays NaN. double: std::exp.
// NOTE: kept out of line: inlined into the callers' loops, GCC 12 no longer vectorizes it.
[[gnu::noinline]] void exp_inplace(float* x, std::int64_t n) {
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

// What both passes share: sizes, operands, and the masked, scaled scores of one block.
template <class T>
struct Problem {
  std::int64_t batch, L, S, E, Ev, block;
  const T* q;
  const T* k;
  const T* v;
  const AttentionArgs& args;
  double keep;     // 1 - dropout_p
  T drop_scale;    // 1 / keep (0 when everything is dropped)

  Problem(const Tensor& qt, const Tensor& kt, const Tensor& vt, const AttentionArgs& a)
      : batch(qt.shape()[0]), L(qt.shape()[1]), S(kt.shape()[1]), E(qt.shape()[2]), Ev(vt.shape()[2]),
        block(attention_block(E, Ev)), q(qt.data<T>()), k(kt.data<T>()), v(vt.data<T>()), args(a),
        keep(1.0 - a.dropout_p), drop_scale(a.dropout_p >= 1.0 ? T(0) : static_cast<T>(1.0 / (1.0 - a.dropout_p))) {}

  bool dropout() const { return args.dropout_p > 0.0; }

  // The last key block a causal row block [i0, i0 + rows) needs: keys j <= i0 + rows - 1.
  std::int64_t key_end(std::int64_t i0, std::int64_t rows) const {
    return args.causal ? std::min(S, i0 + rows) : S;
  }

  // s (rows x cols, leading dimension ld) = scale Q[i0:] K[j0:]^T, masked.
  void scores(std::int64_t b, std::int64_t i0, std::int64_t rows, std::int64_t j0, std::int64_t cols, T* s,
              std::int64_t ld) const {
    gemm<T>(false, true, rows, cols, E, static_cast<T>(args.scale), q + (b * L + i0) * E, E, k + (b * S + j0) * E, E,
            T(0), s, ld);
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
void forward_impl(const Problem<T>& pb, T* out, T* lse) {
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
            gemm<T>(false, false, rows, pb.Ev, cols, T(1), s.data(), bc, pb.v + (b * pb.S + j0) * pb.Ev, pb.Ev, T(1),
                    acc.data(), pb.Ev);
          }
          // A row with every key masked: 0 / 0 = NaN and lse = -inf, as PyTorch's math path gives.
          for (std::int64_t r = 0; r < rows; ++r) {
            T* o = out + (b * pb.L + i0 + r) * pb.Ev;
            const T* ar = acc.data() + r * pb.Ev;
            for (std::int64_t e = 0; e < pb.Ev; ++e) o[e] = ar[e] / sum[r];
            lse[b * pb.L + i0 + r] = mx[r] + std::log(sum[r]);
          }
        }
      },
      1);
}

template <class T>
void backward_impl(const Problem<T>& pb, const T* dout, const T* out, const T* lse, T* dq, T* dk, T* dv) {
  const std::int64_t br = pb.block, bc = pb.block;
  parallel_for(
      pb.batch,
      [&](std::int64_t begin, std::int64_t end) {
        std::vector<T> p(static_cast<std::size_t>(br * bc)), dp(static_cast<std::size_t>(br * bc));
        std::vector<T> d(static_cast<std::size_t>(pb.L));
        for (std::int64_t b = begin; b < end; ++b) {
          const T* go = dout + b * pb.L * pb.Ev;
          const T* o = out + b * pb.L * pb.Ev;
          for (std::int64_t i = 0; i < pb.L; ++i) {
            T acc = 0;
            for (std::int64_t e = 0; e < pb.Ev; ++e) acc += go[i * pb.Ev + e] * o[i * pb.Ev + e];
            d[static_cast<std::size_t>(i)] = acc;
          }
          const T* q = pb.q + b * pb.L * pb.E;
          const T* k = pb.k + b * pb.S * pb.E;
          const T* v = pb.v + b * pb.S * pb.Ev;
          T* dqb = dq ? dq + b * pb.L * pb.E : nullptr;
          T* dkb = dk ? dk + b * pb.S * pb.E : nullptr;
          T* dvb = dv ? dv + b * pb.S * pb.Ev : nullptr;
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
              gemm<T>(false, true, rows, cols, pb.Ev, T(1), go + i0 * pb.Ev, pb.Ev, v + j0 * pb.Ev, pb.Ev, T(0),
                      dp.data(), bc);
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
              if (dv) gemm<T>(true, false, cols, pb.Ev, rows, T(1), p.data(), bc, go + i0 * pb.Ev, pb.Ev, T(1),
                              dvb + j0 * pb.Ev, pb.Ev);
              if (dq) gemm<T>(false, false, rows, pb.E, cols, scale, dp.data(), bc, k + j0 * pb.E, pb.E, T(1),
                              dqb + i0 * pb.E, pb.E);
              if (dk) gemm<T>(true, false, cols, pb.E, rows, scale, dp.data(), bc, q + i0 * pb.E, pb.E, T(1),
                              dkb + j0 * pb.E, pb.E);
            }
          }
        }
      },
      1);
}

void require_cpu(const Tensor& t) {
  if (!t.device().is_cpu()) throw DeviceError("this kernel has no CUDA implementation yet");
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

AttentionForward attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args) {
  require_cpu(q);
  AttentionForward r;
  const std::int64_t batch = q.shape()[0], L = q.shape()[1], Ev = v.shape()[2];
  r.out = Tensor::empty({batch, L, Ev}, q.dtype());
  r.lse = Tensor::empty({batch, L}, q.dtype());
  if (k.shape()[1] == 0) {  // no keys at all: softmax over nothing times nothing is 0, as torch's math path
    r.out = Tensor::zeros({batch, L, Ev}, q.dtype());
    r.lse.fill_(-std::numeric_limits<double>::infinity());
    return r;
  }
  dispatch_floating(q.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Problem<T> pb(q, k, v, args);
    forward_impl<T>(pb, r.out.data<T>(), r.lse.data<T>());
  });
  return r;
}

AttentionGrads attention_backward(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const AttentionArgs& args,
                                  std::array<bool, 3> needs) {
  require_cpu(q);
  const Tensor g = grad.cpu().contiguous();
  // The three products share the recomputed blocks: dQ, dK and dV are computed together (null: not needed).
  AttentionGrads r;
  if (needs[0]) r.query = Tensor::zeros(q.shape(), q.dtype());
  if (needs[1]) r.key = Tensor::zeros(k.shape(), k.dtype());
  if (needs[2]) r.value = Tensor::zeros(v.shape(), v.dtype());
  dispatch_floating(q.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const Problem<T> pb(q, k, v, args);
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
    backward_impl<T>(pb, g.data<T>(), out.data<T>(), lse.data<T>(), ptr(r.query), ptr(r.key), ptr(r.value));
  });
  return r;
}

}  // namespace zkynet::kernels
