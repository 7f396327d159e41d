// LAPACK kernels of op::linalg. Each batch element is copied into a column-major work matrix (an
// O(n^2) copy beside LAPACK's O(n^3)), factored there, and written back row-major.
//
// Why cxxlapack, not xt::lapack / xt::linalg: xtensor-blas's high-level wrappers want xtensor
// containers in column-major layout (our tensors are strided row-major buffers, so each batch
// element would need an adaptor and a copy anyway), solve one right-hand side only (potrs,
// trtrs), query and allocate a workspace on every call (syevd, gesdd, getri), and report a
// failure as a bare int or a std::runtime_error without the batch element. We call the layer
// under them that xtensor-blas ships, xflens' cxxlapack (typed float/double overloads of the
// Fortran routines: getrf/getrs/getri, potrf/potrs, trtrs, syevd, gesdd, geqrf/orgqr), on our own
// buffers, one workspace per batch.
#include "lapack.h"

#include <zkynet/framework/error.h>
#include <zkynet/ops/linalg.h>

// cxxlapack's .tcc files use xflens' ASSERT macro without including its definition.
#include <xflens/cxxblas/auxiliary/debugmacro.h>
#include <xflens/cxxlapack/cxxlapack.cxx>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace zkynet::kernels::lapack {
namespace {

using i64 = std::int64_t;

// LAPACK takes 32-bit sizes (OpenBLAS without ILP64).
int lapack_int(i64 v, std::string_view op) {
  if (v > std::numeric_limits<int>::max()) {
    throw ShapeError(std::string(op) + ": a matrix dimension of " + std::to_string(v) + " exceeds LAPACK's int");
  }
  return static_cast<int>(v);
}

i64 batch_of(const Tensor& a) {
  i64 b = 1;
  for (i64 d = 0; d + 2 < a.dim(); ++d) b *= a.shape()[static_cast<std::size_t>(d)];
  return b;
}

template <class T>
void load_cm(T* dst, const T* src, i64 rows, i64 cols) {
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

template <class T>
void store_rm(T* dst, const T* cm, i64 rows, i64 cols) {
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) dst[r * cols + c] = cm[c * rows + r];
}

[[noreturn]] void fail(std::string_view op, const Tensor& a, i64 batch, const std::string& what) {
  std::string where = std::string(op) + ": A " + shape_str(a.shape());
  if (a.dim() > 2) where += ", batch element " + std::to_string(batch);
  throw LinAlgError(where + ": " + what);
}

[[noreturn]] void singular(std::string_view op, const Tensor& a, i64 batch, int info) {
  fail(op, a, batch,
       "the matrix is singular (diagonal element " + std::to_string(info) + " of its LU factor U is zero)");
}

template <class F>
Tensor dispatch(DType dt, F&& f) {
  if (dt == DType::Float32) return f(float{});
  if (dt == DType::Float64) return f(double{});
  throw TypeError("linalg: needs float32 or float64 operands, got " + std::string(dtype_name(dt)));
}

// log|det| and sign of an LU factor (column-major n x n) with its pivots.
template <class T>
std::pair<double, double> lu_slogdet(const T* lu, const int* piv, i64 n) {
  double sign = 1, logabs = 0;
  for (i64 i = 0; i < n; ++i) {
    const double d = lu[i * n + i];
    if (piv[i] != i + 1) sign = -sign;
    if (d < 0) sign = -sign;
    if (d == 0) return {0.0, -std::numeric_limits<double>::infinity()};
    logabs += std::log(std::abs(d));
  }
  return {sign, logabs};
}

}  // namespace

Tensor lu_solve(const Tensor& a, const Tensor& b, bool transpose_a, std::string_view op) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous(), bc = b.contiguous();
    Tensor out = Tensor::empty(b.shape(), a.dtype());
    const i64 n = a.size(-1), k = b.size(-1), batch = batch_of(a);
    if (n == 0 || k == 0 || batch == 0) return out;
    const int ni = lapack_int(n, op), ki = lapack_int(k, op);
    std::vector<T> A(static_cast<std::size_t>(n * n)), B(static_cast<std::size_t>(n * k));
    std::vector<int> piv(static_cast<std::size_t>(n));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      load_cm(B.data(), bc.data<T>() + i * n * k, n, k);
      const int info = cxxlapack::getrf<int>(ni, ni, A.data(), ni, piv.data());
      if (info > 0) singular(op, a, i, info);
      cxxlapack::getrs<int>(transpose_a ? 'T' : 'N', ni, ki, A.data(), ni, piv.data(), B.data(), ni);
      store_rm(out.data<T>() + i * n * k, B.data(), n, k);
    }
    return out;
  });
}

