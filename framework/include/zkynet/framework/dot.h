// Graphviz export of a grounded graph: a free function over ModuleGraph.
//
//   ModuleGraph g = model(x);
//   std::string text = zkynet::to_dot(g, {.title = "model"});
//   auto files = zkynet::render_graph(g, "out/model");   // out/model.dot (+ .png when graphviz is installed)
//
// Variables are blue ellipses (name, functional name, shape); Parameters orange boxes labelled
// with their dotted path as named_parameters() gives it ("model.0.weight") and shape;
// constants grey, labelled with their value ("2", "[1, 2]") or, when large, a summary
// ("zeros (1,32) float32", "const (3,4) float32"); operators white boxes (name and shape).
// Nodes given a name with named() (a recurrent layer's "h0", "h_n", "c_n") are yellow
// dashed boxes labelled with it, and a chain of views carrying one name (slice, then
// reshape) is drawn as one node. Every module invocation is a cluster, so shared and
// separate weights show at a glance; calls are drawn top to bottom in call order, and
// repeated calls of one module from one caller (a pipeline's micro-batches, a cell's steps)
// are kept in that order.
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
// Gives `ref`'s node a name for pictures and returns it. A constant (not yet in a graph) is
// first recorded as a node of the active call, so that it can carry the name; outside a
// recorded call the constant comes back unchanged. Names nothing else: values, gradients
// and lookups are unaffected.
//   NodeRef h_n = named(op::reshape(...), "h_n");
NodeRef named(const NodeRef& ref, std::string name);
// The name named() gave, "" when none (or not in a graph).
std::string display_name(const NodeRef& ref);
// Writes `<base>.dot`, then `<base>.<format>` for each format when Graphviz's `dot` runs.
// Returns the paths written.
std::vector<std::string> render_graph(const ModuleGraph& graph, const std::string& base,
                                      const DotOptions& options = {},
                                      const std::vector<std::string>& formats = {"png"});
// True when Graphviz's `dot` program can be run.
bool graphviz_available();

}  // namespace zkynet
