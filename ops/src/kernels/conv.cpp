// Kernels of conv2d, max_pool2d and avg_pool2d on contiguous NCHW tensors. The operands and the
// geometry are checked here for both devices; CUDA operands then go to cuda/conv.cu (cuDNN) and
// cuda/pooling.cu, and everything below the checks is the CPU's.
//
// conv2d works image by image: it unfolds image n (im2col) into a (groups * Kga, L) block of
// `columns`, L = Ho * Wo: row (c, ki, kj) of group g holds input channel c at kernel offset
// (ki, kj) for every output position, and with a bias each group gets one more row, of ones,
// so that the bias rides along in the GEMMs: the weight gets the bias as an extra column in
// the forward, and the weight gradient's GEMM yields the bias gradient as its extra column.
// Then one GEMM per group writes the image's output straight into NCHW. Border checks happen
// once per kernel row, not per element: each (kernel offset, output row) copies a valid run
// of the input row and writes zeros around it. The backward goes image by image as well:
// dW += dY_n columns_n^T, and dX_n = fold(W^T dY_n) (col2im).
//
// NOTE: the images are split across the thread pool and every GEMM runs inside it, on one
// thread. OpenBLAS (pthreads) must therefore never thread a call itself: a GEMM that wakes its
// own threads inside an OpenMP region took 12 ms instead of 4 on the 2-core VM, both pools
// spinning for the same cores. OpenBLAS runs a call on the calling thread when
// M * N * K <= 65536 * 4 (interface/gemm.c, SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD),
// so serial_gemm() splits larger products into blocks below that. (Work that makes a single
// task runs on the calling thread, outside any OpenMP region, with unsplit GEMMs.)
#include <zkynet/framework/error.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/ops/conv.h>

#include "blas.h"

#include "accumulate.h"
#include "cuda/api.h"
#include "same_device.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace zkynet::kernels {
namespace {

using Pair = std::array<std::int64_t, 2>;

std::string pair_str(Pair p) { return "(" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")"; }

// One spatial axis of a sliding window: input length, output length, kernel size, stride,
// padding, dilation.
struct Axis {
  std::int64_t in = 0, out = 0, k = 1, s = 1, p = 0, d = 1;

  // [lo, hi): the outputs whose input at kernel offset j lies inside [0, in).
  std::pair<std::int64_t, std::int64_t> valid_outputs(std::int64_t j) const {
    const std::int64_t first = p - j * d;  // output o reads o * s - first
    const std::int64_t lo = first <= 0 ? 0 : first / s + (first % s != 0);  // ceil, without overflow near 2^63
    const std::int64_t last = in - 1 + first;
    const std::int64_t hi = last < 0 ? 0 : std::min(out, last / s + 1);
    return {std::min(lo, hi), hi};
  }