Tensor inverse(const Tensor& a, std::string_view op) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    Tensor out = Tensor::empty(a.shape(), a.dtype());
    const i64 n = a.size(-1), batch = batch_of(a);
    if (n == 0 || batch == 0) return out;
    const int ni = lapack_int(n, op);
    std::vector<T> A(static_cast<std::size_t>(n * n));
    std::vector<int> piv(static_cast<std::size_t>(n));
    T query{};
    cxxlapack::getri<int>(ni, A.data(), ni, piv.data(), &query, -1);
    std::vector<T> work(std::max<std::size_t>(1, static_cast<std::size_t>(query)));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      const int info = cxxlapack::getrf<int>(ni, ni, A.data(), ni, piv.data());
      if (info > 0) singular(op, a, i, info);
      cxxlapack::getri<int>(ni, A.data(), ni, piv.data(), work.data(), static_cast<int>(work.size()));
      store_rm(out.data<T>() + i * n * n, A.data(), n, n);
    }
    return out;
  });
}

Tensor slogdet(const Tensor& a) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    Shape shape(a.shape().begin(), a.shape().end() - 2);
    shape.push_back(2);
    Tensor out = Tensor::empty(shape, a.dtype());
    const i64 n = a.size(-1), batch = batch_of(a);
    const int ni = lapack_int(n, "linalg.slogdet");
    std::vector<T> A(static_cast<std::size_t>(n * n));
    std::vector<int> piv(static_cast<std::size_t>(n));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      if (n > 0) cxxlapack::getrf<int>(ni, ni, A.data(), ni, piv.data());
      const auto [sign, logabs] = lu_slogdet(A.data(), piv.data(), n);
      out.data<T>()[2 * i] = static_cast<T>(sign);
      out.data<T>()[2 * i + 1] = static_cast<T>(logabs);
    }
    return out;
  });
}

Tensor cofactor(const Tensor& a) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    Tensor out = Tensor::zeros(a.shape(), a.dtype());
    const i64 n = a.size(-1), batch = batch_of(a);
    if (n == 0 || batch == 0) return out;
    const int ni = lapack_int(n, "linalg.det");
    std::vector<T> A(static_cast<std::size_t>(n * n)), U(A.size()), Vt(A.size()), s(static_cast<std::size_t>(n));
    std::vector<int> piv(static_cast<std::size_t>(n)), iwork(static_cast<std::size_t>(8 * n));
    T query{};
    cxxlapack::getri<int>(ni, A.data(), ni, piv.data(), &query, -1);
    std::vector<T> work(std::max<std::size_t>(1, static_cast<std::size_t>(query)));
    for (i64 i = 0; i < batch; ++i) {
      T* o = out.data<T>() + i * n * n;
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      if (cxxlapack::getrf<int>(ni, ni, A.data(), ni, piv.data()) == 0) {
        const auto [sign, logabs] = lu_slogdet(A.data(), piv.data(), n);
        const double d = sign * std::exp(logabs);
        cxxlapack::getri<int>(ni, A.data(), ni, piv.data(), work.data(), static_cast<int>(work.size()));
        // A^{-T} row-major: element (r, c) = A^{-1}(c, r) = column-major cm[r * n + c].
        for (i64 r = 0; r < n; ++r)
          for (i64 c = 0; c < n; ++c) o[r * n + c] = static_cast<T>(d * A[static_cast<std::size_t>(r * n + c)]);
        continue;
      }
      // Singular: C = det(U) det(V) U diag(prod_{j != i} s_j) V^T from A = U S V^T.
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      T wq{};
      cxxlapack::gesdd<int>('A', ni, ni, A.data(), ni, s.data(), U.data(), ni, Vt.data(), ni, &wq, -1, iwork.data());
      std::vector<T> w(std::max<std::size_t>(1, static_cast<std::size_t>(wq)));
      cxxlapack::gesdd<int>('A', ni, ni, A.data(), ni, s.data(), U.data(), ni, Vt.data(), ni, w.data(),
                            static_cast<int>(w.size()), iwork.data());
      std::vector<double> pi(static_cast<std::size_t>(n), 1.0);
      for (i64 p = 0; p < n; ++p)
        for (i64 j = 0; j < n; ++j)
          if (j != p) pi[static_cast<std::size_t>(p)] *= s[static_cast<std::size_t>(j)];
      auto det_sign = [&](std::vector<T> m) {
        cxxlapack::getrf<int>(ni, ni, m.data(), ni, piv.data());
        return lu_slogdet(m.data(), piv.data(), n).first;
      };
      const double sign = det_sign(U) * det_sign(Vt);
      for (i64 r = 0; r < n; ++r)
        for (i64 c = 0; c < n; ++c) {
          double acc = 0;  // sum_p U(r, p) pi_p V(c, p) with V(c, p) = Vt(p, c)
          for (i64 p = 0; p < n; ++p) acc += double(U[p * n + r]) * pi[p] * double(Vt[c * n + p]);
          o[r * n + c] = static_cast<T>(sign * acc);
        }
    }
    return out;
  });
}

