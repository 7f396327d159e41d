// op::linalg: torch.linalg's operators, forward and VJP side by side, on the LAPACK kernels of
// kernels/lapack.h. Batched over the leading axes; operands of two-operand operators broadcast
// their batch axes (the gradients are summed back).
//
// References for the backward passes (written out next to each operator):
//   Giles 2008, "An extended collection of matrix derivative results for forward and reverse mode
//     algorithmic differentiation" (solve, inv, det, slogdet, triangular solves);
//   Murray 2016, "Differentiation of the Cholesky decomposition", and PyTorch's FunctionsManual.cpp
//     cholesky_backward (the symmetric gradient PyTorch defines), cholesky_solve_backward;
//   Seeger et al. 2017, "Auto-differentiating linear algebra", and PyTorch's linalg_eig_backward
//     (eigh), svd_backward (Townsend 2016, "Differentiating the singular value decomposition"),
//     linalg_qr_backward (Walter & Lehmann 2018: gA = (gQ + Q copyltu(M)) R^{-T}).
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/linalg.h>
#include <zkynet/ops/ops.h>

#include "kernels/lapack.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace zkynet::op::linalg {

namespace lk = kernels::lapack;

namespace {

using i64 = std::int64_t;

Tensor mT(const Tensor& t) { return t.transpose(-2, -1); }

Shape batch_shape(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

Shape with(Shape s, std::initializer_list<i64> tail) {
  s.insert(s.end(), tail);
  return s;
}

void check_operand(std::string_view op, const char* name, const Tensor& t, bool square) {
  if (!t.device().is_cpu()) {
    throw DeviceError(std::string(op) + ": the LAPACK kernels are CPU-only; move the operands with .cpu()");
  }
  if (t.dtype() != DType::Float32 && t.dtype() != DType::Float64) {
    throw TypeError(std::string(op) + ": " + name + " must be float32 or float64, got " +
                    std::string(dtype_name(t.dtype())));
  }
  if (t.dim() < 2) {
    throw ShapeError(std::string(op) + ": " + name + " " + shape_str(t.shape()) +
                     " must have at least 2 dimensions (..., rows, cols)");
  }
  if (square && t.size(-1) != t.size(-2)) {
    throw ShapeError(std::string(op) + ": " + name + " " + shape_str(t.shape()) +
                     " must be a batch of square matrices");
  }
}

// A (..., n, n) and B (..., n, k): same dtype, matching rows, batch axes broadcast (views).
std::pair<Tensor, Tensor> check_pair(std::string_view op, const Tensor& a, const Tensor& b) {
  check_operand(op, "A", a, true);
  check_operand(op, "B", b, false);
  const std::string shapes = "A " + shape_str(a.shape()) + " and B " + shape_str(b.shape());
  if (a.dtype() != b.dtype()) throw TypeError(std::string(op) + ": " + shapes + " have different dtypes");
  if (a.size(-1) != b.size(-2)) {
    throw ShapeError(std::string(op) + ": " + shapes + ": A has " + std::to_string(a.size(-1)) + " columns but B " +
                     std::to_string(b.size(-2)) + " rows");
  }
  const Shape batch = kernels::broadcast_shapes(batch_shape(a), batch_shape(b), op);
  return {a.expand(with(batch, {a.size(-2), a.size(-1)})), b.expand(with(batch, {b.size(-2), b.size(-1)}))};
}

// ---- solve, inv, det, slogdet ---------------------------------------------------------------

struct SolveDef {
  static constexpr std::string_view name = "linalg.solve";
  static constexpr std::array<std::string_view, 2> inputs{"A", "B"};
  Tensor forward(const Tensor& a, const Tensor& b) const {
    const auto [ae, be] = check_pair(name, a, b);
    return lk::lu_solve(ae, be, false, name);
  }
  // X = A^{-1} B:  gB = A^{-T} G,  gA = -gB X^T (Giles 2008, 2.2.3).
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const auto [ae, be] = check_pair(name, c.in(0), c.in(1));
    const Tensor gb = lk::lu_solve(ae, c.grad, true, name);
    return {c.needs[0] ? kernels::sum_to(kernels::neg(kernels::matmul_t(gb, false, c.output, true)), c.in(0).shape())
                       : Tensor(),
            c.needs[1] ? kernels::sum_to(gb, c.in(1).shape()) : Tensor()};
  }
};

struct InvDef {
  static constexpr std::string_view name = "linalg.inv";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, true);
    return lk::inverse(a, name);
  }
  // Y = A^{-1}:  gA = -Y^T G Y^T (Giles 2008, 2.2.3).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& y = c.output;
    return {kernels::neg(kernels::matmul_t(kernels::matmul_t(y, true, c.grad, false), false, y, true))};
  }
};