  // [lo, hi): the kernel offsets of output o that fall inside [0, in).
  std::pair<std::int64_t, std::int64_t> valid_taps(std::int64_t o) const {
    const std::int64_t start = o * s - p;
    const std::int64_t lo = start < 0 ? -start / d + (-start % d != 0) : 0;
    const std::int64_t room = in - 1 - start;
    const std::int64_t hi = room < 0 ? 0 : std::min(k, room / d + 1);
    return {std::min(lo, hi), hi};
  }
};

// Floor of (in + 2p - d (k - 1) - 1) / s, plus one: PyTorch's output size without ceil_mode.
// Sizes near int64's limits must not wrap around: a dilated kernel beyond int64 fits no input
// (max_pool2d with kernel_size 2**63 - 1 and dilation 2 gave one output), a padded input beyond
// it is refused.
std::int64_t output_size(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t p, std::int64_t d) {
  std::int64_t padded = 0, dilated = 0;
  if (__builtin_mul_overflow(p, 2, &padded) || __builtin_add_overflow(padded, in, &padded)) {
    throw ShapeError("input size " + std::to_string(in) + " with padding " + std::to_string(p) + " on both sides overflows int64");
  }
  if (__builtin_mul_overflow(d, k - 1, &dilated) || dilated >= padded) return 0;
  return (padded - dilated - 1) / s + 1;
}

void require_floating_4d(const Tensor& x, std::string_view what, const std::string& context) {
  if (!is_floating(x.dtype())) {
    throw TypeError(context + ": " + std::string(what) + " must be float32 or float64, got " +
                    std::string(dtype_name(x.dtype())));
  }
  if (x.dim() != 4) {
    throw ShapeError(context + ": " + std::string(what) + " must be 4-d, got " + std::to_string(x.dim()) + "-d " +
                     shape_str(x.shape()));
  }
}

void require_same_dtype(const Tensor& x, const Tensor& y, std::string_view what, const std::string& context) {
  if (x.dtype() != y.dtype()) {
    throw TypeError(context + ": " + std::string(what) + " is " + std::string(dtype_name(y.dtype())) +
                    " but input is " + std::string(dtype_name(x.dtype())));
  }
}

void require_at_least(Pair v, std::int64_t min, std::string_view what, const std::string& context) {
  if (v[0] < min || v[1] < min) {
    throw UsageError(context + ": " + std::string(what) + " must be " + (min == 0 ? "non-negative" : "positive") +
                     ", got " + pair_str(v));
  }
}

// ---- conv2d geometry -------------------------------------------------------------------------

struct ConvGeometry {
  std::int64_t n = 0, c = 0, o = 0, groups = 1;
  std::int64_t cg = 0, og = 0;  // channels per group, in and out
  Axis h, w;
  std::int64_t taps = 0;  // kH * kW
  std::int64_t kg = 0;    // Cg * kH * kW: the rows of one group's columns without the bias row
  std::int64_t kga = 0;   // kg + 1 with a bias (its row of ones), else kg
  std::int64_t l = 0;     // Ho * Wo: output positions per image
};

std::string conv_context(const Tensor& input, const Tensor& weight, const Tensor* bias) {
  std::string s = "conv2d: input " + shape_str(input.shape()) + ", weight " + shape_str(weight.shape());
  if (bias && bias->defined()) s += ", bias " + shape_str(bias->shape());
  return s;
}

// Checks the operands as torch.nn.functional.conv2d does; `bias` may be undefined or null.
ConvGeometry conv_geometry(const Tensor& input, const Tensor& weight, const Tensor* bias, bool has_bias,
                           const op::Conv2dOptions& opt) {
  const std::string ctx = conv_context(input, weight, bias);
  require_floating_4d(input, "input", ctx);
  require_same_dtype(input, weight, "weight", ctx);
  if (weight.dim() != 4) {
    throw ShapeError(ctx + ": weight must be 4-d (out_channels, in_channels / groups, kH, kW), got " +
                     std::to_string(weight.dim()) + "-d");
  }
  require_at_least(opt.stride, 1, "stride", ctx);
  require_at_least(opt.padding, 0, "padding", ctx);
  require_at_least(opt.dilation, 1, "dilation", ctx);
  if (opt.groups < 1) throw UsageError(ctx + ": groups must be positive, got " + std::to_string(opt.groups));
  ConvGeometry g;
  g.n = input.size(0);
  g.c = input.size(1);
  g.o = weight.size(0);
  g.groups = opt.groups;
  if (weight.size(1) < 1 || weight.size(2) < 1 || weight.size(3) < 1) {
    throw ShapeError(ctx + ": weight dimensions 1 to 3 must be positive");
  }
  if (g.o % g.groups != 0) {
    throw ShapeError(ctx + ": groups=" + std::to_string(g.groups) + " does not divide the " + std::to_string(g.o) +
                     " output channels");
  }
  if (weight.size(1) * g.groups != g.c) {
    throw ShapeError(ctx + ": with groups=" + std::to_string(g.groups) + " the weight expects " +
                     std::to_string(weight.size(1) * g.groups) + " input channels, but the input has " +
                     std::to_string(g.c));
  }
  if (bias && bias->defined()) {
    require_same_dtype(input, *bias, "bias", ctx);
    if (bias->dim() != 1 || bias->size(0) != g.o) {
      throw ShapeError(ctx + ": bias must have shape (" + std::to_string(g.o) + ",), one per output channel");
    }
  }
  g.cg = g.c / g.groups;
  g.og = g.o / g.groups;
  const std::int64_t kh = weight.size(2);
  const std::int64_t kw = weight.size(3);
  g.h = {input.size(2), 0, kh, opt.stride[0], opt.padding[0], opt.dilation[0]};
  g.w = {input.size(3), 0, kw, opt.stride[1], opt.padding[1], opt.dilation[1]};
  g.h.out = output_size(g.h.in, kh, g.h.s, g.h.p, g.h.d);
  g.w.out = output_size(g.w.in, kw, g.w.s, g.w.p, g.w.d);
  if (g.h.out < 1 || g.w.out < 1) {
    throw ShapeError(ctx + ": the padded input " + pair_str({g.h.in + 2 * g.h.p, g.w.in + 2 * g.w.p}) +
                     " is smaller than the kernel " + pair_str({kh, kw}) + " dilated by " +
                     pair_str({g.h.d, g.w.d}) + ": output size " +
                     pair_str({g.h.out, g.w.out}) + " is too small");
  }
  g.taps = kh * kw;
  g.kg = g.cg * g.taps;
  g.kga = g.kg + (has_bias ? 1 : 0);
  g.l = g.h.out * g.w.out;
  return g;
}

// ---- BLAS --------------------------------------------------------------------------------------

using detail::gemm;

// The largest m * n * k that OpenBLAS computes on the calling thread (see the NOTE above).
constexpr std::int64_t kSerialGemm = std::int64_t{65536} * 4;

// n split into the fewest equal blocks of at most `most` (at least 1).
std::int64_t block_of(std::int64_t n, std::int64_t most) {
  most = std::max<std::int64_t>(most, 1);
  const std::int64_t blocks = (n + most - 1) / most;
  return blocks <= 1 ? n : (n + blocks - 1) / blocks;
}

// gemm() in blocks of at most kSerialGemm multiply-adds, so that each runs on this thread.
template <class T>
void serial_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
                 const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  if (m == 0 || n == 0 || k == 0) return gemm<T>(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  const std::int64_t kb = block_of(k, 2048);
  const std::int64_t mb = block_of(m, 64);
  const std::int64_t nb = block_of(n, kSerialGemm / (kb * mb));
  for (std::int64_t i0 = 0; i0 < m; i0 += mb) {
    for (std::int64_t j0 = 0; j0 < n; j0 += nb) {
      for (std::int64_t p0 = 0; p0 < k; p0 += kb) {
        const T* ab = a + (ta ? p0 * lda + i0 : i0 * lda + p0);
        const T* bb = b + (tb ? j0 * ldb + p0 : p0 * ldb + j0);
        gemm<T>(ta, tb, std::min(mb, m - i0), std::min(nb, n - j0), std::min(kb, k - p0), ab, lda, bb, ldb,
                p0 == 0 ? beta : T(1), c + i0 * ldc + j0, ldc);
      }
    }
  }
}

// The GEMM for work split into `tasks`: inside the thread pool, serial_gemm; a single task
// runs on the calling thread, where OpenBLAS may thread a large product itself (one big
// image, or a batch of one).
template <class T>
auto gemm_for(std::int64_t tasks) {
  using Gemm = decltype(&serial_gemm<T>);  // picks gemm()'s overload without alpha
  return tasks > 1 ? &serial_gemm<T> : static_cast<Gemm>(&gemm<T>);
}

// c ? a : b without a branch (bit masks), for selections the branch predictor cannot learn.
template <class T>
T select(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  const U mask = U(0) - static_cast<U>(c);
  return std::bit_cast<T>(static_cast<U>((std::bit_cast<U>(a) & mask) | (std::bit_cast<U>(b) & ~mask)));
}

// The per-item work below which parallel_for keeps a loop on the calling thread.
std::int64_t grain_for(std::int64_t work_per_item) {
  return std::max<std::int64_t>(1, kParallelGrain / std::max<std::int64_t>(work_per_item, 1));
}

// How many tasks to split `items` of `work_per_item` each into: one per thread when the
// work is worth waking them, else one.
std::int64_t task_count(std::int64_t items, std::int64_t work_per_item) {
  const std::int64_t worth = items * std::max<std::int64_t>(work_per_item, 1) / kParallelGrain;
  return std::clamp<std::int64_t>(std::min<std::int64_t>(worth, num_threads()), 1, std::max<std::int64_t>(items, 1));
}

// Runs body(begin, end, task) for `tasks` contiguous ranges of [0, n), one per pool thread.
template <class Body>
void for_each_task(std::int64_t n, std::int64_t tasks, Body&& body) {
  parallel_for(
      tasks,
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t t = first; t < last; ++t) body(t * n / tasks, (t + 1) * n / tasks, t);
      },
      1);
}