Tensor cholesky(const Tensor& a, std::string_view op) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    Tensor out = Tensor::empty(a.shape(), a.dtype());
    const i64 n = a.size(-1), batch = batch_of(a);
    if (n == 0 || batch == 0) return out;
    const int ni = lapack_int(n, op);
    std::vector<T> A(static_cast<std::size_t>(n * n));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      const int info = cxxlapack::potrf<int>('L', ni, A.data(), ni);
      if (info > 0) {
        fail(op, a, i, "the leading minor of order " + std::to_string(info) + " is not positive-definite");
      }
      T* o = out.data<T>() + i * n * n;
      for (i64 r = 0; r < n; ++r)
        for (i64 c = 0; c < n; ++c) o[r * n + c] = c <= r ? A[static_cast<std::size_t>(c * n + r)] : T(0);
    }
    return out;
  });
}

Tensor cholesky_solve(const Tensor& b, const Tensor& l, bool upper) {
  return dispatch(l.dtype(), [&]<class T>(T) {
    const Tensor lc = l.contiguous(), bc = b.contiguous();
    Tensor out = Tensor::empty(b.shape(), l.dtype());
    const i64 n = l.size(-1), k = b.size(-1), batch = batch_of(l);
    if (n == 0 || k == 0 || batch == 0) return out;
    const int ni = lapack_int(n, "cholesky_solve"), ki = lapack_int(k, "cholesky_solve");
    std::vector<T> L(static_cast<std::size_t>(n * n)), B(static_cast<std::size_t>(n * k));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(L.data(), lc.data<T>() + i * n * n, n, n);
      load_cm(B.data(), bc.data<T>() + i * n * k, n, k);
      cxxlapack::potrs<int>(upper ? 'U' : 'L', ni, ki, L.data(), ni, B.data(), ni);
      store_rm(out.data<T>() + i * n * k, B.data(), n, k);
    }
    return out;
  });
}

Tensor triangular_solve(const Tensor& a, const Tensor& b, bool upper, bool transpose_a, bool unit,
                        std::string_view op) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous(), bc = b.contiguous();
    Tensor out = Tensor::empty(b.shape(), a.dtype());
    const i64 n = a.size(-1), k = b.size(-1), batch = batch_of(a);
    if (n == 0 || k == 0 || batch == 0) return out;
    const int ni = lapack_int(n, op), ki = lapack_int(k, op);
    std::vector<T> A(static_cast<std::size_t>(n * n)), B(static_cast<std::size_t>(n * k));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      load_cm(B.data(), bc.data<T>() + i * n * k, n, k);
      const int info = cxxlapack::trtrs<int>(upper ? 'U' : 'L', transpose_a ? 'T' : 'N', unit ? 'U' : 'N', ni, ki,
                                             A.data(), ni, B.data(), ni);
      if (info > 0) {
        fail(op, a, i, "the triangular matrix is singular (diagonal element " + std::to_string(info) + " is zero)");
      }
      store_rm(out.data<T>() + i * n * k, B.data(), n, k);
    }
    return out;
  });
}

