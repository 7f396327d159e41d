// ops/: zkynet's operators on Python values (nodes, parameters, numbers, arrays).
#include "convert.h"

#include <zkynet/ops/ops.h>

#include <pybind11/stl.h>

namespace zkynet::python {
namespace {

// Kernels on big tensors run without the GIL; tiny ones keep it (releasing costs more).
constexpr std::int64_t kReleaseGilAbove = std::int64_t{1} << 14;

template <class F, class... Refs>
NodeRef run(F&& f, const Refs&... refs) {
  const std::int64_t largest = std::max({refs.value().numel()...});
  if (largest >= kReleaseGilAbove) {
    py::gil_scoped_release release;
    return f(refs...);
  }
  return f(refs...);
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

Shape axes_of(py::handle axes) {
  if (axes.is_none()) return {};
  if (py::isinstance<py::int_>(axes)) return {axes.cast<std::int64_t>()};
  Shape out;
  for (auto a : axes) out.push_back(a.cast<std::int64_t>());
  return out;
}

}  // namespace

void init_ops(py::module_& m) {
  binary<op::add>(m, "add", "a", "b", "a + b, broadcasting");
  binary<op::sub>(m, "sub", "a", "b", "a - b, broadcasting");
  binary<op::mult>(m, "mult", "a", "b", "a * b elementwise, broadcasting");
  binary<op::div>(m, "div", "a", "b", "a / b, broadcasting");
  binary<op::pow>(m, "pow", "base", "exponent", "base ** exponent (Jacobian-based)");
  binary<op::matmul>(m, "matmul", "a", "b", "numpy matmul (batched, BLAS)");
  binary<op::dot>(m, "dot", "a", "b", "numpy dot for 0-d, 1-d and 2-d operands");
  unary<op::neg>(m, "neg", "-x");
  unary<op::square>(m, "square", "x ** 2");
  unary<op::exp>(m, "exp", "e ** x");
  unary<op::log>(m, "log", "natural logarithm");
  unary<op::sqrt>(m, "sqrt", "square root");
  unary<op::tanh>(m, "tanh", "hyperbolic tangent");
  unary<op::relu>(m, "relu", "max(x, 0)");
  unary<op::abs>(m, "abs", "|x| (Jacobian-based)");
  unary<op::sigmoid>(m, "sigmoid", "1 / (1 + e ** -x) (Jacobian-based)");
  m.def("sum", [](py::handle x, py::handle axis, bool keepdim) {
          return run([&](const NodeRef& r) { return op::sum(r, axes_of(axis), keepdim); }, noderef_from_python(x));
        }, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdim") = false);
  m.def("mean", [](py::handle x, py::handle axis, bool keepdim) {
          return run([&](const NodeRef& r) { return op::mean(r, axes_of(axis), keepdim); }, noderef_from_python(x));
        }, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdim") = false);
  m.def("reshape", [](py::handle x, std::vector<std::int64_t> shape) {
          return op::reshape(noderef_from_python(x), Shape(shape.begin(), shape.end()));
        }, py::arg("x"), py::arg("shape"));
  m.def("transpose", [](py::handle x, std::int64_t axis0, std::int64_t axis1) {
          return op::transpose(noderef_from_python(x), axis0, axis1);
        }, py::arg("x"), py::arg("axis0") = -2, py::arg("axis1") = -1);
}

}  // namespace zkynet::python