struct DetDef {
  static constexpr std::string_view name = "linalg.det";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, true);
    const Tensor p = lk::slogdet(a);
    return kernels::mul(p.slice(-1, 0, 1), kernels::exp(p.slice(-1, 1, 2))).reshape(batch_shape(a));
  }
  // gA = g det(A) A^{-T}, the cofactor matrix (Giles 2008, 2.2.4); from the SVD where A is singular.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& a = c.in(0);
    return {kernels::mul(c.grad.reshape(with(batch_shape(a), {1, 1})), lk::cofactor(a))};
  }
};

struct SlogdetDef {
  static constexpr std::string_view name = "linalg.slogdet";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, true);
    return lk::slogdet(a);  // (..., 2): sign, log|det|
  }
  // d log|det A| = tr(A^{-1} dA):  gA = g A^{-T} (Giles 2008, 2.2.4); the sign is piecewise constant.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& a = c.in(0);
    const Tensor g = c.grad.slice(-1, 1, 2).contiguous();
    if (lk::all_zero(g)) return {Tensor::zeros(a.shape(), a.dtype())};
    return {kernels::mul(g.reshape(with(batch_shape(a), {1, 1})), mT(lk::inverse(a, name)))};
  }
};

// ---- Cholesky --------------------------------------------------------------------------------

struct CholeskyDef {
  static constexpr std::string_view name = "linalg.cholesky";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, true);
    return lk::cholesky(a, name);
  }
  // PyTorch's cholesky_backward (Murray 2016): with P = tril(L^T G) and
  // S = (P + tril(P, -1)^T) / 2, gA = L^{-T} S L^{-1}: symmetric, the gradient of a symmetric input.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& l = c.output;
    const Tensor p = lk::tril(kernels::matmul_t(l, true, c.grad, false));
    const Tensor s = kernels::scale(kernels::add(p, mT(lk::tril(p, -1))), 0.5);
    const Tensor x = lk::triangular_solve(l, s, false, true, false, name);  // L^{-T} S
    return {mT(lk::triangular_solve(l, mT(x), false, true, false, name)).contiguous()};  // (L^{-T} X^T)^T = X L^{-1}
  }
};

struct CholeskySolveDef {
  static constexpr std::string_view name = "cholesky_solve";
  static constexpr std::array<std::string_view, 2> inputs{"B", "L"};
  bool upper = false;
  Tensor forward(const Tensor& b, const Tensor& l) const {
    const auto [le, be] = check_pair(name, l, b);
    return lk::cholesky_solve(be, le, upper);
  }
  // X = (L L^T)^{-1} B:  gB = (L L^T)^{-1} G;  with C = gB X^T + X gB^T, gL = -C L (-L C when upper),
  // PyTorch's cholesky_solve_backward (a full matrix: the triangle LAPACK does not read gets one too).
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const auto [le, be] = check_pair(name, c.in(1), c.in(0));
    const Tensor gb = lk::cholesky_solve(c.grad, le, upper);
    Tensor gl;
    if (c.needs[1]) {
      const Tensor common =
          kernels::add(kernels::matmul_t(gb, false, c.output, true), kernels::matmul_t(c.output, false, gb, true));
      gl = kernels::neg(upper ? kernels::matmul(le, common) : kernels::matmul(common, le));
      gl = kernels::sum_to(gl, c.in(1).shape());
    }
    return {c.needs[0] ? kernels::sum_to(gb, c.in(0).shape()) : Tensor(), gl};
  }
};

