// The compiled core of the `zkynet` Python package: one init_<area> per C++ folder.
#include "errors.h"

#include <zkynet/framework/parallel.h>

#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace zkynet::python {
void init_tensor(py::module_& m);
void init_framework(py::module_& m);
void init_cuda(py::module_& m);
void init_ops(py::module_& m);
void init_visual(py::module_& m);
void init_nn(py::module_& nn, py::module_& optim, py::module_& ops);
void init_layers(py::module_& nn, py::module_& ops, py::module_& data);
#ifdef ZKYNET_PYTHON_DISTRIBUTED
void init_distributed(py::module_& m);
void init_distributed_training(py::module_& m);
#endif
}  // namespace zkynet::python

PYBIND11_MODULE(_zkynet, m) {
  m.doc() = "zkynet: per-call computational graphs with checked derivatives";
  // zkynet errors arrive as the Python exceptions a Python user expects, message unchanged.
  zkynet::python::init_errors(m);
  // zkynet.Tensor first: the signatures of everything after it may name it.
  zkynet::python::init_tensor(m);
  auto framework = m.def_submodule("framework", "graphs, modules, operators");
  auto ops = m.def_submodule("ops", "operators");
  auto visual = m.def_submodule("visual", "Graphviz export");
  zkynet::python::init_framework(framework);
  zkynet::python::init_ops(ops);
  zkynet::python::init_visual(visual);
  auto nn = m.def_submodule("nn", "layers");
  auto optim = m.def_submodule("optim", "optimizers");
  zkynet::python::init_nn(nn, optim, ops);
  auto data = m.def_submodule("data", "datasets and loaders");
  zkynet::python::init_layers(nn, ops, data);
#ifdef ZKYNET_PYTHON_DISTRIBUTED
  // Importing the extension does not start MPI: the first communicator does.
  auto distributed = m.def_submodule("distributed", "MPI as differentiable graph operators");
  zkynet::python::init_distributed(distributed);
  zkynet::python::init_distributed_training(distributed);
#endif
  auto cuda = m.def_submodule("cuda", "CUDA devices: availability, synchronization, memory statistics");
  zkynet::python::init_cuda(cuda);
  m.def("set_num_threads", &zkynet::set_num_threads);
  m.def("num_threads", &zkynet::num_threads);
}