Tensor eigh(const Tensor& a, std::string_view op) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    const i64 n = a.size(-1), batch = batch_of(a);
    Shape shape(a.shape());
    shape[shape.size() - 2] = n + 1;
    Tensor out = Tensor::empty(shape, a.dtype());
    if (n == 0 || batch == 0) return out;
    const int ni = lapack_int(n, op);
    std::vector<T> A(static_cast<std::size_t>(n * n)), w(static_cast<std::size_t>(n));
    T wq{};
    int iq = 0;
    cxxlapack::syevd<int>('V', 'L', ni, A.data(), ni, w.data(), &wq, -1, &iq, -1);
    std::vector<T> work(std::max<std::size_t>(1, static_cast<std::size_t>(wq)));
    std::vector<int> iwork(static_cast<std::size_t>(std::max(1, iq)));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * n * n, n, n);
      const int info = cxxlapack::syevd<int>('V', 'L', ni, A.data(), ni, w.data(), work.data(),
                                             static_cast<int>(work.size()), iwork.data(),
                                             static_cast<int>(iwork.size()));
      if (info > 0) fail(op, a, i, "the eigenvalue algorithm failed to converge (syevd info " + std::to_string(info) + ")");
      T* o = out.data<T>() + i * (n + 1) * n;
      std::copy(w.begin(), w.end(), o);
      store_rm(o + n, A.data(), n, n);
    }
    return out;
  });
}

Tensor svd(const Tensor& a, std::string_view op) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    const i64 m = a.size(-2), n = a.size(-1), k = std::min(m, n), batch = batch_of(a);
    const i64 packed = m * k + k + k * n;
    Shape shape(a.shape().begin(), a.shape().end() - 2);
    shape.push_back(packed);
    Tensor out = Tensor::empty(shape, a.dtype());
    if (k == 0 || batch == 0) return out;
    const int mi = lapack_int(m, op), ni = lapack_int(n, op), ki = lapack_int(k, op);
    std::vector<T> A(static_cast<std::size_t>(m * n)), U(static_cast<std::size_t>(m * k)),
        Vt(static_cast<std::size_t>(k * n)), s(static_cast<std::size_t>(k));
    std::vector<int> iwork(static_cast<std::size_t>(8 * k));
    T wq{};
    cxxlapack::gesdd<int>('S', mi, ni, A.data(), mi, s.data(), U.data(), mi, Vt.data(), ki, &wq, -1, iwork.data());
    std::vector<T> work(std::max<std::size_t>(1, static_cast<std::size_t>(wq)));
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * m * n, m, n);
      const int info = cxxlapack::gesdd<int>('S', mi, ni, A.data(), mi, s.data(), U.data(), mi, Vt.data(), ki,
                                             work.data(), static_cast<int>(work.size()), iwork.data());
      // gesdd refuses a NaN entry with info -4 (LAPACK >= 3.7), as torch does.
      if (info == -4) fail(op, a, i, "the SVD failed to converge because the input contains NaN");
      if (info > 0) fail(op, a, i, "the SVD failed to converge (gesdd info " + std::to_string(info) + ")");
      T* o = out.data<T>() + i * packed;
      store_rm(o, U.data(), m, k);
      std::copy(s.begin(), s.end(), o + m * k);
      store_rm(o + m * k + k, Vt.data(), k, n);
    }
    return out;
  });
}

Tensor qr(const Tensor& a) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    const i64 m = a.size(-2), n = a.size(-1), k = std::min(m, n), batch = batch_of(a);
    const i64 packed = m * k + k * n;
    Shape shape(a.shape().begin(), a.shape().end() - 2);
    shape.push_back(packed);
    Tensor out = Tensor::zeros(shape, a.dtype());
    if (k == 0 || batch == 0) return out;
    const int mi = lapack_int(m, "linalg.qr"), ni = lapack_int(n, "linalg.qr"), ki = lapack_int(k, "linalg.qr");
    std::vector<T> A(static_cast<std::size_t>(m * n)), tau(static_cast<std::size_t>(k));
    T q1{}, q2{};
    cxxlapack::geqrf<int>(mi, ni, A.data(), mi, tau.data(), &q1, -1);
    cxxlapack::orgqr<int>(mi, ki, ki, A.data(), mi, tau.data(), &q2, -1);
    std::vector<T> work(std::max<std::size_t>(1, static_cast<std::size_t>(std::max(q1, q2))));
    const int lw = static_cast<int>(work.size());
    for (i64 i = 0; i < batch; ++i) {
      load_cm(A.data(), ac.data<T>() + i * m * n, m, n);
      cxxlapack::geqrf<int>(mi, ni, A.data(), mi, tau.data(), work.data(), lw);
      T* o = out.data<T>() + i * packed;
      T* r = o + m * k;  // R (k, n): the upper triangle of the factored A's first k rows
      for (i64 row = 0; row < k; ++row)
        for (i64 c = row; c < n; ++c) r[row * n + c] = A[static_cast<std::size_t>(c * m + row)];
      cxxlapack::orgqr<int>(mi, ki, ki, A.data(), mi, tau.data(), work.data(), lw);
      store_rm(o, A.data(), m, k);  // Q: the first k columns
    }
    return out;
  });
}

