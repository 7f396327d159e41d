#include <zkynet/framework/error.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/strided.h>

#include "blas.h"

#include "cuda/api.h"

#include <optional>
#include <string>

namespace zkynet::kernels {
namespace {

// A matrix operand as BLAS sees it: row-major with leading dimension `ld`, maybe transposed.
struct BlasMatrix {
  Tensor t;  // batch x rows x cols view (batch dims kept)
  bool trans = false;
  std::int64_t ld = 0;
};

// Chooses a BLAS layout for the last two axes without copying when the strides allow it.
BlasMatrix blas_layout(const Tensor& m) {
  const auto nd = static_cast<std::size_t>(m.dim());
  const std::int64_t rows = m.shape()[nd - 2];
  const std::int64_t cols = m.shape()[nd - 1];
  const std::int64_t rs = m.strides()[nd - 2];
  const std::int64_t cs = m.strides()[nd - 1];
  if ((cs == 1 || cols == 1) && rs >= std::max<std::int64_t>(cols, 1)) return {m, false, rs};
  if ((rs == 1 || rows == 1) && cs >= std::max<std::int64_t>(rows, 1)) return {m, true, cs};
  const Tensor c = m.contiguous();
  return {c, false, std::max<std::int64_t>(cols, 1)};
}

// C = A B (+ beta C) on `device`: OpenBLAS on the CPU, cuBLAS on a CUDA device.
template <class T>
void gemm(Device device, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T* c, std::int64_t ldc, T beta = T(0)) {
  if (device.is_cuda()) return cuda::gemm<T>(device, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, beta);
  detail::gemm<T>(ta, tb, m, n, k, T(1), a, lda, b, ldb, beta, c, ldc);  // blas.h: its threads
}

// The one stride that steps through every batch entry of an operand in row-major order (its
// batch axes contiguous among themselves, or all broadcast: 0), if it has one.
std::optional<std::int64_t> uniform_batch_stride(const Shape& batch, const Shape& strides) {
  if (batch.empty()) return 0;
  std::int64_t expected = strides[batch.size() - 1];
  for (std::size_t d = batch.size() - 1; d-- > 0;) {
    expected *= batch[d + 1];
    if (batch[d] != 1 && strides[d] != expected) return std::nullopt;
  }
  return strides[batch.size() - 1];
}

std::string operands(const Tensor& a, const Tensor& b) {
  return "matmul " + shape_str(a.shape()) + " x " + shape_str(b.shape());
}

void require_one_device(const std::string& what, std::initializer_list<const Tensor*> operands) {
  for (const Tensor* t : operands) {
    if (t->defined() && t->device() != (*operands.begin())->device()) {
      throw DeviceError(what + ": operands on " + (*operands.begin())->device().str() + " and " + t->device().str());
    }
  }
}

}  // namespace

Tensor matmul_t(const Tensor& a_in, bool transpose_a, const Tensor& b_in, bool transpose_b) {
  if (a_in.dim() == 0 || b_in.dim() == 0) throw ShapeError(operands(a_in, b_in) + ": operands must not be scalars");
  if (a_in.dtype() != b_in.dtype()) {
    throw TypeError(operands(a_in, b_in) + ": dtypes " + std::string(dtype_name(a_in.dtype())) + " and " +
                    std::string(dtype_name(b_in.dtype())) + " differ");
  }
  if (!is_floating(a_in.dtype())) throw TypeError(operands(a_in, b_in) + ": needs floating-point operands");
  require_one_device(operands(a_in, b_in), {&a_in, &b_in});
  // numpy rules for 1-d operands: a vector is a row on the left, a column on the right.
  Tensor a = a_in.dim() == 1 ? a_in.reshape({1, a_in.size(0)}) : a_in;
  Tensor b = b_in.dim() == 1 ? b_in.reshape({b_in.size(0), 1}) : b_in;
  if (transpose_a) a = a.transpose(-1, -2);
  if (transpose_b) b = b.transpose(-1, -2);
  const std::int64_t m = a.size(-2);
  const std::int64_t k = a.size(-1);
  const std::int64_t n = b.size(-1);
  if (b.size(-2) != k) {
    throw ShapeError(operands(a_in, b_in) + ": inner dimensions differ (" + std::to_string(k) + " vs " +
                     std::to_string(b.size(-2)) + ")");
  }
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  const Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(a_batch, b_batch, "matmul");
  } catch (const ShapeError&) {
    // Name the operands, not just their batch parts.
    throw ShapeError(operands(a_in, b_in) + ": batch dimensions " + shape_str(a_batch) + " and " +
                     shape_str(b_batch) + " cannot be broadcast");
  }
  Shape a_full = batch, b_full = batch;
  a_full.insert(a_full.end(), {m, k});
  b_full.insert(b_full.end(), {k, n});
  const BlasMatrix A = blas_layout(a.expand(a_full));
  const BlasMatrix B = blas_layout(b.expand(b_full));
  Shape out_shape = batch;
  out_shape.insert(out_shape.end(), {m, n});
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());

  const Shape out_strides = contiguous_strides(out_shape);
  const Shape a_strides(A.t.strides().begin(), A.t.strides().end() - 2);
  const Shape b_strides(B.t.strides().begin(), B.t.strides().end() - 2);
  const Shape o_strides(out_strides.begin(), out_strides.end() - 2);
  dispatch_floating(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* pa = A.t.device_data<T>();
    const T* pb = B.t.device_data<T>();
    T* po = out.device_data<T>();
    if (k == 0) {
      out.fill_(0.0);
      return;
    }
    // On CUDA, one strided-batched cuBLAS call for every batch entry when the strides allow it.
    const auto sa = uniform_batch_stride(batch, a_strides);
    const auto sb = uniform_batch_stride(batch, b_strides);
    const std::int64_t count = shape_numel(batch);
    if (out.device().is_cuda() && count > 1 && sa && sb) {
      cuda::gemm_strided_batched<T>(out.device(), A.trans, B.trans, m, n, k, pa, A.ld, *sa, pb, B.ld, *sb, po,
                                    std::max<std::int64_t>(n, 1), m * n, count);
      return;
    }
    detail::for_each_strided<3>(batch, {&a_strides, &b_strides, &o_strides}, [&](const std::array<std::int64_t, 3>& off) {
      gemm<T>(out.device(), A.trans, B.trans, m, n, k, pa + off[0], A.ld, pb + off[1], B.ld, po + off[2], std::max<std::int64_t>(n, 1));
    });
  });
  // Undo the 1-d promotions.
  Shape final_shape = batch;
  if (a_in.dim() > 1 || transpose_a) final_shape.push_back(m);
  if (b_in.dim() > 1 || transpose_b) final_shape.push_back(n);
  return out.reshape(final_shape);
}