struct SolveTriangularDef {
  static constexpr std::string_view name = "linalg.solve_triangular";
  static constexpr std::array<std::string_view, 2> inputs{"A", "B"};
  bool upper = false;
  bool unit = false;
  Tensor forward(const Tensor& a, const Tensor& b) const {
    const auto [ae, be] = check_pair(name, a, b);
    return lk::triangular_solve(ae, be, upper, false, unit, name);
  }
  // X = A^{-1} B:  gB = A^{-T} G,  gA = -gB X^T restricted to A's triangle (without the diagonal
  // when unitriangular), as PyTorch (Giles 2008, 2.2.3).
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const auto [ae, be] = check_pair(name, c.in(0), c.in(1));
    const Tensor gb = lk::triangular_solve(ae, c.grad, upper, true, unit, name);
    Tensor ga;
    if (c.needs[0]) {
      ga = kernels::neg(kernels::matmul_t(gb, false, c.output, true));
      ga = upper ? lk::triu(ga, unit ? 1 : 0) : lk::tril(ga, unit ? -1 : 0);
      ga = kernels::sum_to(ga, c.in(0).shape());
    }
    return {ga, c.needs[1] ? kernels::sum_to(gb, c.in(1).shape()) : Tensor()};
  }
};

// ---- eigh, svd, qr: one node computes the packed factors; the results are slices of it -------

struct EighDef {
  static constexpr std::string_view name = "linalg.eigh";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, true);
    return lk::eigh(a, name);  // (..., n + 1, n): eigenvalues, then eigenvectors
  }
  // PyTorch's linalg_eig_backward for a symmetric A (Seeger et al. 2017):
  //   gA = V (diag(gw) + (skew(V^T gV) / 2) / (w_j - w_i)) V^T, skew(M) = M - M^T;
  // with gV = 0 (eigenvalues alone) gA = V diag(gw) V^T, defined even for equal eigenvalues.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const i64 n = c.in(0).size(-1);
    const Shape vec = with(batch_shape(c.in(0)), {n});
    const Tensor w = c.output.slice(-2, 0, 1).contiguous().reshape(vec);
    const Tensor v = c.output.slice(-2, 1, n + 1);
    const Tensor gw = c.grad.slice(-2, 0, 1).contiguous().reshape(vec);
    const Tensor gv = c.grad.slice(-2, 1, n + 1);
    if (lk::all_zero(gv)) {
      return {kernels::matmul_t(kernels::mul(v, gw.reshape(with(batch_shape(c.in(0)), {1, n}))), false, v, true)};
    }
    const Tensor middle = lk::eigh_middle(kernels::matmul_t(v, true, gv, false), w, gw, name);
    return {kernels::matmul_t(kernels::matmul(v, middle), false, v, true)};
  }
};

struct SvdParts {
  Tensor u, s, vh;
};

SvdParts svd_parts(const Tensor& packed, i64 m, i64 n, const Shape& batch) {
  const i64 k = std::min(m, n);
  return {packed.slice(-1, 0, m * k).contiguous().reshape(with(batch, {m, k})),
          packed.slice(-1, m * k, m * k + k).contiguous().reshape(with(batch, {k})),
          packed.slice(-1, m * k + k, m * k + k + k * n).contiguous().reshape(with(batch, {k, n}))};
}

