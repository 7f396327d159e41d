// Conversions between Python objects and zkynet values, shared by the binding files.
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/framework/node.h>
#include <zkynet/framework/tensor.h>

#include <functional>
#include <optional>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace zkynet::nn {
class Estimator;
}

namespace zkynet::python {

namespace py = pybind11;

// A tensor over the object's memory when possible (zkynet.Tensor itself, on any device; numpy
// arrays of float32, float64 and int64; anything with __dlpack__ on the CPU or a CUDA device);
// other numbers and lists are converted. Python ints become int64 scalars and floats float64
// scalars, as in PyTorch.
Tensor tensor_from_python(py::handle obj);
// A DLPack producer's tensor (PyTorch, CuPy, JAX, numpy ...) without a copy: CPU memory, or CUDA
// memory that stays on its device (the producer is given zkynet's stream of that device).
Tensor tensor_from_dlpack(py::handle obj);
// A DLPack capsule ("dltensor") over a zkynet tensor's memory, on its device; the capsule (then
// its consumer) keeps the storage alive. No synchronization here: the caller orders the stream.
py::capsule tensor_to_dlpack(const Tensor& t);
// "cpu", "cuda", "cuda:N", an int N (cuda:N, as torch takes it) or a torch.device; anything else
// is a zkynet TypeError naming it ("unknown device 'gpu'").
Device device_from_python(py::handle obj);
// None (nullopt), "float32" / "float64" / "int64", a numpy dtype or type, or a torch dtype;
// anything else is a zkynet TypeError naming it.
std::optional<DType> dtype_from_python(py::handle obj);
// Throws UsageError (Python: RuntimeError) naming `device` and `what` when it is a CUDA device
// that does not answer on this machine (or the build has no CUDA): a clear error before any
// allocation or transfer is attempted.
void require_device(Device device, const std::string& what);
// A Python integer (or anything with __index__: numpy integers) as int64. Floats, strings and
// integers outside int64's range are refused with a zkynet TypeError naming `what` and the value.
std::int64_t int64_from_python(py::handle obj, const std::string& what);
// An integer or a sequence of integers (list, tuple, numpy array) as int64s, as above.
Shape int64s_from_python(py::handle obj, const std::string& what);
// A layer built on the CPU, then moved to `device` unless it is None: the device= argument of
// the nn layers' constructors (torch.nn's), implemented once for all of them.
template <class M>
std::shared_ptr<M> on_device(std::shared_ptr<M> module, py::handle device) {
  if (device.is_none()) return module;
  const Device d = device_from_python(device);
  require_device(d, module->functional_name() + "(device=...)");
  module->to(d);
  return module;
}
// Converted here, with the GIL held: what a binding that releases the GIL may use.
// A read-only numpy array sharing the tensor's memory (it keeps the storage alive); a value on a
// device is copied to the host first. As cg.ValueArray unless value_array is false.
py::array tensor_to_numpy(const Tensor& t, bool value_array = true);
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
