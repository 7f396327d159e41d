// Graphviz export of a grounded graph: a free function over ModuleGraph.
//
//   ModuleGraph g = model(x);
//   std::string text = zkynet::to_dot(g, {.title = "model"});
//   auto files = zkynet::render_graph(g, "out/model");   // out/model.dot (+ .png when graphviz is installed)
//
// Variables are blue ellipses, Parameters orange boxes, constants grey, operators white
// boxes; each label holds the name, the functional name and the shape. Every module
// invocation is a cluster, so shared and separate weights show at a glance.
#pragma once

#include <zkynet/framework/graph.h>

#include <string>
#include <vector>

namespace zkynet {

struct DotOptions {
  std::string title;
  bool show_values = false;     // append small values (up to 8 elements) to labels
  bool show_gradients = false;  // append gradients when back() has run
};

std::string to_dot(const ModuleGraph& graph, const DotOptions& options = {});
// Writes `<base>.dot`, then `<base>.<format>` for each format when Graphviz's `dot` runs.
// Returns the paths written.
std::vector<std::string> render_graph(const ModuleGraph& graph, const std::string& base,
                                      const DotOptions& options = {},
                                      const std::vector<std::string>& formats = {"png"});
// True when Graphviz's `dot` program can be run.
bool graphviz_available();

}  // namespace zkynet