// ---- im2col / col2im -------------------------------------------------------------------------

// Copies n elements. Rows of small images are short (11 floats for 13x13 planes), and GCC
// turns plain copy loops into memmove calls, which then cost more than the copy itself; a
// fixed-size memcpy compiles to inline vector moves instead.
template <class T>
void copy_short(const T* src, T* dst, std::int64_t n) {
  constexpr std::int64_t kChunk = 64 / sizeof(T);
  std::int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) std::memcpy(dst + i, src + i, 64);
  for (std::int64_t part = kChunk / 2; part >= 1; part /= 2) {
    if ((n - i) & part) {
      std::memcpy(dst + i, src + i, static_cast<std::size_t>(part) * sizeof(T));
      i += part;
    }
  }
}

// dst[i] += src[i] for n elements, in fixed-size blocks that compile to single vector adds
// (GCC leaves a loop of 11 iterations scalar when its vectors hold 16 floats).
template <class T>
void add_short(const T* __restrict__ src, T* __restrict__ dst, std::int64_t n) {
  constexpr std::int64_t kChunk = 32 / sizeof(T);
  std::int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    for (std::int64_t j = 0; j < kChunk; ++j) dst[i + j] += src[i + j];
  }
  if ((n - i) & (kChunk / 2)) {
    for (std::int64_t j = 0; j < kChunk / 2; ++j) dst[i + j] += src[i + j];
    i += kChunk / 2;
  }
  for (; i < n; ++i) dst[i] += src[i];
}

// Unfolds one input plane into the kH * kW rows starting at `dst` (L long, contiguous): each
// row holds the plane's value under that kernel offset for every output position (zero where
// it falls in the padding).
template <class T>
void unfold_plane(const T* plane, T* dst, const ConvGeometry& g) {
  const Axis& h = g.h;
  const Axis& w = g.w;
  for (std::int64_t ki = 0; ki < h.k; ++ki) {
    const auto [hlo, hhi] = h.valid_outputs(ki);
    for (std::int64_t kj = 0; kj < w.k; ++kj) {
      T* row = dst + (ki * w.k + kj) * g.l;
      const auto [wlo, whi] = w.valid_outputs(kj);
      if (wlo == whi) {  // this kernel column only ever reads padding
        std::fill(row, row + g.l, T(0));
        continue;
      }
      std::fill(row, row + hlo * w.out, T(0));
      for (std::int64_t oh = hlo; oh < hhi; ++oh) {
        T* r = row + oh * w.out;
        const T* src = plane + (oh * h.s - h.p + ki * h.d) * w.in + (wlo * w.s - w.p + kj * w.d);
        std::fill(r, r + wlo, T(0));
        if (w.s == 1) {
          copy_short(src, r + wlo, whi - wlo);
        } else {
          for (std::int64_t ow = wlo; ow < whi; ++ow) r[ow] = src[(ow - wlo) * w.s];
        }
        std::fill(r + whi, r + w.out, T(0));
      }
      std::fill(row + hhi * w.out, row + g.l, T(0));
    }
  }
}

// The adjoint of unfold_plane: adds every row entry back onto the plane position it came from.
template <class T>
void fold_plane(const T* src, T* plane, const ConvGeometry& g) {
  const Axis& h = g.h;
  const Axis& w = g.w;
  for (std::int64_t ki = 0; ki < h.k; ++ki) {
    const auto [hlo, hhi] = h.valid_outputs(ki);
    for (std::int64_t kj = 0; kj < w.k; ++kj) {
      const T* row = src + (ki * w.k + kj) * g.l;
      const auto [wlo, whi] = w.valid_outputs(kj);
      if (wlo == whi) continue;
      for (std::int64_t oh = hlo; oh < hhi; ++oh) {
        const T* r = row + oh * w.out;
        T* dst = plane + (oh * h.s - h.p + ki * h.d) * w.in + (wlo * w.s - w.p + kj * w.d);
        if (w.s == 1) {
          add_short(r + wlo, dst, whi - wlo);
        } else {
          for (std::int64_t ow = wlo; ow < whi; ++ow) dst[(ow - wlo) * w.s] += r[ow];
        }
      }
    }
  }
}

// Unfolds image `x` (C planes) into its (groups * kga, L) columns block at `dst`.
template <class T>
void unfold_image(const T* x, T* dst, const ConvGeometry& g) {
  const std::int64_t plane = g.h.in * g.w.in;
  for (std::int64_t c = 0; c < g.c; ++c) {
    const std::int64_t grp = c / g.cg;
    unfold_plane(x + c * plane, dst + (grp * g.kga + (c % g.cg) * g.taps) * g.l, g);
  }
  if (g.kga > g.kg) {
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      T* ones = dst + (grp * g.kga + g.kg) * g.l;
      std::fill(ones, ones + g.l, T(1));
    }
  }
}

}  // namespace

