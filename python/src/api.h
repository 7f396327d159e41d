// The conversions (convert.h) that zkynet._zkynet_distributed takes from zkynet._zkynet, through a
// capsule (`zkynet._zkynet._api`): one copy of them and of their state (cg.ValueArray's type, the
// nn.Estimator wrapper) lives in _zkynet, and the distributed extension, which holds MPI, is a
// separate module that `import zkynet` does not load.
#pragma once

#include "convert.h"

#include <functional>

namespace zkynet::python {

struct Api {
  Tensor (*tensor_from_python)(py::handle obj);
  py::array (*tensor_to_numpy)(const Tensor& t, bool value_array);
  NodeRef (*noderef_from_python)(py::handle obj);
  std::function<NodeRef(const NodeRef&, const NodeRef&)> (*loss_from_python)(py::object callable);
  nn::Estimator& (*estimator_from_python)(py::handle obj);
};

// The capsule's name carries the layout's version: an extension built against another layout
// refuses to import instead of calling through the wrong pointers.
inline constexpr const char* api_capsule_name = "zkynet._zkynet._api.v1";

}  // namespace zkynet::python
