// Differentiable linear algebra with torch.linalg's names and semantics: batched over leading
// axes, float32 and float64, CPU (LAPACK through xtensor-blas), each with a hand-coded backward.
//
//   NodeRef x = op::linalg::solve(a, b);                  // a (..., n, n), b (..., n, k) or (..., n)
//   auto [sign, logabsdet] = op::linalg::slogdet(a);
//   NodeRef l = op::linalg::cholesky(k);                  // lower; reads k's lower triangle
//   NodeRef alpha = op::linalg::cholesky_solve(y, l);     // k^{-1} y (torch.cholesky_solve's order)
//   auto [w, v] = op::linalg::eigh(s);                    // eigenvalues ascending, eigenvectors in columns
//   auto [u, s, vh] = op::linalg::svd(a);                 // reduced (full_matrices=False)
//
// Multiple results come in PyTorch's order, each a node of its own: gradients flow from any
// subset of them. Gradients of cholesky and eigh are PyTorch's for a symmetric input (a
// symmetric matrix, though the forward reads one triangle). Errors: non-square or mismatched
// operands throw ShapeError naming the operator and the shapes; a singular matrix (solve, inv,
// solve_triangular, cholesky_solve's backward...) or one that is not positive-definite (cholesky)
// throws LinAlgError naming the operator, the shape and the batch element; CUDA operands a
// DeviceError ("no CUDA implementation yet").
// Not supported (unlike torch): complex dtypes, full_matrices=True, qr modes other than
// "reduced", solve_triangular's left=False is computed through transposes.
#pragma once

#include <zkynet/framework/error.h>
#include <zkynet/framework/node.h>

#include <optional>
#include <string>
#include <string_view>

namespace zkynet {

// A matrix that is singular, or not positive-definite (Python: zkynet.LinAlgError, a
// RuntimeError like torch.linalg.LinAlgError).
class LinAlgError : public Error {
 public:
  explicit LinAlgError(const std::string& message) : Error(message) {}
  [[noreturn]] void rethrow_at(const std::string& location) const override { throw at<LinAlgError>(location); }
};

}  // namespace zkynet

namespace zkynet::op::linalg {

// X with A X = B. B is a batch of vectors when it is 1-d or has A's shape without its last axis.
// Batch axes broadcast. Gradients: gB = A^{-T} G, gA = -gB X^T (Giles 2008, 2.2.3).
NodeRef solve(const NodeRef& A, const NodeRef& B);
// A^{-1}; gA = -A^{-T} G A^{-T} (Giles 2008, 2.2.3).
NodeRef inv(const NodeRef& A);
// det(A); gA = g det(A) A^{-T}, the cofactor matrix (Giles 2008, 2.2.4), from the SVD when A is singular.
NodeRef det(const NodeRef& A);

struct SlogdetResult {
  NodeRef sign;       // -1, 0 or 1 (no gradient)
  NodeRef logabsdet;  // log |det A|; -inf when singular
};
// (sign, log|det A|); g_logabsdet gives gA = g A^{-T} (LinAlgError at a singular A, where
// log|det| is -inf; a gradient of the sign alone is zero).
SlogdetResult slogdet(const NodeRef& A);

// The Cholesky factor of a symmetric positive-definite A (its lower triangle is read): L lower
// with A = L L^T, or L^T when upper.
NodeRef cholesky(const NodeRef& A, bool upper = false);
// torch.cholesky_solve(B, L, upper): X with (L L^T) X = B (U^T U when upper).
NodeRef cholesky_solve(const NodeRef& B, const NodeRef& L, bool upper = false);
// torch.linalg.solve_triangular: X with A X = B (X A = B when !left), A upper or lower triangular
// (the other triangle is not read; unit diagonal assumed when unitriangular).
NodeRef solve_triangular(const NodeRef& A, const NodeRef& B, bool upper, bool left = true,
                         bool unitriangular = false);

struct EighResult {
  NodeRef eigenvalues;   // (..., n), ascending
  NodeRef eigenvectors;  // (..., n, n), orthonormal columns
};
// Eigendecomposition of a symmetric A from its lower triangle ("L") or upper one ("U").
// The gradient through the eigenvectors divides by eigenvalue gaps: equal eigenvalues give
// LinAlgError (PyTorch returns inf/nan there); gradients of the eigenvalues alone are always defined.
EighResult eigh(const NodeRef& A, std::string_view UPLO = "L");
NodeRef eigvalsh(const NodeRef& A, std::string_view UPLO = "L");

struct QrResult {
  NodeRef Q;  // (..., m, k), k = min(m, n), orthonormal columns
  NodeRef R;  // (..., k, n), upper triangular
};
// Reduced QR (mode "reduced", the only one). LAPACK's signs (R's diagonal may be negative), as torch.
QrResult qr(const NodeRef& A, std::string_view mode = "reduced");

struct SvdResult {
  NodeRef U;   // (..., m, k)
  NodeRef S;   // (..., k), descending
  NodeRef Vh;  // (..., k, n)
};
// Reduced SVD (full_matrices must be false). Gradients through U or Vh need distinct singular
// values (LinAlgError otherwise); those of S alone are always defined.
SvdResult svd(const NodeRef& A, bool full_matrices = false);
NodeRef svdvals(const NodeRef& A);

// torch.linalg.matrix_exp: exp(A) by scaling and squaring (Pade 13, float64 arithmetic inside);
// gA is the top-right block of exp([[A^T, G], [0, A^T]]).
NodeRef matrix_exp(const NodeRef& A);

// torch.linalg.vector_norm: ord 2, 1, inf, -inf, 0 or any p > 0 over `dim` (all axes when empty).
NodeRef vector_norm(const NodeRef& x, double ord = 2, const Shape& dim = {}, bool keepdim = false);
// torch.linalg.matrix_norm over the last two axes: ord "fro" or "nuc".
NodeRef matrix_norm(const NodeRef& A, std::string_view ord = "fro", bool keepdim = false);
// ... or ord 2, -2 (largest, smallest singular value), 1, -1, inf, -inf (column, row sums of |A|).
NodeRef matrix_norm(const NodeRef& A, double ord, bool keepdim = false);
// torch.linalg.norm: without ord, the 2-norm of x flattened (or over `dim`); with ord, a vector
// norm for 1-d x (or one axis in dim) and a matrix norm for 2-d x (or two axes, the last two).
NodeRef norm(const NodeRef& x, std::optional<double> ord = std::nullopt, const Shape& dim = {}, bool keepdim = false);
NodeRef norm(const NodeRef& x, std::string_view ord, bool keepdim = false);

}  // namespace zkynet::op::linalg