struct SvdDef {
  static constexpr std::string_view name = "linalg.svd";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, false);
    return lk::svd(a, name);
  }
  // PyTorch's svd_backward (Townsend 2016), k = min(m, n), E_ij = s_j^2 - s_i^2:
  //   middle = diag(gS) + (skew(U^T gU)_ij s_j + s_i skew(V^T gV)_ij) / E_ij,  gA = U middle Vh
  //   + (I - U U^T) gU S^{-1} Vh (m > n)  or  + U S^{-1} gVh (I - V Vh) (m < n).
  // With gU = gVh = 0 (singular values alone) gA = U diag(gS) Vh, defined for equal singular values.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& a = c.in(0);
    const i64 m = a.size(-2), n = a.size(-1), k = std::min(m, n);
    const Shape batch = batch_shape(a);
    const SvdParts f = svd_parts(c.output, m, n, batch);
    const SvdParts g = svd_parts(c.grad, m, n, batch);
    const bool use_u = !lk::all_zero(g.u), use_v = !lk::all_zero(g.vh);
    if (!use_u && !use_v) {
      return {kernels::matmul(kernels::mul(f.u, g.s.reshape(with(batch, {1, k}))), f.vh)};
    }
    const Tensor utgu = use_u ? kernels::matmul_t(f.u, true, g.u, false) : Tensor();
    const Tensor vtgv = use_v ? kernels::matmul_t(f.vh, false, g.vh, true) : Tensor();
    Tensor ga = lk::svd_middle(utgu, vtgv, f.s, g.s, name);
    if (m > n && use_u) {
      ga = kernels::matmul(f.u, ga);
      const Tensor gu_sinv = kernels::div(g.u, f.s.reshape(with(batch, {1, k})));
      ga = kernels::add(ga, kernels::sub(gu_sinv, kernels::matmul(f.u, kernels::matmul_t(f.u, true, gu_sinv, false))));
      return {kernels::matmul(ga, f.vh)};
    }
    if (m < n && use_v) {
      ga = kernels::matmul(ga, f.vh);
      const Tensor sinv_gvh = kernels::div(g.vh, f.s.reshape(with(batch, {k, 1})));
      ga = kernels::add(ga, kernels::sub(sinv_gvh,
                                         kernels::matmul(kernels::matmul_t(sinv_gvh, false, f.vh, true), f.vh)));
      return {kernels::matmul(f.u, ga)};
    }
    return {kernels::matmul(kernels::matmul(f.u, ga), f.vh)};
  }
};

// QR backward of a square-or-tall factorization (Q m x n, R n x n): M = R gR^T - gQ^T Q,
// gA = (gQ + Q copyltu(M)) R^{-T} (Walter & Lehmann 2018; PyTorch's linalg_qr_backward).
Tensor qr_backward_tall(const Tensor& q, const Tensor& r, const Tensor& gq, const Tensor& gr) {
  const Tensor m = kernels::sub(kernels::matmul_t(r, false, gr, true), kernels::matmul_t(gq, true, q, false));
  const Tensor b = kernels::add(gq, kernels::matmul(q, lk::copyltu(m)));
  // b R^{-T} = (R^{-1} b^T)^T
  return mT(lk::triangular_solve(r, mT(b), true, false, false, "linalg.qr")).contiguous();
}

struct QrDef {
  static constexpr std::string_view name = "linalg.qr";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, false);
    return lk::qr(a);  // (..., m k + k n): Q, then R
  }
  // m >= n: qr_backward_tall. m < n, A = [X | Y], R = [U | V] with X = Q U (PyTorch's split):
  // gX = qr_backward_tall(Q, U, gQ + Y gV^T, gU), gY = Q gV.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& a = c.in(0);
    const i64 m = a.size(-2), n = a.size(-1), k = std::min(m, n);
    const Shape batch = batch_shape(a);
    auto q_of = [&](const Tensor& p) { return p.slice(-1, 0, m * k).contiguous().reshape(with(batch, {m, k})); };
    auto r_of = [&](const Tensor& p) { return p.slice(-1, m * k, m * k + k * n).contiguous().reshape(with(batch, {k, n})); };
    const Tensor q = q_of(c.output), r = r_of(c.output), gq = q_of(c.grad), gr = r_of(c.grad);
    if (m >= n) return {qr_backward_tall(q, r, gq, gr)};
    const Tensor u = r.slice(-1, 0, m).contiguous(), gu = gr.slice(-1, 0, m).contiguous();
    const Tensor gv = gr.slice(-1, m, n).contiguous();
    const Tensor y = a.slice(-1, m, n);
    Tensor ga = Tensor::empty(a.shape(), a.dtype());
    ga.slice(-1, 0, m).copy_(qr_backward_tall(q, u, kernels::add(gq, kernels::matmul_t(y, false, gv, true)), gu));
    ga.slice(-1, m, n).copy_(kernels::matmul(q, gv));
    return {ga};
  }
};