// ---- conv2d ------------------------------------------------------------------------------------

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const op::Conv2dOptions& options,
              Tensor* columns) {
  const bool has_bias = bias.defined();
  const ConvGeometry g = conv_geometry(input, weight, &bias, has_bias, options);
  detail::require_same_device("conv2d", input.device(), weight, bias);
  if (input.device().is_cuda()) return cuda::conv2d(input, weight, bias, options);  // keeps no columns
  const Tensor x = input.contiguous();
  const Tensor w = weight.contiguous();
  const DType dtype = x.dtype();
  const std::int64_t rows = g.groups * g.kga;  // of one image's columns
  Tensor out = Tensor::empty({g.n, g.o, g.h.out, g.w.out}, dtype);
  const std::int64_t tasks = task_count(g.n, rows * g.l * (g.og + 1));
  // The columns of every image when the caller keeps them, else one block per task.
  Tensor col = Tensor::empty({columns ? g.n : tasks, rows, g.l}, dtype);
  dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    // The weight as (O, kga): with the bias as its last column when there is one.
    Tensor wa = w;
    if (has_bias) {
      wa = Tensor::empty({g.o, g.kga}, dtype);
      const Tensor b = bias.contiguous();
      const T* wp = w.data<T>();
      const T* bp = b.data<T>();
      T* ap = wa.data<T>();
      for (std::int64_t o = 0; o < g.o; ++o) {
        std::copy(wp + o * g.kg, wp + (o + 1) * g.kg, ap + o * g.kga);
        ap[o * g.kga + g.kg] = bp[o];
      }
    }
    const T* ap = wa.data<T>();
    const T* xp = x.data<T>();
    T* cp = col.data<T>();
    T* op = out.data<T>();
    const std::int64_t image = g.c * g.h.in * g.w.in;
    const auto mm = gemm_for<T>(tasks);
    for_each_task(g.n, tasks, [&](std::int64_t begin, std::int64_t end, std::int64_t task) {
      for (std::int64_t n = begin; n < end; ++n) {
        T* cn = cp + (columns ? n : task) * rows * g.l;
        unfold_image(xp + n * image, cn, g);
        for (std::int64_t grp = 0; grp < g.groups; ++grp) {
          mm(false, false, g.og, g.l, g.kga, ap + grp * g.og * g.kga, g.kga, cn + grp * g.kga * g.l, g.l, T(0),
             op + (n * g.o + grp * g.og) * g.l, g.l);
        }
      }
    });
  });
  if (columns) *columns = col;
  return out;
}

