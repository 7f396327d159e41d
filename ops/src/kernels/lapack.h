// The LAPACK kernels of op::linalg (ops/src/linalg_decompositions.cpp): batched over the leading
// axes, float32 and float64, CPU only. Operands are (..., rows, cols) tensors of any strides; the
// batch axes of two operands must already agree (the operators broadcast them first). No LAPACK
// or xtensor header leaks from here: lapack.cpp alone includes them.
#pragma once

#include <zkynet/framework/tensor.h>

#include <string_view>

namespace zkynet::kernels::lapack {

// X with op(A) X = B (op(A) = A, or A^T when transpose_a), by LU with partial pivoting.
// A singular A throws LinAlgError naming `op`, A's shape and the batch element.
Tensor lu_solve(const Tensor& a, const Tensor& b, bool transpose_a, std::string_view op);
// A^{-1}; LinAlgError when singular.
Tensor inverse(const Tensor& a, std::string_view op);
// (..., 2): sign and log|det| of each matrix (0 and -inf when singular, no error).
Tensor slogdet(const Tensor& a);
// det(A) A^{-T}, the cofactor matrix (the gradient of det): from the LU factors when A is
// invertible, from the SVD when it is not (C = det(U) det(V) U diag(prod_{j!=i} s_j) V^T).
Tensor cofactor(const Tensor& a);
// The lower Cholesky factor L (A = L L^T) from A's lower triangle; LinAlgError naming the
// leading minor that is not positive-definite.
Tensor cholesky(const Tensor& a, std::string_view op);
// X with A X = B, A = L L^T (or U^T U when upper), L triangular.
Tensor cholesky_solve(const Tensor& b, const Tensor& l, bool upper);
// X with op(A) X = B for triangular A (only its `upper` or lower triangle is read; the diagonal is
// taken as ones when unit); LinAlgError when a diagonal element is zero.
Tensor triangular_solve(const Tensor& a, const Tensor& b, bool upper, bool transpose_a, bool unit,
                        std::string_view op);
// (..., n + 1, n): row 0 the eigenvalues ascending, rows 1..n the eigenvectors (in columns), from
// A's lower triangle.
Tensor eigh(const Tensor& a, std::string_view op);
// Reduced SVD packed along the last axis: (..., m k + k + k n) = U (m, k), S (k), Vh (k, n),
// k = min(m, n), S descending.
Tensor svd(const Tensor& a, std::string_view op);
// Reduced QR packed along the last axis: (..., m k + k n) = Q (m, k), R (k, n).
Tensor qr(const Tensor& a);

// exp(A) by scaling and squaring with the [13/13] Pade approximant (Higham 2005), in float64
// arithmetic whatever the dtype.
Tensor matrix_exp(const Tensor& a);
// Its gradient: the top-right block of exp([[A^T, G], [0, A^T]]) (Mathias 1996; PyTorch's
// backward of analytic matrix functions).
Tensor matrix_exp_backward(const Tensor& a, const Tensor& g);

// Small matrix helpers of the backward passes (contiguous results).
Tensor tril(const Tensor& a, std::int64_t k = 0);  // entries with col - row <= k kept
Tensor triu(const Tensor& a, std::int64_t k = 0);  // entries with col - row >= k kept
Tensor diag_embed(const Tensor& v);                 // (..., n) -> (..., n, n)
// eigh's middle factor: skew(M)/2 divided by (w_j - w_i) off the diagonal, gw on it (gw may be
// undefined: zeros). LinAlgError naming `op` when two eigenvalues are equal.
Tensor eigh_middle(const Tensor& vtgv, const Tensor& w, const Tensor& gw, std::string_view op);
// svd's middle factor: (skew(U^T gU)_ij s_j + s_i skew(V^T gV)_ij) / (s_j^2 - s_i^2) off the
// diagonal, gS on it. Either skew operand may be undefined (zeros).
Tensor svd_middle(const Tensor& utgu, const Tensor& vtgv, const Tensor& s, const Tensor& gs, std::string_view op);
// tril(M) + tril(M, -1)^T (qr's backward).
Tensor copyltu(const Tensor& m);
// True when every element is zero (a gradient that did not reach this output).
bool all_zero(const Tensor& a);

// Vector norms over `axes` (normalized, sorted), ord 2, 1, inf, -inf, 0 or any p > 0.
Tensor vector_norm(const Tensor& x, double ord, const Shape& axes, bool keepdim);
// Its gradient: g (the norm's shape with keepdim) spread over x.
Tensor vector_norm_backward(const Tensor& x, const Tensor& norm, const Tensor& g, double ord, const Shape& axes);

}  // namespace zkynet::kernels::lapack