// ---- helpers of the backward passes -------------------------------------------------------

namespace {
template <class Keep>
Tensor mask_triangle(const Tensor& a, Keep keep) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    Tensor out = a.contiguous().clone();
    const i64 r = a.size(-2), c = a.size(-1), batch = batch_of(a);
    T* o = out.data<T>();
    for (i64 b = 0; b < batch; ++b)
      for (i64 i = 0; i < r; ++i)
        for (i64 j = 0; j < c; ++j)
          if (!keep(i, j)) o[(b * r + i) * c + j] = T(0);
    return out;
  });
}
}  // namespace

Tensor tril(const Tensor& a, std::int64_t k) {
  return mask_triangle(a, [k](i64 i, i64 j) { return j - i <= k; });
}
Tensor triu(const Tensor& a, std::int64_t k) {
  return mask_triangle(a, [k](i64 i, i64 j) { return j - i >= k; });
}

Tensor diag_embed(const Tensor& v) {
  return dispatch(v.dtype(), [&]<class T>(T) {
    const Tensor vc = v.contiguous();
    const i64 n = v.size(-1);
    Shape shape(v.shape());
    shape.push_back(n);
    Tensor out = Tensor::zeros(shape, v.dtype());
    const i64 batch = n == 0 ? 0 : v.numel() / n;
    for (i64 b = 0; b < batch; ++b)
      for (i64 i = 0; i < n; ++i) out.data<T>()[(b * n + i) * n + i] = vc.data<T>()[b * n + i];
    return out;
  });
}

Tensor eigh_middle(const Tensor& vtgv, const Tensor& w, const Tensor& gw, std::string_view op) {
  return dispatch(w.dtype(), [&]<class T>(T) {
    const Tensor m = vtgv.contiguous(), wc = w.contiguous();
    const Tensor gc = gw.defined() ? gw.contiguous() : Tensor();
    const i64 n = w.size(-1), batch = n == 0 ? 0 : w.numel() / n;
    Tensor out = Tensor::zeros(m.shape(), w.dtype());
    for (i64 b = 0; b < batch; ++b) {
      const T* mb = m.data<T>() + b * n * n;
      const T* wb = wc.data<T>() + b * n;
      T* o = out.data<T>() + b * n * n;
      for (i64 i = 0; i < n; ++i)
        for (i64 j = 0; j < n; ++j) {
          if (i == j) {
            o[i * n + j] = gc.defined() ? gc.data<T>()[b * n + i] : T(0);
            continue;
          }
          const T skew = T(0.5) * (mb[i * n + j] - mb[j * n + i]);
          const T gap = wb[j] - wb[i];
          if (gap == T(0)) {
            throw LinAlgError(std::string(op) + ": batch element " + std::to_string(b) + ": eigenvalues " +
                              std::to_string(i) + " and " + std::to_string(j) +
                              " are equal, so the gradient through the eigenvectors is not defined");
          }
          o[i * n + j] = skew / gap;
        }
    }
    return out;
  });
}

