// The compiled core of the `zkynet` Python package: one init_<area> per C++ folder. distributed/
// (MPI) is the separate extension _zkynet_distributed (distributed_main.cpp).
#include "api.h"
#include "errors.h"

#include <zkynet/framework/parallel.h>

#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace zkynet::python {
void init_tensor(py::module_& m);
void init_framework(py::module_& m);
void init_cuda(py::module_& m);
void init_ops(py::module_& m);
void init_linalg(py::module_& m);
void init_visual(py::module_& m);
void init_nn(py::module_& nn, py::module_& optim, py::module_& ops);
void init_layers(py::module_& nn, py::module_& ops, py::module_& data);
void init_transformer(py::module_& nn, py::module_& ops);
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
  auto linalg = m.def_submodule("linalg", "torch.linalg's operators (zkynet.op.linalg)");
  zkynet::python::init_linalg(linalg);
  zkynet::python::init_visual(visual);
  auto nn = m.def_submodule("nn", "layers");
  auto optim = m.def_submodule("optim", "optimizers");
  zkynet::python::init_nn(nn, optim, ops);
  auto data = m.def_submodule("data", "datasets and loaders");
  zkynet::python::init_layers(nn, ops, data);
  zkynet::python::init_transformer(nn, ops);
  auto cuda = m.def_submodule("cuda", "CUDA devices: availability, synchronization, memory statistics");
  zkynet::python::init_cuda(cuda);
  m.def("set_num_threads", &zkynet::set_num_threads,
        "sets how many threads zkynet's kernels use");
  m.def("num_threads", &zkynet::num_threads,
        "how many threads zkynet's kernels use");
  // The conversions _zkynet_distributed calls (api.h).
  static const zkynet::python::Api api{
      &zkynet::python::tensor_from_python,  &zkynet::python::tensor_to_numpy,
      &zkynet::python::noderef_from_python, &zkynet::python::loss_from_python,
      &zkynet::python::estimator_from_python,
  };
  m.add_object("_api", py::capsule(&api, zkynet::python::api_capsule_name));
}
