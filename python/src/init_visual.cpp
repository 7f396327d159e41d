// Graphviz export of graphs and nodes.
#include "convert.h"

#include <zkynet/framework/dot.h>
#include <zkynet/framework/error.h>

#include <pybind11/stl.h>

namespace zkynet::python {
namespace {

ModuleGraph graph_of(py::handle obj) {
  if (py::isinstance<ModuleGraph>(obj)) return obj.cast<ModuleGraph>();
  if (py::isinstance<NodeRef>(obj)) return ModuleGraph(obj.cast<NodeRef>());
  throw TypeError("expected a ModuleGraph or a Node, got '" + std::string(py::str(obj.get_type().attr("__name__"))) + "'");
}

}  // namespace

void init_visual(py::module_& m) {
  m.def("to_dot", [](py::handle g, std::string title, bool values, bool grads) {
          return to_dot(graph_of(g), {title, values, grads});
        }, py::arg("graph"), py::arg("title") = "", py::arg("show_values") = false, py::arg("show_gradients") = false,
        "the graph (a Node or a ModuleGraph) as Graphviz DOT text");
  m.def("render_graph", [](py::handle g, std::string base, std::string title, bool values, std::vector<std::string> formats) {
          return render_graph(graph_of(g), base, {title, values, false}, formats);
        }, py::arg("graph"), py::arg("base"), py::arg("title") = "", py::arg("show_values") = true,
        py::arg("formats") = std::vector<std::string>{"png"},
        "writes the graph as DOT and, when Graphviz is installed, in the given formats; returns the paths");
  m.def("graphviz_available", &graphviz_available,
        "whether Graphviz's dot program is on PATH");
}

}  // namespace zkynet::python