Tensor svd_middle(const Tensor& utgu, const Tensor& vtgv, const Tensor& s, const Tensor& gs, std::string_view op) {
  return dispatch(s.dtype(), [&]<class T>(T) {
    const Tensor sc = s.contiguous();
    const Tensor u = utgu.defined() ? utgu.contiguous() : Tensor();
    const Tensor v = vtgv.defined() ? vtgv.contiguous() : Tensor();
    const Tensor g = gs.defined() ? gs.contiguous() : Tensor();
    const i64 k = s.size(-1), batch = k == 0 ? 0 : s.numel() / k;
    Shape shape(s.shape());
    shape.push_back(k);
    Tensor out = Tensor::zeros(shape, s.dtype());
    for (i64 b = 0; b < batch; ++b) {
      const T* sb = sc.data<T>() + b * k;
      T* o = out.data<T>() + b * k * k;
      for (i64 i = 0; i < k; ++i)
        for (i64 j = 0; j < k; ++j) {
          if (i == j) {
            o[i * k + j] = g.defined() ? g.data<T>()[b * k + i] : T(0);
            continue;
          }
          T num = 0;
          if (u.defined()) {
            const T* ub = u.data<T>() + b * k * k;
            num += (ub[i * k + j] - ub[j * k + i]) * sb[j];
          }
          if (v.defined()) {
            const T* vb = v.data<T>() + b * k * k;
            num += sb[i] * (vb[i * k + j] - vb[j * k + i]);
          }
          const T gap = sb[j] * sb[j] - sb[i] * sb[i];
          if (gap == T(0)) {
            throw LinAlgError(std::string(op) + ": batch element " + std::to_string(b) + ": singular values " +
                              std::to_string(i) + " and " + std::to_string(j) +
                              " are equal, so the gradient through U and Vh is not defined");
          }
          o[i * k + j] = num / gap;
        }
    }
    return out;
  });
}

Tensor copyltu(const Tensor& m) {
  return dispatch(m.dtype(), [&]<class T>(T) {
    const Tensor mc = m.contiguous();
    Tensor out = Tensor::empty(m.shape(), m.dtype());
    const i64 n = m.size(-1), batch = batch_of(m);
    for (i64 b = 0; b < batch; ++b) {
      const T* x = mc.data<T>() + b * n * n;
      T* o = out.data<T>() + b * n * n;
      for (i64 i = 0; i < n; ++i)
        for (i64 j = 0; j < n; ++j) o[i * n + j] = j <= i ? x[i * n + j] : x[j * n + i];
    }
    return out;
  });
}

bool all_zero(const Tensor& a) {
  const Tensor c = a.contiguous();
  if (c.dtype() == DType::Float32) return std::all_of(c.data<float>(), c.data<float>() + c.numel(), [](float v) { return v == 0; });
  return std::all_of(c.data<double>(), c.data<double>() + c.numel(), [](double v) { return v == 0; });
}

// ---- vector norms: the reduced axes moved last, one row per output element ----------------

namespace {
struct NormLayout {
  Shape perm, inverse, permuted_shape, out_shape;
  i64 rows = 1, len = 1;
};

NormLayout norm_layout(const Tensor& x, const Shape& axes, bool keepdim) {
  NormLayout l;
  std::vector<bool> reduced(static_cast<std::size_t>(x.dim()), false);
  for (i64 a : axes) reduced[static_cast<std::size_t>(a)] = true;
  for (i64 d = 0; d < x.dim(); ++d) {
    const i64 size = x.shape()[static_cast<std::size_t>(d)];
    if (!reduced[static_cast<std::size_t>(d)]) {
      l.perm.push_back(d);
      l.rows *= size;
      l.out_shape.push_back(size);
    } else if (keepdim) {
      l.out_shape.push_back(1);
    }
  }
  for (i64 a : axes) {
    l.perm.push_back(a);
    l.len *= x.shape()[static_cast<std::size_t>(a)];
  }
  l.inverse.resize(l.perm.size());
  for (std::size_t i = 0; i < l.perm.size(); ++i) {
    l.inverse[static_cast<std::size_t>(l.perm[i])] = static_cast<i64>(i);
    l.permuted_shape.push_back(x.shape()[static_cast<std::size_t>(l.perm[i])]);
  }
  return l;
}
}  // namespace

Tensor vector_norm(const Tensor& x, double ord, const Shape& axes, bool keepdim) {
  return dispatch(x.dtype(), [&]<class T>(T) {
    const NormLayout l = norm_layout(x, axes, keepdim);
    const Tensor xp = x.permute(l.perm).contiguous();
    Tensor out = Tensor::empty(l.out_shape, x.dtype());
    const T* p = xp.data<T>();
    for (i64 r = 0; r < l.rows; ++r) {
      const T* row = p + r * l.len;
      double acc = 0;
      if (std::isinf(ord) && ord > 0) {
        for (i64 j = 0; j < l.len; ++j) acc = std::max(acc, std::abs(double(row[j])));
      } else if (std::isinf(ord)) {
        acc = std::numeric_limits<double>::infinity();
        for (i64 j = 0; j < l.len; ++j) acc = std::min(acc, std::abs(double(row[j])));
      } else if (ord == 0) {
        for (i64 j = 0; j < l.len; ++j) acc += row[j] != T(0);
      } else if (ord == 1) {
        for (i64 j = 0; j < l.len; ++j) acc += std::abs(double(row[j]));
      } else if (ord == 2) {
        for (i64 j = 0; j < l.len; ++j) acc += double(row[j]) * double(row[j]);
        acc = std::sqrt(acc);
      } else {
        for (i64 j = 0; j < l.len; ++j) acc += std::pow(std::abs(double(row[j])), ord);
        acc = std::pow(acc, 1.0 / ord);
      }
      out.data<T>()[r] = static_cast<T>(acc);
    }
    return out;
  });
}