Conv2dGrads conv2d_backward(const Tensor& grad, const Tensor& input, const Tensor& weight, bool has_bias,
                            const Tensor& columns, const op::Conv2dOptions& options, std::array<bool, 3> needs) {
  const ConvGeometry g = conv_geometry(input, weight, nullptr, has_bias, options);
  const std::string ctx = conv_context(input, weight, nullptr);
  const Shape out_shape{g.n, g.o, g.h.out, g.w.out};
  if (grad.shape() != out_shape) {
    throw ShapeError(ctx + ": gradient " + shape_str(grad.shape()) + " differs from the output's shape " +
                     shape_str(out_shape));
  }
  require_same_dtype(input, grad, "gradient", ctx);
  detail::require_same_device("conv2d", input.device(), grad, weight, columns);
  if (input.device().is_cuda()) return cuda::conv2d_backward(grad, input, weight, has_bias, options, needs);
  const std::int64_t rows = g.groups * g.kga;
  const bool saved = columns.defined();
  if (saved && (columns.shape() != Shape{g.n, rows, g.l} || columns.dtype() != input.dtype())) {
    throw ShapeError(ctx + ": saved columns " + shape_str(columns.shape()) + " do not fit");
  }
  const bool need_x = needs[0];
  const bool need_w = needs[1];
  const bool need_b = needs[2] && has_bias;
  const Tensor gy = grad.contiguous();
  const Tensor x = input.contiguous();
  const Tensor w = weight.contiguous();
  const Tensor col = saved ? columns.contiguous() : Tensor();
  const DType dtype = input.dtype();
  Conv2dGrads r;
  if (!need_x && !need_w && !need_b) return r;
  dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* gp = gy.data<T>();
    // Without the weight gradient's GEMM, the bias gradient is the output gradient's sum.
    if (need_b && !need_w) {
      r.bias = Tensor::empty({g.o}, dtype);
      T* bg = r.bias.template data<T>();
      std::vector<double> sums(static_cast<std::size_t>(g.o));
      for (std::int64_t n = 0; n < g.n; ++n) {
        for (std::int64_t o = 0; o < g.o; ++o) {
          sums[static_cast<std::size_t>(o)] += detail::strided_sum(gp + (n * g.o + o) * g.l, g.l, 1);
        }
      }
      for (std::int64_t o = 0; o < g.o; ++o) bg[o] = static_cast<T>(sums[static_cast<std::size_t>(o)]);
    }
    if (!need_x && !need_w) return;
    const std::int64_t tasks = task_count(g.n, rows * g.l * (g.og + 1) * (need_x && need_w ? 2 : 1));
    // Per task: the transposed weight gradient dW_g^T (kga x og) of every group, to add up
    // afterwards; the current image's output gradient transposed, (L, O); its columns when
    // none were saved; and its column gradient. The transposes make both GEMMs plain (NN)
    // products: OpenBLAS's small-matrix kernels take NN, and send A B^T through packing,
    // which costs more than the product at these sizes.
    // (Transposing dY_n pays off when the product is deep enough to amortize it: measured
    // 1.5x faster for the (32, 16, 3, 3) weight, 4x slower for (16, 1, 3, 3).)
    const bool transpose_dy = g.kga >= 32;
    Tensor dw_parts = need_w ? Tensor::zeros({tasks, g.groups, g.kga, g.og}, dtype) : Tensor();
    Tensor gyt_scratch = need_w && transpose_dy ? Tensor::empty({tasks, g.l, g.o}, dtype) : Tensor();
    Tensor col_scratch = need_w && !saved ? Tensor::empty({tasks, rows, g.l}, dtype) : Tensor();
    Tensor dcol_scratch = need_x ? Tensor::empty({tasks, g.groups * g.kg, g.l}, dtype) : Tensor();
    if (need_x) r.input = Tensor::empty(input.shape(), dtype);
    // W_g^T (kg x og) for every group, so that dcol = W_g^T dY_n is a plain product too.
    Tensor wt;
    if (need_x) {
      wt = Tensor::empty({g.groups, g.kg, g.og}, dtype);
      const T* wp = w.data<T>();
      T* tp = wt.data<T>();
      for (std::int64_t grp = 0; grp < g.groups; ++grp) {
        for (std::int64_t o = 0; o < g.og; ++o) {
          for (std::int64_t k = 0; k < g.kg; ++k) tp[(grp * g.kg + k) * g.og + o] = wp[(grp * g.og + o) * g.kg + k];
        }
      }
    }
    const std::int64_t plane = g.h.in * g.w.in;
    const auto mm = gemm_for<T>(tasks);
    for_each_task(g.n, tasks, [&](std::int64_t begin, std::int64_t end, std::int64_t task) {
      for (std::int64_t n = begin; n < end; ++n) {
        const T* gn = gp + n * g.o * g.l;
        if (need_w) {
          const T* cn;
          if (saved) {
            cn = col.data<T>() + n * rows * g.l;
          } else {
            T* scratch = col_scratch.data<T>() + task * rows * g.l;
            unfold_image(x.data<T>() + n * g.c * plane, scratch, g);
            cn = scratch;
          }
          const T* b = gn;  // dY_n^T, read transposed or transposed first
          if (transpose_dy) {
            T* gyt = gyt_scratch.data<T>() + task * g.l * g.o;
            for (std::int64_t o = 0; o < g.o; ++o) {
              for (std::int64_t i = 0; i < g.l; ++i) gyt[i * g.o + o] = gn[o * g.l + i];
            }
            b = gyt;
          }
          T* dwt = dw_parts.data<T>() + task * g.o * g.kga;
          for (std::int64_t grp = 0; grp < g.groups; ++grp) {
            mm(false, !transpose_dy, g.kga, g.og, g.l, cn + grp * g.kga * g.l, g.l,
               transpose_dy ? b + grp * g.og : b + grp * g.og * g.l, transpose_dy ? g.o : g.l, T(1),
               dwt + grp * g.kga * g.og, g.og);
          }
        }
        if (need_x) {
          T* dcol = dcol_scratch.data<T>() + task * g.groups * g.kg * g.l;
          for (std::int64_t grp = 0; grp < g.groups; ++grp) {
            mm(false, false, g.kg, g.l, g.og, wt.data<T>() + grp * g.kg * g.og, g.og, gn + grp * g.og * g.l, g.l,
               T(0), dcol + grp * g.kg * g.l, g.l);
          }
          T* dx = r.input.template data<T>() + n * g.c * plane;
          std::fill(dx, dx + g.c * plane, T(0));
          for (std::int64_t c = 0; c < g.c; ++c) fold_plane(dcol + c * g.taps * g.l, dx + c * plane, g);
        }
      }
    });
    if (!need_w) return;
    // Add up the tasks' parts, then transpose back and split off the bias row.
    T* dwt = dw_parts.data<T>();
    const std::int64_t size = g.o * g.kga;
    for (std::int64_t t = 1; t < tasks; ++t) {
      const T* part = dwt + t * size;
      for (std::int64_t i = 0; i < size; ++i) dwt[i] += part[i];
    }
    r.weight = Tensor::empty(weight.shape(), dtype);
    T* wg = r.weight.template data<T>();
    T* bg = nullptr;
    if (need_b) {
      r.bias = Tensor::empty({g.o}, dtype);
      bg = r.bias.template data<T>();
    }
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      const T* part = dwt + grp * g.kga * g.og;
      for (std::int64_t o = 0; o < g.og; ++o) {
        T* row = wg + (grp * g.og + o) * g.kg;
        for (std::int64_t k = 0; k < g.kg; ++k) row[k] = part[k * g.og + o];
        if (bg) bg[grp * g.og + o] = part[g.kg * g.og + o];
      }
    }
  });
  return r;
}

// ---- pooling -----------------------------------------------------------------------------------

namespace {

struct PoolGeometry {
  std::int64_t n = 0, c = 0;
  Axis h, w;
};

// Checks a pooling input and window as PyTorch does (padding at most half the kernel; the
// stride, given or the kernel size, positive).
PoolGeometry pool_geometry(std::string_view op, const Tensor& input, Pair kernel, const op::PoolStride& given_stride,
                           Pair padding, Pair dilation) {
  const Pair stride = given_stride.resolve(kernel);
  const std::string ctx = std::string(op) + ": input " + shape_str(input.shape()) + ", kernel_size " + pair_str(kernel);
  require_floating_4d(input, "input", ctx);
  require_at_least(kernel, 1, "kernel_size", ctx);
  require_at_least(stride, 1, "stride", ctx);
  require_at_least(padding, 0, "padding", ctx);
  require_at_least(dilation, 1, "dilation", ctx);
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2) {
    throw ShapeError(ctx + ": padding " + pair_str(padding) + " must be at most half the kernel size");
  }
  PoolGeometry g;
  g.n = input.size(0);
  g.c = input.size(1);
  g.h = {input.size(2), 0, kernel[0], stride[0], padding[0], dilation[0]};
  g.w = {input.size(3), 0, kernel[1], stride[1], padding[1], dilation[1]};
  g.h.out = output_size(g.h.in, g.h.k, g.h.s, g.h.p, g.h.d);
  g.w.out = output_size(g.w.in, g.w.k, g.w.s, g.w.p, g.w.d);
  if (g.h.out < 1 || g.w.out < 1) {
    throw ShapeError(ctx + ": output size " + pair_str({g.h.out, g.w.out}) + " is too small");
  }
  return g;
}