// ---- matrix_exp ---------------------------------------------------------------------------------

struct MatrixExpDef {
  static constexpr std::string_view name = "linalg.matrix_exp";
  static constexpr std::array<std::string_view, 1> inputs{"A"};
  Tensor forward(const Tensor& a) const {
    check_operand(name, "A", a, true);
    return lk::matrix_exp(a);
  }
  // gA = L(A^T, G), the adjoint Frechet derivative: the top-right block of
  // exp([[A^T, G], [0, A^T]]) (Mathias 1996; PyTorch's differentiable matrix_exp does the same).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {lk::matrix_exp_backward(c.in(0), c.grad)}; }
};

// ---- norms ------------------------------------------------------------------------------------

struct VectorNormDef {
  static constexpr std::string_view name = "linalg.vector_norm";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  double ord = 2;
  Shape axes;  // normalized, sorted
  bool keepdim = false;
  Tensor forward(const Tensor& x) const {
    if (!x.device().is_cpu()) throw DeviceError(std::string(name) + ": CPU-only; move the operand with .cpu()");
    if (x.dtype() != DType::Float32 && x.dtype() != DType::Float64) {
      throw TypeError(std::string(name) + ": x must be float32 or float64, got " + std::string(dtype_name(x.dtype())));
    }
    return lk::vector_norm(x, ord, axes, keepdim);
  }
  // ord 2: g x / |x| (0 at x = 0); 1: g sign(x); +-inf: g sign(x) shared among the extremal
  // entries; p: g sign(x) (|x| / |x|_p)^(p-1); 0: zero (Giles 2008 for the smooth cases; torch's
  // subgradients at the kinks).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {lk::vector_norm_backward(c.in(0), c.output, c.grad, ord, axes)};
  }
};

Shape normalize_axes(const Shape& dim, i64 ndim, std::string_view op) {
  Shape axes;
  if (dim.empty()) {
    for (i64 d = 0; d < ndim; ++d) axes.push_back(d);
    return axes;
  }
  for (i64 d : dim) {
    const i64 a = d < 0 ? d + ndim : d;
    if (a < 0 || a >= ndim) {
      throw IndexError(std::string(op) + ": dim " + std::to_string(d) + " is out of range for " +
                       std::to_string(ndim) + " dimensions");
    }
    if (std::find(axes.begin(), axes.end(), a) != axes.end()) {
      throw IndexError(std::string(op) + ": dim " + std::to_string(d) + " appears twice");
    }
    axes.push_back(a);
  }
  std::sort(axes.begin(), axes.end());
  return axes;
}

NodeRef keep_matrix_dims(const NodeRef& r, const NodeRef& a, bool keepdim) {
  if (!keepdim) return r;
  Shape s = batch_shape(a.value());
  s.push_back(1);
  s.push_back(1);
  return op::reshape(r, s);
}

void check_matrix_norm(const NodeRef& a, std::string_view op) {
  if (a.value().dim() < 2) {
    throw ShapeError(std::string(op) + ": A " + shape_str(a.shape()) + " must have at least 2 dimensions");
  }
}

}  // namespace

NodeRef solve(const NodeRef& A, const NodeRef& B) {
  const Shape& as = A.shape();
  const Shape& bs = B.shape();
  // torch's rule: B is a (batch of) vector(s) when 1-d or shaped like A without its last axis.
  const bool vector = as.size() >= 2 && (bs.size() == 1 || (bs.size() + 1 == as.size() &&
                                                            std::equal(bs.begin(), bs.end(), as.begin())));
  if (!vector) return apply(SolveDef{}, A, B);
  Shape col(bs);
  col.push_back(1);
  const NodeRef x = apply(SolveDef{}, A, op::reshape(B, col));
  const Shape& xs = x.shape();
  return op::reshape(x, Shape(xs.begin(), xs.end() - 1));
}