Tensor vector_norm_backward(const Tensor& x, const Tensor& norm, const Tensor& g, double ord, const Shape& axes) {
  return dispatch(x.dtype(), [&]<class T>(T) {
    const NormLayout l = norm_layout(x, axes, false);
    const Tensor xp = x.permute(l.perm).contiguous();
    const Tensor nc = norm.contiguous(), gc = g.contiguous();
    Tensor gp = Tensor::zeros(l.permuted_shape, x.dtype());
    for (i64 r = 0; r < l.rows; ++r) {
      const T* row = xp.data<T>() + r * l.len;
      T* o = gp.data<T>() + r * l.len;
      const double nr = nc.data<T>()[r], gr = gc.data<T>()[r];
      auto sgn = [](double v) { return double((v > 0) - (v < 0)); };
      if (ord == 0) continue;  // piecewise constant
      if (std::isinf(ord)) {
        // The gradient is shared evenly among the entries that reach the extremum (as torch).
        i64 count = 0;
        for (i64 j = 0; j < l.len; ++j) count += std::abs(double(row[j])) == nr;
        for (i64 j = 0; j < l.len; ++j)
          if (std::abs(double(row[j])) == nr) o[j] = static_cast<T>(gr * sgn(row[j]) / double(count));
      } else if (ord == 1) {
        for (i64 j = 0; j < l.len; ++j) o[j] = static_cast<T>(gr * sgn(row[j]));
      } else if (nr != 0) {  // a zero vector gets a zero (sub)gradient, as torch
        for (i64 j = 0; j < l.len; ++j) {
          const double v = row[j];
          o[j] = static_cast<T>(ord == 2 ? gr * v / nr : gr * sgn(v) * std::pow(std::abs(v) / nr, ord - 1));
        }
      }
    }
    return gp.permute(l.inverse).contiguous();
  });
}

// ---- matrix exponential ---------------------------------------------------------------------