// The geometry as the CUDA kernels take it.
cuda::PoolWindow pool_window(const PoolGeometry& g) {
  return {.n = g.n, .c = g.c, .in_h = g.h.in, .in_w = g.w.in, .out_h = g.h.out, .out_w = g.w.out,
          .k_h = g.h.k, .k_w = g.w.k, .s_h = g.h.s, .s_w = g.w.s, .p_h = g.h.p, .p_w = g.w.p,
          .d_h = g.h.d, .d_w = g.w.d};
}

// Every output's [lo, hi) kernel offsets inside the input, along one axis.
std::vector<std::pair<std::int64_t, std::int64_t>> taps_per_output(const Axis& a) {
  std::vector<std::pair<std::int64_t, std::int64_t>> t(static_cast<std::size_t>(a.out));
  for (std::int64_t o = 0; o < a.out; ++o) t[static_cast<std::size_t>(o)] = a.valid_taps(o);
  return t;
}

// Calls body(plane) for each of the N * C planes, split across the pool.
template <class Body>
void for_each_plane(const PoolGeometry& g, std::int64_t work_per_plane, Body&& body) {
  parallel_for(
      g.n * g.c,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t p = begin; p < end; ++p) body(p);
      },
      grain_for(work_per_plane));
}

// avg_pool2d's window along one axis: [lo, hi) inside the input and PyTorch's padded count
// (the window clipped to the padded input).
struct AvgWindow {
  std::int64_t lo, hi, padded;
};

std::vector<AvgWindow> avg_windows(const Axis& a) {
  std::vector<AvgWindow> v(static_cast<std::size_t>(a.out));
  for (std::int64_t o = 0; o < a.out; ++o) {
    const std::int64_t start = o * a.s - a.p;
    const std::int64_t stop = std::min(start + a.k, a.in + a.p);
    v[static_cast<std::size_t>(o)] = {std::max<std::int64_t>(start, 0), std::min(stop, a.in), stop - start};
  }
  return v;
}

// max_pool2d's argmax of one window by PyTorch's rule: the first strictly larger value wins,
// and so does every NaN (the last NaN is kept). `at` is the window's first tap, row_step and
// dw the distances between taps. This version takes the taps [klo, khi) x [jlo, jhi) only (a
// window clipped by the padding); a window entirely in the padding gives -1.
template <class T>
std::int64_t clipped_argmax(const T* src, std::int64_t at, std::int64_t klo, std::int64_t khi, std::int64_t jlo,
                            std::int64_t jhi, std::int64_t row_step, std::int64_t dw) {
  if (klo >= khi || jlo >= jhi) return -1;
  std::int64_t best = at + klo * row_step + jlo * dw;
  T m = -std::numeric_limits<T>::infinity();
  for (std::int64_t ki = klo; ki < khi; ++ki) {
    for (std::int64_t kj = jlo; kj < jhi; ++kj) {
      const std::int64_t i = at + ki * row_step + kj * dw;
      if (src[i] > m || std::isnan(src[i])) {
        m = src[i];
        best = i;
      }
    }
  }
  return best;
}

// The same for a window whose taps all lie inside a plane without NaNs (KH, KW, DW: kernel
// size and dilation when known at compile time, else 0): two short passes, the maximum and
// then the first tap holding it, instead of one compare-and-select chain through every tap
// (output by output, the winner of random data defeats the branch predictor: 3x slower).
template <std::int64_t KH, std::int64_t KW, std::int64_t DW, class T>
std::int64_t interior_argmax(const T* src, std::int64_t at, std::int64_t kh_rt, std::int64_t kw_rt,
                             std::int64_t row_step, std::int64_t dw_rt) {
  const std::int64_t kh = KH ? KH : kh_rt;
  const std::int64_t kw = KW ? KW : kw_rt;
  const std::int64_t dw = DW ? DW : dw_rt;
  T m = src[at];
  for (std::int64_t ki = 0; ki < kh; ++ki) {
    for (std::int64_t kj = 0; kj < kw; ++kj) {
      const T v = src[at + ki * row_step + kj * dw];
      m = v > m ? v : m;
    }
  }
  std::int64_t best = at;
  for (std::int64_t ki = kh - 1; ki >= 0; --ki) {
    for (std::int64_t kj = kw - 1; kj >= 0; --kj) {
      const std::int64_t i = at + ki * row_step + kj * dw;
      best = select(src[i] == m, i, best);
    }
  }
  return best;
}

template <class T>
bool has_nan(const T* p, std::int64_t n) {
  int nan = 0;
  for (std::int64_t i = 0; i < n; ++i) nan |= p[i] != p[i];
  return nan != 0;
}

// One max_pool2d call's geometry, passed by value: the loops below store int64 indices, and
// through a reference every such store would force the compiler to reload these fields.
template <class T>
struct MaxPoolPlane {
  const T* x;
  T* out;
  std::int64_t* indices;
  std::int64_t in_plane, out_plane, ho, wo, win, kh, kw, sh, sw, ph, pw, dh, dw;
  const std::pair<std::int64_t, std::int64_t>* ht;  // each output row's kernel rows inside the input
  const std::pair<std::int64_t, std::int64_t>* wt;  // each output column's kernel columns inside
};

