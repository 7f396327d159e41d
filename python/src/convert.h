// Conversions between Python objects and zkynet values, shared by the binding files.
#pragma once

#include <zkynet/framework/node.h>
#include <zkynet/framework/tensor.h>

#include <functional>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace zkynet::nn {
class Estimator;
}

namespace zkynet::python {

namespace py = pybind11;

// A tensor over the object's memory when possible (numpy arrays of float32, float64 and
// int64, anything with __dlpack__ on the CPU); other numbers and lists are converted.
// Python ints become int64 scalars and floats float64 scalars, as in PyTorch.
Tensor tensor_from_python(py::handle obj);
// A Python integer (or anything with __index__: numpy integers) as int64. Floats, strings and
// integers outside int64's range are refused with a zkynet TypeError naming `what` and the value.
std::int64_t int64_from_python(py::handle obj, const std::string& what);
// An integer or a sequence of integers (list, tuple, numpy array) as int64s, as above.
Shape int64s_from_python(py::handle obj, const std::string& what);
// Converted here, with the GIL held: what a binding that releases the GIL may use.
// A read-only numpy array sharing the tensor's memory (it keeps the storage alive).
py::array tensor_to_numpy(const Tensor& t);
// Makes tensor_to_numpy return its arrays as views of this ndarray subclass (cg.ValueArray;
// None: plain read-only ndarrays).
void set_value_array_type(py::handle type);
// A DLPack capsule ("dltensor") over a CPU numpy array's memory, read-only arrays included;
// the capsule (then its consumer) keeps the array alive.
py::capsule numpy_to_dlpack(py::array array);
// Nodes, graphs (their root), inputs and parameters, or constants from any value above.
NodeRef noderef_from_python(py::handle obj);
// A Python callable (prediction, target) -> node as a C++ loss function. Each call takes the
// GIL; the callable is released with the GIL held, whichever thread drops the last copy.
std::function<NodeRef(const NodeRef&, const NodeRef&)> loss_from_python(py::object callable);
// The C++ estimator inside a Python nn.Estimator (its wrapper type is private to init_layers).
nn::Estimator& estimator_from_python(py::handle obj);

}  // namespace zkynet::python
