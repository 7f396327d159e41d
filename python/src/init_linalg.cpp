// op::linalg as zkynet.op.linalg (the compiled module zkynet._zkynet.linalg): torch.linalg's names,
// arguments and results (named tuples for several results), and zkynet.op.linalg.LinAlgError.
#include "convert.h"

#include <zkynet/ops/linalg.h>

#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>

namespace zkynet::python {
namespace {

namespace la = op::linalg;

// Kernels on big operands run without the GIL (every argument converted before).
constexpr std::int64_t kReleaseGilAbove = std::int64_t{1} << 12;

template <class F>
auto without_gil_if_big(std::int64_t numel, F&& f) {
  if (numel >= kReleaseGilAbove) {
    py::gil_scoped_release release;
    return f();
  }
  return f();
}

Shape dims_of(py::handle dim, const char* what) {
  if (dim.is_none()) return {};
  return int64s_from_python(dim, what);
}

// A Python float (inf included) or int as a norm order.
double ord_of(py::handle ord, const char* what) {
  if (!py::isinstance<py::float_>(ord) && !py::isinstance<py::int_>(ord)) {
    throw TypeError(std::string(what) + ": ord must be a number, inf or a string, got " +
                    std::string(py::str(py::type::of(ord).attr("__name__"))));
  }
  return ord.cast<double>();
}

// The matrix axes a matrix norm accepts: the last two (dim=(-2, -1), the default).
void check_matrix_dims(py::handle dim, std::int64_t ndim, const char* what) {
  if (dim.is_none()) return;
  const Shape d = int64s_from_python(dim, what);
  auto norm = [ndim](std::int64_t a) { return a < 0 ? a + ndim : a; };
  if (d.size() != 2 || norm(d[0]) != ndim - 2 || norm(d[1]) != ndim - 1) {
    throw ShapeError(std::string(what) + ": only the last two axes (dim=(-2, -1)) are supported");
  }
}

}  // namespace

void init_linalg(py::module_& m) {
  auto error = py::reinterpret_steal<py::object>(PyErr_NewExceptionWithDoc(
      "zkynet.LinAlgError",
      "A matrix that is singular, or not positive-definite (torch.linalg.LinAlgError's counterpart).",
      PyExc_RuntimeError, nullptr));
  m.add_object("LinAlgError", error);
  static PyObject* linalg_error = error.ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const LinAlgError& e) {
      py::object value = py::reinterpret_borrow<py::object>(linalg_error)(e.what());
      value.attr("zkynet_located") = e.has_location();
      PyErr_SetObject(linalg_error, value.ptr());
    }
  });

  // torch.return_types' counterparts: tuples whose fields also have names (result.eigenvalues).
  const py::object namedtuple = py::module_::import("collections").attr("namedtuple");
  static const py::object slogdet_t = namedtuple("slogdet", py::make_tuple("sign", "logabsdet"));
  static const py::object eigh_t = namedtuple("eigh", py::make_tuple("eigenvalues", "eigenvectors"));
  static const py::object qr_t = namedtuple("qr", py::make_tuple("Q", "R"));
  static const py::object svd_t = namedtuple("svd", py::make_tuple("U", "S", "Vh"));

  m.def("solve", [](py::handle A, py::handle B) {
          const NodeRef a = noderef_from_python(A), b = noderef_from_python(B);
          return without_gil_if_big(a.value().numel(), [&] { return la::solve(a, b); });
        }, py::arg("A"), py::arg("B"),
        "torch.linalg.solve: X with A X = B; A (*, n, n), B (*, n, k) or a (batch of) vector(s) (*, n); "
        "batch axes broadcast. Singular A: LinAlgError.");
  m.def("inv", [](py::handle A) {
          const NodeRef a = noderef_from_python(A);
          return without_gil_if_big(a.value().numel(), [&] { return la::inv(a); });
        }, py::arg("A"), "torch.linalg.inv: the inverse of each square matrix of A (*, n, n); singular: LinAlgError.");
  m.def("det", [](py::handle A) { return la::det(noderef_from_python(A)); }, py::arg("A"),
        "torch.linalg.det: the determinant of each square matrix of A (*, n, n); its gradient, the cofactor "
        "matrix, is finite at singular matrices too.");
  m.def("slogdet", [](py::handle A) {
          const la::SlogdetResult r = la::slogdet(noderef_from_python(A));
          return slogdet_t(r.sign, r.logabsdet);
        }, py::arg("A"),
        "torch.linalg.slogdet: (sign, logabsdet) of each square matrix of A; a singular one gives (0, -inf). "
        "The sign has no gradient.");
  m.def("cholesky", [](py::handle A, bool upper) {
          const NodeRef a = noderef_from_python(A);
          return without_gil_if_big(a.value().numel(), [&] { return la::cholesky(a, upper); });
        }, py::arg("A"), py::kw_only(), py::arg("upper") = false,
        "torch.linalg.cholesky: L lower with A = L L^T (L^T when upper) from A's lower triangle; the gradient is "
        "PyTorch's symmetric one. Not positive-definite: LinAlgError naming the leading minor.");
  m.def("cholesky_solve", [](py::handle B, py::handle L, bool upper) {
          const NodeRef b = noderef_from_python(B), l = noderef_from_python(L);
          return without_gil_if_big(l.value().numel(), [&] { return la::cholesky_solve(b, l, upper); });
        }, py::arg("B"), py::arg("L"), py::arg("upper") = false,
        "torch.cholesky_solve(B, L, upper=False): X with (L L^T) X = B (U^T U when upper), L from cholesky.");
  m.def("solve_triangular", [](py::handle A, py::handle B, bool upper, bool left, bool unitriangular) {
          const NodeRef a = noderef_from_python(A), b = noderef_from_python(B);
          return without_gil_if_big(a.value().numel(),
                                    [&] { return la::solve_triangular(a, b, upper, left, unitriangular); });
        }, py::arg("A"), py::arg("B"), py::kw_only(), py::arg("upper"), py::arg("left") = true,
        py::arg("unitriangular") = false,
        "torch.linalg.solve_triangular: X with A X = B (X A = B when left=False) for triangular A; only A's "
        "upper (or lower) triangle is read. A zero on the diagonal: LinAlgError.");
  m.def("eigh", [](py::handle A, const std::string& UPLO) {
          const NodeRef a = noderef_from_python(A);
          const la::EighResult r = without_gil_if_big(a.value().numel(), [&] { return la::eigh(a, UPLO); });
          return eigh_t(r.eigenvalues, r.eigenvectors);
        }, py::arg("A"), py::arg("UPLO") = "L",
        "torch.linalg.eigh: (eigenvalues ascending, eigenvectors in columns) of symmetric A from its UPLO "
        "triangle. Gradients through the eigenvectors need distinct eigenvalues (LinAlgError otherwise; "
        "PyTorch gives inf/nan); those of the eigenvalues alone are always defined.");
  m.def("eigvalsh", [](py::handle A, const std::string& UPLO) { return la::eigvalsh(noderef_from_python(A), UPLO); },
        py::arg("A"), py::arg("UPLO") = "L", "torch.linalg.eigvalsh: the eigenvalues of symmetric A, ascending.");
  m.def("qr", [](py::handle A, const std::string& mode) {
          const la::QrResult r = la::qr(noderef_from_python(A), mode);
          return qr_t(r.Q, r.R);
        }, py::arg("A"), py::arg("mode") = "reduced",
        "torch.linalg.qr: (Q, R), reduced (the only mode): Q (*, m, k) orthonormal columns, R (*, k, n) upper "
        "triangular, k = min(m, n).");
  m.def("svd", [](py::handle A, bool full_matrices) {
          const NodeRef a = noderef_from_python(A);
          const la::SvdResult r = without_gil_if_big(a.value().numel(), [&] { return la::svd(a, full_matrices); });
          return svd_t(r.U, r.S, r.Vh);
        }, py::arg("A"), py::arg("full_matrices") = false,
        "torch.linalg.svd: the reduced (U, S, Vh), S descending. Unlike torch the default is "
        "full_matrices=False, the only form supported (True raises). Gradients through U or Vh need distinct "
        "singular values.");
  m.def("svdvals", [](py::handle A) { return la::svdvals(noderef_from_python(A)); }, py::arg("A"),
        "torch.linalg.svdvals: the singular values of A, descending.");
  m.def("matrix_exp", [](py::handle A) {
          const NodeRef a = noderef_from_python(A);
          return without_gil_if_big(a.value().numel(), [&] { return la::matrix_exp(a); });
        }, py::arg("A"),
        "torch.linalg.matrix_exp: exp(A) of each square matrix (scaling and squaring, Pade 13); the gradient is "
        "the top-right block of exp([[A^T, G], [0, A^T]]).");
  m.def("vector_norm", [](py::handle x, py::handle ord, py::handle dim, bool keepdim) {
          return la::vector_norm(noderef_from_python(x), ord_of(ord, "linalg.vector_norm"),
                                 dims_of(dim, "linalg.vector_norm: dim"), keepdim);
        }, py::arg("x"), py::arg("ord") = 2, py::arg("dim") = py::none(), py::arg("keepdim") = false,
        "torch.linalg.vector_norm: ord 2, 1, inf, -inf, 0 or p > 0 over dim (all axes when None).");
  m.def("matrix_norm", [](py::handle A, py::handle ord, py::handle dim, bool keepdim) {
          const NodeRef a = noderef_from_python(A);
          check_matrix_dims(dim, a.value().dim(), "linalg.matrix_norm");
          if (py::isinstance<py::str>(ord)) return la::matrix_norm(a, ord.cast<std::string>(), keepdim);
          return la::matrix_norm(a, ord_of(ord, "linalg.matrix_norm"), keepdim);
        }, py::arg("A"), py::arg("ord") = "fro", py::arg("dim") = py::make_tuple(-2, -1), py::arg("keepdim") = false,
        "torch.linalg.matrix_norm over the last two axes: ord 'fro', 'nuc', 2, -2, 1, -1, inf or -inf.");
  m.def("norm", [](py::handle x, py::handle ord, py::handle dim, bool keepdim) {
          const NodeRef a = noderef_from_python(x);
          if (py::isinstance<py::str>(ord)) {
            check_matrix_dims(dim, a.value().dim(), "linalg.norm");
            return la::norm(a, ord.cast<std::string>(), keepdim);
          }
          const std::optional<double> o = ord.is_none() ? std::nullopt : std::optional(ord_of(ord, "linalg.norm"));
          return la::norm(a, o, dims_of(dim, "linalg.norm: dim"), keepdim);
        }, py::arg("A"), py::arg("ord") = py::none(), py::arg("dim") = py::none(), py::arg("keepdim") = false,
        "torch.linalg.norm: without ord the 2-norm of A flattened (or over dim); with ord a vector norm (1-d A, "
        "or one axis in dim) or a matrix norm (2-d A, or the last two axes).");
}

}  // namespace zkynet::python