// 2x2 windows with stride 2 (the common case): the two rows of each window are compared
// pairwise without branches. Ties go to the first tap in row-major order, as in
// interior_argmax and PyTorch.
template <class T>
void max_pool_2x2_plane(const T* src, T* dst, std::int64_t* idst, std::int64_t ho, std::int64_t wo,
                        std::int64_t win) {
  for (std::int64_t oh = 0; oh < ho; ++oh) {
    const T* r0 = src + 2 * oh * win;
    const T* r1 = r0 + win;
    const std::int64_t base = 2 * oh * win;
    T* d = dst + oh * wo;
    std::int64_t* id = idst + oh * wo;
    const auto pool_window = [&](std::int64_t ow) {
      const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], e = r1[2 * ow + 1];
      // Arithmetic, not ternaries: on random data branches mispredict half the time (13x slower).
      const std::int64_t top_right = a < b, bottom_right = c < e;
      const T top = std::max(a, b), bottom = std::max(c, e);
      const std::int64_t lower = top < bottom;
      d[ow] = std::max(top, bottom);
      id[ow] = base + 2 * ow + top_right + lower * (win + bottom_right - top_right);
    };
    // Blocks of a fixed 8 windows vectorize fully; a loop of run-time length got half the speed.
    std::int64_t ow = 0;
    for (; ow + 8 <= wo; ow += 8) {
      for (std::int64_t k = 0; k < 8; ++k) pool_window(ow + k);
    }
    for (; ow < wo; ++ow) pool_window(ow);
  }
}

// Pools plane p. Unpadded, undilated NaN-free planes take interior_argmax everywhere, with
// the kernel size and stride KH, KW, S when known at compile time (else 0).
template <std::int64_t KH, std::int64_t KW, std::int64_t S, class T>
void max_pool_plane(const MaxPoolPlane<T> g, std::int64_t p, bool unpadded) {
  const T* src = g.x + p * g.in_plane;
  T* dst = g.out + p * g.out_plane;
  std::int64_t* idst = g.indices + p * g.out_plane;
  const bool nan = has_nan(src, g.in_plane);
  if constexpr (KH == 2 && KW == 2 && S == 2) {
    if (unpadded && !nan) return max_pool_2x2_plane(src, dst, idst, g.ho, g.wo, g.win);
  }
  const std::int64_t row_step = g.dh * g.win;
  for (std::int64_t oh = 0; oh < g.ho; ++oh) {
    const auto [klo, khi] = g.ht[oh];
    const std::int64_t row = (oh * g.sh - g.ph) * g.win - g.pw;  // output 0's first tap, maybe outside
    for (std::int64_t ow = 0; ow < g.wo; ++ow) {
      std::int64_t best;
      if (unpadded && !nan) {
        const std::int64_t at = oh * (S ? S : g.sh) * g.win + ow * (S ? S : g.sw);
        best = interior_argmax<KH, KW, 1>(src, at, g.kh, g.kw, g.win, 1);
      } else {
        const auto [jlo, jhi] = g.wt[ow];
        best = !nan && klo == 0 && khi == g.kh && jlo == 0 && jhi == g.kw
                   ? interior_argmax<0, 0, 0>(src, row + ow * g.sw, g.kh, g.kw, row_step, g.dw)
                   : clipped_argmax(src, row + ow * g.sw, klo, khi, jlo, jhi, row_step, g.dw);
      }
      dst[oh * g.wo + ow] = best >= 0 ? src[best] : -std::numeric_limits<T>::infinity();
      idst[oh * g.wo + ow] = best;
    }
  }
}

}  // namespace

Tensor max_pool2d(const Tensor& input, Pair kernel_size, const op::MaxPool2dOptions& options, Tensor* indices) {
  const PoolGeometry g =
      pool_geometry("max_pool2d", input, kernel_size, options.stride, options.padding, options.dilation);
  if (input.device().is_cuda()) return cuda::max_pool2d(input, pool_window(g), indices);
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty({g.n, g.c, g.h.out, g.w.out}, x.dtype());
  Tensor ind = Tensor::empty(out.shape(), DType::Int64);
  const auto ht = taps_per_output(g.h);
  const auto wt = taps_per_output(g.w);
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    std::int64_t* ip = ind.data<std::int64_t>();
    const MaxPoolPlane<T> plane{.x = xp, .out = op, .indices = ip,
                                .in_plane = g.h.in * g.w.in, .out_plane = g.h.out * g.w.out,
                                .ho = g.h.out, .wo = g.w.out, .win = g.w.in, .kh = g.h.k, .kw = g.w.k,
                                .sh = g.h.s, .sw = g.w.s, .ph = g.h.p, .pw = g.w.p, .dh = g.h.d, .dw = g.w.d,
                                .ht = ht.data(), .wt = wt.data()};
    const bool unpadded = plane.ph == 0 && plane.pw == 0 && plane.dh == 1 && plane.dw == 1;  // all windows inside
    const std::int64_t kh = plane.kh, kw = plane.kw, sh = plane.sh, sw = plane.sw;
    // KH, KW, S: the kernel size and stride of an unpadded, undilated pooling when known at
    // compile time (the common 2x2 and 3x3 with stride 2), else 0: the compiler then unrolls
    // the taps and keeps the offsets in registers.
    auto run = [&]<std::int64_t KH, std::int64_t KW, std::int64_t S>() {
      // A tap costs a few elementwise operations (load, compare, select), hence the 4.
      for_each_plane(g, 4 * plane.out_plane * kh * kw,
                     [&](std::int64_t p) { max_pool_plane<KH, KW, S>(plane, p, unpadded); });
    };
    if (unpadded && kh == 2 && kw == 2 && sh == 2 && sw == 2) {
      run.template operator()<2, 2, 2>();
    } else if (unpadded && kh == 3 && kw == 3 && sh == 2 && sw == 2) {
      run.template operator()<3, 3, 2>();
    } else {
      run.template operator()<0, 0, 0>();
    }
  });
  if (indices) *indices = ind;
  return out;
}

