// ops/: zkynet's operators on Python values (nodes, parameters, numbers, arrays).
#include "convert.h"

#include <zkynet/ops/compare.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/select.h>

#include <pybind11/stl.h>

#include <optional>
#include <type_traits>

namespace zkynet::python {
namespace {

// Kernels on big tensors run without the GIL; tiny ones keep it (releasing costs more).
constexpr std::int64_t kReleaseGilAbove = std::int64_t{1} << 14;

template <class T>
std::int64_t numel_of(const T& arg) {
  if constexpr (std::is_same_v<T, NodeRef>) {
    return arg.value().numel();
  } else {
    return 0;
  }
}

// f(args...), without the GIL when a NodeRef argument is big. Nothing Python may be touched
// then, so f captures nothing (a function or a captureless lambda) and every argument is a
// C++ value converted beforehand (Shape, not a py::list): the compiler checks both.
template <class F, class... Args>
NodeRef run(F f, const Args&... args) {
  static_assert(std::is_convertible_v<F, NodeRef (*)(const Args&...)>,
                "run(): pass a captureless function; give it converted C++ values as arguments");
  static_assert((!std::is_base_of_v<py::handle, Args> && ...), "run(): no Python object may cross a GIL release");
  const std::int64_t largest = std::max({std::int64_t{0}, numel_of(args)...});
  if (largest >= kReleaseGilAbove) {
    py::gil_scoped_release release;
    return f(args...);
  }
  return f(args...);
}

template <NodeRef (*F)(const NodeRef&)>
void unary(py::module_& m, const char* name, const char* doc) {
  m.def(name, [](py::handle x) { return run(F, noderef_from_python(x)); }, py::arg("x"), doc);
}

template <NodeRef (*F)(const NodeRef&, const NodeRef&)>
void binary(py::module_& m, const char* name, const char* a, const char* b, const char* doc) {
  m.def(name, [](py::handle x, py::handle y) { return run(F, noderef_from_python(x), noderef_from_python(y)); },
        py::arg(a), py::arg(b), doc);
}

// None (all axes), an int or a sequence of ints; converted with the GIL held.
Shape axes_of(py::handle axes, const char* what) {
  if (axes.is_none()) return {};
  return int64s_from_python(axes, what);
}

std::vector<NodeRef> refs_of(const py::sequence& xs) {
  std::vector<NodeRef> out;
  for (auto x : xs) out.push_back(noderef_from_python(x));
  return out;
}

// Indexing and selection operators (torch names: cat, stack, split, ...).
void init_indexing_ops(py::module_& m) {
  m.def("cat", [](const py::sequence& xs, std::int64_t dim) { return op::concat(refs_of(xs), dim); },
        py::arg("tensors"), py::arg("dim") = 0,
        "torch.cat: concatenates along dim; the gradient is split back");
  m.def("stack", [](const py::sequence& xs, std::int64_t dim) { return op::stack(refs_of(xs), dim); },
        py::arg("tensors"), py::arg("dim") = 0,
        "torch.stack: joins along a new axis dim");
  m.def("split", [](py::handle x, py::handle size, std::int64_t dim) {
          if (PyIndex_Check(size.ptr()) && !py::isinstance<py::array>(size)) {
            return op::split(noderef_from_python(x), int64_from_python(size, "split: split_size_or_sections"), dim);
          }
          const Shape sections = int64s_from_python(size, "split: split_size_or_sections");
          return op::split(noderef_from_python(x), std::vector<std::int64_t>(sections.begin(), sections.end()), dim);
        }, py::arg("x"), py::arg("split_size_or_sections"), py::arg("dim") = 0,
        "torch.split: pieces of split_size_or_sections along dim (an int: equal pieces, the last smaller)");
  m.def("slice", [](py::handle x, std::int64_t dim, std::int64_t start, std::int64_t stop, std::int64_t step) {
          return op::slice(noderef_from_python(x), dim, start, stop, step);
        }, py::arg("x"), py::arg("dim"), py::arg("start"), py::arg("stop"), py::arg("step") = 1,
        "x[start:stop:step] along dim (step > 0)");
  m.def("index_select", [](py::handle x, std::int64_t dim, py::handle index) {
          return op::index_select(noderef_from_python(x), dim, noderef_from_python(index));
        }, py::arg("x"), py::arg("dim"), py::arg("index"),
        "torch.index_select: the entries of int64 index along dim; repeated indices sum their gradients");
  m.def("gather", [](py::handle x, std::int64_t dim, py::handle index) {
          return op::gather(noderef_from_python(x), dim, noderef_from_python(index));
        }, py::arg("x"), py::arg("dim"), py::arg("index"),
        "torch.gather: x's entries at index along dim (index shaped like the output)");
  m.def("embedding", [](py::handle indices, py::handle weight) {
          return op::embedding(noderef_from_python(indices), noderef_from_python(weight));
        }, py::arg("input"), py::arg("weight"),
        "torch.nn.functional.embedding: rows of weight at int64 input");
  m.def("where", [](py::handle c, py::handle a, py::handle b) {
          return op::where(noderef_from_python(c), noderef_from_python(a), noderef_from_python(b));
        }, py::arg("condition"), py::arg("x"), py::arg("y"),
        "torch.where: x where condition is nonzero (NaN included), else y; broadcasting");
  m.def("clamp", [](py::handle x, std::optional<double> lo, std::optional<double> hi) {
          return op::clamp(noderef_from_python(x), lo, hi);
        }, py::arg("x"), py::arg("min") = py::none(), py::arg("max") = py::none(),
        "torch.clamp: min(max(x, min), max), either bound optional; the gradient flows where min <= x <= max");
  binary<op::maximum>(m, "maximum", "a", "b", "elementwise maximum (ties split the gradient)");
  binary<op::minimum>(m, "minimum", "a", "b", "elementwise minimum (ties split the gradient)");
  m.def("max", [](py::handle x, std::int64_t dim, bool keepdim) { return op::max(noderef_from_python(x), dim, keepdim); },
        py::arg("x"), py::arg("dim"), py::arg("keepdim") = false,
        "torch.max(x, dim).values: the maximum along dim; the gradient goes to the first maximum");
  m.def("argmax", [](py::handle x, std::int64_t dim, bool keepdim) { return op::argmax(noderef_from_python(x), dim, keepdim); },
        py::arg("x"), py::arg("dim"), py::arg("keepdim") = false,
        "torch.argmax: int64 positions of the first maximum along dim (no gradient)");
  m.def("var", [](py::handle x, py::handle dim, bool unbiased, bool keepdim) {
          return op::var(noderef_from_python(x), axes_of(dim, "var: dim"), unbiased, keepdim);
        }, py::arg("x"), py::arg("dim") = py::none(), py::arg("unbiased") = true, py::arg("keepdim") = false,
        "torch.var over dim (all when None), unbiased by default; sums in float64");
  m.def("std", [](py::handle x, py::handle dim, bool unbiased, bool keepdim) {
          return op::std(noderef_from_python(x), axes_of(dim, "std: dim"), unbiased, keepdim);
        }, py::arg("x"), py::arg("dim") = py::none(), py::arg("unbiased") = true, py::arg("keepdim") = false,
        "torch.std over dim (all when None), unbiased by default; sums in float64");
}

}  // namespace

void init_ops(py::module_& m) {
  init_indexing_ops(m);
  binary<op::add>(m, "add", "a", "b", "a + b, broadcasting");
  binary<op::sub>(m, "sub", "a", "b", "a - b, broadcasting");
  binary<op::mult>(m, "mult", "a", "b", "a * b elementwise, broadcasting");
  binary<op::div>(m, "div", "a", "b", "a / b, broadcasting");
  binary<op::pow>(m, "pow", "base", "exponent", "base ** exponent (Jacobian-based)");
  binary<op::matmul>(m, "matmul", "a", "b", "numpy matmul (batched, BLAS)");
  binary<op::greater>(m, "greater", "a", "b", "1 where a > b else 0, in the operands' dtype (no gradient)");
  binary<op::greater_equal>(m, "greater_equal", "a", "b", "1 where a >= b else 0 (no gradient)");
  binary<op::less>(m, "less", "a", "b", "1 where a < b else 0 (no gradient)");
  binary<op::less_equal>(m, "less_equal", "a", "b", "1 where a <= b else 0 (no gradient)");
  binary<op::equal>(m, "equal", "a", "b", "1 where a == b else 0 (no gradient)");
  binary<op::not_equal>(m, "not_equal", "a", "b", "1 where a != b else 0, NaN included (no gradient)");
  m.def("linear", [](py::handle x, py::handle weight, py::handle bias) {
          const NodeRef xr = noderef_from_python(x), wr = noderef_from_python(weight);
          if (bias.is_none()) return run([](const NodeRef& a, const NodeRef& w) { return op::linear(a, w); }, xr, wr);
          return run([](const NodeRef& a, const NodeRef& w, const NodeRef& b) { return op::linear(a, w, b); }, xr, wr,
                     noderef_from_python(bias));
        }, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        "torch.nn.functional.linear: x @ weight.T + bias (weight (out, in))");
  binary<op::dot>(m, "dot", "a", "b", "numpy dot for 0-d, 1-d and 2-d operands");
  unary<op::neg>(m, "neg", "-x");
  unary<op::square>(m, "square", "x ** 2");
  unary<op::exp>(m, "exp", "e ** x");
  unary<op::log>(m, "log", "natural logarithm");
  unary<op::sqrt>(m, "sqrt", "square root");
  unary<op::tanh>(m, "tanh", "hyperbolic tangent");
  unary<op::relu>(m, "relu", "max(x, 0) elementwise; the gradient is 0 where x <= 0, NaN passes through");
  unary<op::abs>(m, "abs", "|x| (Jacobian-based)");
  unary<op::sigmoid>(m, "sigmoid", "1 / (1 + e ** -x) (Jacobian-based)");
  m.def("sum", [](py::handle x, py::handle axis, bool keepdim) {
          return run([](const NodeRef& r, const Shape& axes, const bool& keep) { return op::sum(r, axes, keep); },
                     noderef_from_python(x), axes_of(axis, "sum: axis"), keepdim);
        }, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdim") = false,
        "the sum over axis (all when None), accumulated in float64 whatever the dtype");
  m.def("mean", [](py::handle x, py::handle axis, bool keepdim) {
          return run([](const NodeRef& r, const Shape& axes, const bool& keep) { return op::mean(r, axes, keep); },
                     noderef_from_python(x), axes_of(axis, "mean: axis"), keepdim);
        }, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdim") = false,
        "the mean over axis (all when None), accumulated in float64; NaN for an empty tensor");
  m.def("reshape", [](py::handle x, py::handle shape) {
          return op::reshape(noderef_from_python(x), int64s_from_python(shape, "reshape: shape"));
        }, py::arg("x"), py::arg("shape"),
        "the same values in a new shape (one -1 is inferred); a copy only when x is not contiguous");
  m.def("transpose", [](py::handle x, std::int64_t axis0, std::int64_t axis1) {
          return op::transpose(noderef_from_python(x), axis0, axis1);
        }, py::arg("x"), py::arg("axis0") = -2, py::arg("axis1") = -1,
        "swaps two axes (the last two by default), without a copy");
  m.def("stop_gradient", [](py::handle x) { return op::stop_gradient(noderef_from_python(x)); }, py::arg("x"),
        "x's value, through which no gradient flows (jax.lax.stop_gradient): a node named stop_gradient");
  m.def("detach", [](py::handle x) { return op::detach(noderef_from_python(x)); }, py::arg("x"),
        "x's value, through which no gradient flows (torch's detach; the same operator as stop_gradient)");
}

}  // namespace zkynet::python