NodeRef inv(const NodeRef& A) { return apply(InvDef{}, A); }
NodeRef det(const NodeRef& A) { return apply(DetDef{}, A); }

SlogdetResult slogdet(const NodeRef& A) {
  const NodeRef p = apply(SlogdetDef{}, A);
  const Shape& ps = p.shape();
  const Shape batch(ps.begin(), ps.end() - 1);
  const i64 last = static_cast<i64>(ps.size()) - 1;
  return {op::reshape(op::slice(p, last, 0, 1), batch), op::reshape(op::slice(p, last, 1, 2), batch)};
}

NodeRef cholesky(const NodeRef& A, bool upper) {
  const NodeRef l = apply(CholeskyDef{}, A);
  return upper ? op::transpose(l) : l;
}

NodeRef cholesky_solve(const NodeRef& B, const NodeRef& L, bool upper) {
  return apply(CholeskySolveDef{upper}, B, L);
}

NodeRef solve_triangular(const NodeRef& A, const NodeRef& B, bool upper, bool left, bool unitriangular) {
  if (left) return apply(SolveTriangularDef{upper, unitriangular}, A, B);
  // X A = B  <=>  A^T X^T = B^T, and A^T is upper where A is lower.
  if (A.value().dim() < 2 || B.value().dim() < 2) {
    throw ShapeError("linalg.solve_triangular: A " + shape_str(A.shape()) + " and B " + shape_str(B.shape()) +
                     " must have at least 2 dimensions");
  }
  return op::transpose(apply(SolveTriangularDef{!upper, unitriangular}, op::transpose(A), op::transpose(B)));
}

EighResult eigh(const NodeRef& A, std::string_view UPLO) {
  if (UPLO != "L" && UPLO != "U") {
    throw UsageError("linalg.eigh: UPLO must be \"L\" or \"U\", got \"" + std::string(UPLO) + "\"");
  }
  if (A.value().dim() < 2) {
    throw ShapeError("linalg.eigh: A " + shape_str(A.shape()) + " must have at least 2 dimensions");
  }
  // The kernel reads the lower triangle; A^T's lower triangle is A's upper one.
  const NodeRef p = apply(EighDef{}, UPLO == "U" ? op::transpose(A) : A);
  const Shape& ps = p.shape();
  const i64 rows_axis = static_cast<i64>(ps.size()) - 2;
  const i64 n = ps.back();
  Shape vec(ps.begin(), ps.end() - 2);
  vec.push_back(n);
  return {op::reshape(op::slice(p, rows_axis, 0, 1), vec), op::slice(p, rows_axis, 1, n + 1)};
}

NodeRef eigvalsh(const NodeRef& A, std::string_view UPLO) { return eigh(A, UPLO).eigenvalues; }

SvdResult svd(const NodeRef& A, bool full_matrices) {
  if (full_matrices) {
    throw UsageError("linalg.svd: full_matrices=True is not supported (its extra columns have no gradient); "
                     "pass full_matrices=False");
  }
  const NodeRef p = apply(SvdDef{}, A);
  const Tensor& a = A.value();
  const i64 m = a.size(-2), n = a.size(-1), k = std::min(m, n);
  const Shape batch = batch_shape(a);
  const i64 last = static_cast<i64>(batch.size());
  return {op::reshape(op::slice(p, last, 0, m * k), with(batch, {m, k})),
          op::reshape(op::slice(p, last, m * k, m * k + k), with(batch, {k})),
          op::reshape(op::slice(p, last, m * k + k, m * k + k + k * n), with(batch, {k, n}))};
}

NodeRef svdvals(const NodeRef& A) { return svd(A).S; }