Tensor max_pool2d_backward(const Tensor& grad, const Shape& input_shape, const Tensor& indices) {
  if (input_shape.size() != 4 || grad.dim() != 4 || indices.shape() != grad.shape() ||
      grad.size(0) != input_shape[0] || grad.size(1) != input_shape[1]) {
    throw ShapeError("max_pool2d backward: gradient " + shape_str(grad.shape()) + " and indices " +
                     shape_str(indices.shape()) + " do not fit input " + shape_str(input_shape));
  }
  detail::require_same_device("max_pool2d", grad.device(), indices);
  if (grad.device().is_cuda()) return cuda::max_pool2d_backward(grad, input_shape, indices);
  const Tensor gy = grad.contiguous();
  const Tensor ind = indices.contiguous();
  Tensor dx = Tensor::empty(input_shape, grad.dtype());
  const PoolGeometry g{input_shape[0], input_shape[1], {}, {}};
  const std::int64_t in_plane = input_shape[2] * input_shape[3];
  const std::int64_t out_plane = grad.size(2) * grad.size(3);
  dispatch_floating(grad.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = gy.data<T>();
    const std::int64_t* ip = ind.data<std::int64_t>();
    T* dp = dx.data<T>();
    for_each_plane(g, in_plane + out_plane, [&](std::int64_t p) {
      T* d = dp + p * in_plane;
      std::fill(d, d + in_plane, T(0));
      const T* s = gp + p * out_plane;
      const std::int64_t* i = ip + p * out_plane;
      for (std::int64_t k = 0; k < out_plane; ++k) {
        if (i[k] >= 0) d[i[k]] += s[k];
      }
    });
  });
  return dx;
}

Tensor avg_pool2d(const Tensor& input, Pair kernel_size, const op::AvgPool2dOptions& options) {
  const PoolGeometry g = pool_geometry("avg_pool2d", input, kernel_size, options.stride, options.padding, {1, 1});
  if (input.device().is_cuda()) return cuda::avg_pool2d(input, pool_window(g), options.count_include_pad);
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty({g.n, g.c, g.h.out, g.w.out}, x.dtype());
  const auto hw = avg_windows(g.h);
  const auto ww = avg_windows(g.w);
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    const std::int64_t in_plane = g.h.in * g.w.in;
    const std::int64_t out_plane = g.h.out * g.w.out;
    for_each_plane(g, out_plane * g.h.k * g.w.k, [&](std::int64_t p) {
      const T* src = xp + p * in_plane;
      T* dst = op + p * out_plane;
      for (std::int64_t oh = 0; oh < g.h.out; ++oh) {
        const AvgWindow& a = hw[static_cast<std::size_t>(oh)];
        for (std::int64_t ow = 0; ow < g.w.out; ++ow) {
          const AvgWindow& b = ww[static_cast<std::size_t>(ow)];
          T sum = T(0);
          for (std::int64_t ih = a.lo; ih < a.hi; ++ih) {
            for (std::int64_t iw = b.lo; iw < b.hi; ++iw) sum += src[ih * g.w.in + iw];
          }
          const std::int64_t count =
              options.count_include_pad ? a.padded * b.padded : (a.hi - a.lo) * (b.hi - b.lo);
          dst[oh * g.w.out + ow] = count > 0 ? sum / static_cast<T>(count) : T(0);
        }
      }
    });
  });
  return out;
}

Tensor avg_pool2d_backward(const Tensor& grad, const Shape& input_shape, Pair kernel_size,
                           const op::AvgPool2dOptions& options) {
  const Tensor shape_only = Tensor::empty(input_shape, grad.dtype(), grad.device());  // dx, once checked
  const PoolGeometry g = pool_geometry("avg_pool2d", shape_only, kernel_size, options.stride, options.padding, {1, 1});
  const Shape out_shape{g.n, g.c, g.h.out, g.w.out};
  if (grad.shape() != out_shape) {
    throw ShapeError("avg_pool2d backward: gradient " + shape_str(grad.shape()) + " differs from the output's shape " +
                     shape_str(out_shape));
  }
  if (grad.device().is_cuda()) {
    cuda::avg_pool2d_backward(grad, shape_only, pool_window(g), options.count_include_pad);
    return shape_only;
  }
  const Tensor gy = grad.contiguous();
  Tensor dx = shape_only;
  const auto hw = avg_windows(g.h);
  const auto ww = avg_windows(g.w);
  dispatch_floating(grad.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = gy.data<T>();
    T* dp = dx.data<T>();
    const std::int64_t in_plane = g.h.in * g.w.in;
    const std::int64_t out_plane = g.h.out * g.w.out;
    for_each_plane(g, out_plane * g.h.k * g.w.k, [&](std::int64_t p) {
      T* d = dp + p * in_plane;
      std::fill(d, d + in_plane, T(0));
      const T* s = gp + p * out_plane;
      for (std::int64_t oh = 0; oh < g.h.out; ++oh) {
        const AvgWindow& a = hw[static_cast<std::size_t>(oh)];
        for (std::int64_t ow = 0; ow < g.w.out; ++ow) {
          const AvgWindow& b = ww[static_cast<std::size_t>(ow)];
          const std::int64_t count =
              options.count_include_pad ? a.padded * b.padded : (a.hi - a.lo) * (b.hi - b.lo);
          if (count == 0) continue;
          const T v = s[oh * g.w.out + ow] / static_cast<T>(count);
          for (std::int64_t ih = a.lo; ih < a.hi; ++ih) {
            for (std::int64_t iw = b.lo; iw < b.hi; ++iw) d[ih * g.w.in + iw] += v;
          }
        }
      }
    });
  });
  return dx;
}

}  // namespace zkynet::kernels