namespace {

// C = A B, row-major n x n, float64.
void gemm_n(const double* a, const double* b, double* c, i64 n) {
  const int ni = static_cast<int>(n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0, a, ni, b, ni, 0.0, c, ni);
}

// exp(A) of one row-major n x n float64 matrix, in place: Higham 2005, "The scaling and squaring
// method for the matrix exponential revisited", Algorithm 2.3 with the [13/13] approximant only
// (theta_13 = 5.37; smaller norms would allow cheaper degrees, which we skip for simplicity).
void expm_one(std::vector<double>& a, i64 n) {
  static constexpr double b[] = {64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
                                 1187353796428800.0,  129060195264000.0,   10559470521600.0,
                                 670442572800.0,      33522128640.0,       1323241920.0,
                                 40840800.0,          960960.0,            16380.0,
                                 182.0,               1.0};
  const std::size_t nn = static_cast<std::size_t>(n * n);
  double norm1 = 0;
  for (i64 c = 0; c < n; ++c) {
    double col = 0;
    for (i64 r = 0; r < n; ++r) col += std::abs(a[static_cast<std::size_t>(r * n + c)]);
    norm1 = std::max(norm1, col);
  }
  if (!std::isfinite(norm1)) {
    std::fill(a.begin(), a.end(), std::numeric_limits<double>::quiet_NaN());
    return;
  }
  const double theta13 = 5.371920351148152;
  const int s = norm1 > theta13 ? static_cast<int>(std::ceil(std::log2(norm1 / theta13))) : 0;
  const double scale = std::ldexp(1.0, -s);
  for (double& v : a) v *= scale;
  std::vector<double> a2(nn), a4(nn), a6(nn), t(nn), u(nn), v(nn);
  gemm_n(a.data(), a.data(), a2.data(), n);
  gemm_n(a2.data(), a2.data(), a4.data(), n);
  gemm_n(a2.data(), a4.data(), a6.data(), n);
  for (std::size_t i = 0; i < nn; ++i) t[i] = b[13] * a6[i] + b[11] * a4[i] + b[9] * a2[i];
  gemm_n(a6.data(), t.data(), u.data(), n);
  for (std::size_t i = 0; i < nn; ++i) u[i] += b[7] * a6[i] + b[5] * a4[i] + b[3] * a2[i];
  for (i64 i = 0; i < n; ++i) u[static_cast<std::size_t>(i * n + i)] += b[1];
  gemm_n(a.data(), u.data(), t.data(), n);  // U = A (...)
  for (std::size_t i = 0; i < nn; ++i) u[i] = b[12] * a6[i] + b[10] * a4[i] + b[8] * a2[i];
  gemm_n(a6.data(), u.data(), v.data(), n);
  for (std::size_t i = 0; i < nn; ++i) v[i] += b[6] * a6[i] + b[4] * a4[i] + b[2] * a2[i];
  for (i64 i = 0; i < n; ++i) v[static_cast<std::size_t>(i * n + i)] += b[0];
  // R = (V - U)^{-1} (V + U): column-major copies for getrf/getrs.
  std::vector<double> p(nn), q(nn);
  std::vector<int> piv(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < nn; ++i) {
    p[i] = v[i] - t[i];
    q[i] = v[i] + t[i];
  }
  load_cm(a2.data(), p.data(), n, n);
  load_cm(a4.data(), q.data(), n, n);
  const int ni = static_cast<int>(n);
  cxxlapack::getrf<int>(ni, ni, a2.data(), ni, piv.data());
  cxxlapack::getrs<int>('N', ni, ni, a2.data(), ni, piv.data(), a4.data(), ni);
  store_rm(a.data(), a4.data(), n, n);
  for (int k = 0; k < s; ++k) {
    gemm_n(a.data(), a.data(), t.data(), n);
    a.swap(t);
  }
}

}  // namespace

Tensor matrix_exp(const Tensor& a) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous();
    Tensor out = Tensor::empty(a.shape(), a.dtype());
    const i64 n = a.size(-1), batch = batch_of(a);
    if (n == 0 || batch == 0) return out;
    lapack_int(2 * n, "linalg.matrix_exp");
    std::vector<double> m(static_cast<std::size_t>(n * n));
    for (i64 i = 0; i < batch; ++i) {
      std::copy(ac.data<T>() + i * n * n, ac.data<T>() + (i + 1) * n * n, m.begin());
      expm_one(m, n);
      std::transform(m.begin(), m.end(), out.data<T>() + i * n * n, [](double v) { return static_cast<T>(v); });
    }
    return out;
  });
}

Tensor matrix_exp_backward(const Tensor& a, const Tensor& g) {
  return dispatch(a.dtype(), [&]<class T>(T) {
    const Tensor ac = a.contiguous(), gc = g.contiguous();
    Tensor out = Tensor::empty(a.shape(), a.dtype());
    const i64 n = a.size(-1), batch = batch_of(a), w = 2 * n;
    if (n == 0 || batch == 0) return out;
    std::vector<double> m(static_cast<std::size_t>(w * w));
    for (i64 i = 0; i < batch; ++i) {
      const T* ai = ac.data<T>() + i * n * n;
      const T* gi = gc.data<T>() + i * n * n;
      std::fill(m.begin(), m.end(), 0.0);
      for (i64 r = 0; r < n; ++r)
        for (i64 c = 0; c < n; ++c) {
          const double at = ai[c * n + r];  // A^T
          m[static_cast<std::size_t>(r * w + c)] = at;
          m[static_cast<std::size_t>((r + n) * w + c + n)] = at;
          m[static_cast<std::size_t>(r * w + c + n)] = gi[r * n + c];
        }
      expm_one(m, w);
      T* o = out.data<T>() + i * n * n;
      for (i64 r = 0; r < n; ++r)
        for (i64 c = 0; c < n; ++c) o[r * n + c] = static_cast<T>(m[static_cast<std::size_t>(r * w + c + n)]);
    }
    return out;
  });
}

}  // namespace zkynet::kernels::lapack