QrResult qr(const NodeRef& A, std::string_view mode) {
  if (mode != "reduced") {
    throw UsageError("linalg.qr: mode \"" + std::string(mode) + "\" is not supported (only \"reduced\")");
  }
  const NodeRef p = apply(QrDef{}, A);
  const Tensor& a = A.value();
  const i64 m = a.size(-2), n = a.size(-1), k = std::min(m, n);
  const Shape batch = batch_shape(a);
  const i64 last = static_cast<i64>(batch.size());
  return {op::reshape(op::slice(p, last, 0, m * k), with(batch, {m, k})),
          op::reshape(op::slice(p, last, m * k, m * k + k * n), with(batch, {k, n}))};
}

NodeRef matrix_exp(const NodeRef& A) { return apply(MatrixExpDef{}, A); }

NodeRef vector_norm(const NodeRef& x, double ord, const Shape& dim, bool keepdim) {
  if (std::isnan(ord) || (ord < 0 && !std::isinf(ord))) {
    throw UsageError("linalg.vector_norm: ord must be 0, a positive number or +-inf, got " + std::to_string(ord));
  }
  return apply(VectorNormDef{ord, normalize_axes(dim, x.value().dim(), "linalg.vector_norm"), keepdim}, x);
}

NodeRef matrix_norm(const NodeRef& A, std::string_view ord, bool keepdim) {
  check_matrix_norm(A, "linalg.matrix_norm");
  const i64 d = A.value().dim();
  if (ord == "fro") return vector_norm(A, 2, {d - 2, d - 1}, keepdim);
  if (ord == "nuc") return keep_matrix_dims(op::sum(svdvals(A), {-1}), A, keepdim);
  throw UsageError("linalg.matrix_norm: ord must be \"fro\", \"nuc\", 2, -2, 1, -1, inf or -inf, got \"" +
                   std::string(ord) + "\"");
}

NodeRef matrix_norm(const NodeRef& A, double ord, bool keepdim) {
  check_matrix_norm(A, "linalg.matrix_norm");
  const i64 d = A.value().dim();
  const Shape batch = batch_shape(A.value());
  if (ord == 2 || ord == -2) {
    const NodeRef s = svdvals(A);
    const i64 k = s.shape().back();
    const NodeRef pick = ord == 2 ? op::slice(s, d - 2, 0, 1) : op::slice(s, d - 2, k - 1, k);
    return keep_matrix_dims(op::reshape(pick, batch), A, keepdim);
  }
  if (ord == 1 || ord == -1) {  // max (min) over columns of the column sums of |A|
    const NodeRef sums = op::sum(op::abs(A), {d - 2});
    return keep_matrix_dims(vector_norm(sums, ord > 0 ? INFINITY : -INFINITY, {d - 2}), A, keepdim);
  }
  if (std::isinf(ord)) {  // ... of the row sums
    const NodeRef sums = op::sum(op::abs(A), {d - 1});
    return keep_matrix_dims(vector_norm(sums, ord, {d - 2}), A, keepdim);
  }
  throw UsageError("linalg.matrix_norm: ord must be \"fro\", \"nuc\", 2, -2, 1, -1, inf or -inf, got " +
                   std::to_string(ord));
}

NodeRef norm(const NodeRef& x, std::optional<double> ord, const Shape& dim, bool keepdim) {
  const i64 nd = x.value().dim();
  if (!ord) return vector_norm(x, 2, dim, keepdim);
  if (dim.size() == 1 || (dim.empty() && nd == 1)) return vector_norm(x, *ord, dim, keepdim);
  const Shape axes = normalize_axes(dim, nd, "linalg.norm");
  if ((dim.empty() && nd == 2) || (dim.size() == 2 && axes[0] == nd - 2 && axes[1] == nd - 1)) {
    return matrix_norm(x, *ord, keepdim);
  }
  throw ShapeError("linalg.norm: with ord, x " + shape_str(x.shape()) +
                   " must be 1-d or 2-d, or dim must name one axis or the last two");
}

NodeRef norm(const NodeRef& x, std::string_view ord, bool keepdim) { return matrix_norm(x, ord, keepdim); }

}  // namespace zkynet::op::linalg
