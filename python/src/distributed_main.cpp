// zkynet._zkynet_distributed: distributed/ (MPI) for zkynet/distributed.py. A module of its own so
// that `import zkynet` does not load MPI; importing this one does not start MPI either: the first
// communicator does. Python values are converted by zkynet._zkynet's functions (api.h).
#include "api.h"

#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace zkynet::python {

void init_distributed(py::module_& m);
void init_distributed_training(py::module_& m);

namespace {
const Api* api = nullptr;
}  // namespace

// convert.h's functions that the distributed bindings use, forwarded to _zkynet's.
Tensor tensor_from_python(py::handle obj) { return api->tensor_from_python(obj); }
py::array tensor_to_numpy(const Tensor& t, bool value_array) { return api->tensor_to_numpy(t, value_array); }
NodeRef noderef_from_python(py::handle obj) { return api->noderef_from_python(obj); }
std::function<NodeRef(const NodeRef&, const NodeRef&)> loss_from_python(py::object callable) {
  return api->loss_from_python(std::move(callable));
}
nn::Estimator& estimator_from_python(py::handle obj) { return api->estimator_from_python(obj); }

}  // namespace zkynet::python

PYBIND11_MODULE(_zkynet_distributed, m) {
  m.doc() = "zkynet.distributed: MPI collectives and messages as differentiable graph operators";
  const py::object capsule = py::module_::import("zkynet._zkynet").attr("_api");
  void* pointer = PyCapsule_GetPointer(capsule.ptr(), zkynet::python::api_capsule_name);
  if (pointer == nullptr) {
    PyErr_Clear();
    throw py::import_error(std::string("zkynet._zkynet_distributed: zkynet._zkynet does not offer ") +
                           zkynet::python::api_capsule_name + ": the two extensions come from different builds");
  }
  zkynet::python::api = static_cast<const zkynet::python::Api*>(pointer);
  zkynet::python::init_distributed(m);
  zkynet::python::init_distributed_training(m);
}