Tensor matmul(const Tensor& a, const Tensor& b) { return matmul_t(a, false, b, false); }

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const auto where = [&] {
    return "linear x " + shape_str(x.shape()) + ", weight " + shape_str(weight.shape()) +
           (bias.defined() ? ", bias " + shape_str(bias.shape()) : std::string());
  };
  if (x.dim() < 1 || weight.dim() != 2) throw ShapeError(where() + ": needs x (..., in) and weight (out, in)");
  if (x.size(-1) != weight.size(1)) {
    throw ShapeError(where() + ": x has " + std::to_string(x.size(-1)) + " features, weight expects " +
                     std::to_string(weight.size(1)));
  }
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0))) {
    throw ShapeError(where() + ": bias must have shape (out)");
  }
  if (x.dtype() != weight.dtype() || (bias.defined() && bias.dtype() != x.dtype()) || !is_floating(x.dtype())) {
    throw TypeError(where() + ": needs one floating-point dtype, got " + std::string(dtype_name(x.dtype())) + " and " +
                    std::string(dtype_name(weight.dtype())));
  }
  require_one_device(where(), {&x, &weight, &bias});
  const std::int64_t in = weight.size(1);
  const std::int64_t out_features = weight.size(0);
  const std::int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const Tensor x2 = x.contiguous().reshape({rows, in});
  const BlasMatrix W = blas_layout(weight);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);
  Tensor out = Tensor::empty({rows, out_features}, x.dtype(), x.device());
  dispatch_floating(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    // The bias goes in first and BLAS adds the product to it (beta = 1), as torch's addmm.
    if (bias.defined() && out.device().is_cpu()) {
      const Tensor b = bias.contiguous();
      const T* pb = b.data<T>();
      T* po = out.data<T>();
      for (std::int64_t r = 0; r < rows; ++r) std::copy(pb, pb + out_features, po + r * out_features);
    } else if (bias.defined()) {
      out.copy_(bias.expand({rows, out_features}));
    }
    if (in == 0 || rows == 0) {
      if (!bias.defined()) out.fill_(0.0);
      return;
    }
    gemm<T>(out.device(), false, !W.trans, rows, out_features, in, x2.device_data<T>(), in, W.t.device_data<T>(), W.ld,
            out.device_data<T>(), out_features, bias.defined() ? T(1) : T(0));
  });
  return out.reshape(out_shape);
}

Tensor sum_rows(const Tensor& m) {
  if (m.dim() != 2) throw ShapeError("sum_rows " + shape_str(m.shape()) + ": needs a matrix");
  if (!is_floating(m.dtype())) throw TypeError("sum_rows " + shape_str(m.shape()) + ": needs a floating-point matrix");
  return sum(m, {0});
}

}  // namespace zkynet::kernels
