#include "models.h"

#include <zkynet/framework/dot.h>
#include <zkynet/ops/indexing.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

using namespace zkynet;
using namespace zkynet::testing;

namespace {

struct DotCounts {
  int nodes = 0;
  int edges = 0;
  int clusters = 0;
  int parameters = 0;
  int variables = 0;
};

DotCounts count(const std::string& dot) {
  DotCounts c;
  std::istringstream in(dot);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" -> ") != std::string::npos) ++c.edges;
    if (line.find("subgraph cluster_") != std::string::npos) ++c.clusters;
    const auto first = line.find_first_not_of(' ');
    const auto bracket = line.find(" [");
    const bool is_node = first != std::string::npos && line[first] == 'n' && bracket != std::string::npos &&
                         bracket > first + 1 &&
                         line.find_first_not_of("0123456789", first + 1) == bracket;
    if (is_node) {
      ++c.nodes;
      if (line.find("#f9cb9c") != std::string::npos) ++c.parameters;
      if (line.find("#cfe2f3") != std::string::npos) ++c.variables;
    }
  }
  return c;
}

std::filesystem::path temp_dir() {
  auto dir = std::filesystem::temp_directory_path() / ("zkynet-dot-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

// The label text of every node ("x\\nSimpleModel.x\\n(2,)" with the DOT escapes as written).
std::vector<std::string> labels(const std::string& dot) {
  std::vector<std::string> out;
  const std::regex node(R"re(^\s*n\d+ \[label="((?:[^"\\]|\\.)*)")re");
  std::istringstream in(dot);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, node)) out.push_back(m[1]);
  }
  return out;
}

bool has_label(const std::string& dot, const std::string& label) {
  const auto all = labels(dot);
  return std::find(all.begin(), all.end(), label) != all.end();
}

// Where Graphviz draws each cluster, by label: the mean height of the nodes inside it (larger
// is higher). Empty when Graphviz is not installed.
std::map<std::string, double> cluster_heights(const std::string& dot) {
  std::map<std::string, double> heights;
  if (!graphviz_available()) return heights;
  const auto dir = temp_dir();
  const auto src = (dir / "order.dot").string(), plain = (dir / "order.txt").string();
  std::ofstream(src) << dot;
  if (std::system(("dot -Tplain -o " + plain + " " + src).c_str()) != 0) return heights;
  std::map<std::string, double> y_of;  // node id -> y
  std::ifstream layout(plain);
  std::string word, id;
  double x = 0, y = 0;
  std::string line;
  while (std::getline(layout, line)) {
    std::istringstream fields(line);
    if (fields >> word >> id >> x >> y && word == "node") y_of[id] = y;
  }
  std::vector<std::string> open;  // labels of the enclosing clusters
  std::map<std::string, std::pair<double, int>> sums;
  std::istringstream in(dot);
  const std::regex label(R"re(^\s*label="([^"]*)";)re"), node(R"re(^\s*(n\d+) \[)re");
  std::smatch m;
  while (std::getline(in, line)) {
    if (line.find("subgraph cluster_") != std::string::npos) {
      open.emplace_back();
    } else if (!open.empty() && open.back().empty() && std::regex_search(line, m, label)) {
      open.back() = m[1];
    } else if (line.find_first_not_of(' ') != std::string::npos && line[line.find_first_not_of(' ')] == '}' &&
               !open.empty()) {
      open.pop_back();
    } else if (std::regex_search(line, m, node) && y_of.count(m[1])) {
      for (const auto& c : open) {
        sums[c].first += y_of[m[1]];
        sums[c].second += 1;
      }
    }
  }
  for (const auto& [c, s] : sums) heights[c] = s.first / s.second;
  return heights;
}

// w x + b, called on each row of its caller's input.
class Affine : public Module<Affine> {
 public:
  Affine() : Module({Variable("x")}, {Parameter("w", 2.0), Parameter("b", 1.0)}) {}
  NodeRef call(const NodeRef& x) { return op::add(op::mult(x, param("w")), param("b")); }
};

// One call of m per row of x, joined: Graphviz's own crossing minimisation draws the last call
// first (5, 1, 2, 3, 4) or reverses them all.
class RowCalls : public Module<RowCalls> {
 public:
  RowCalls() : Module({Variable("x")}) { register_module("m", m); }
  NodeRef call(const NodeRef& x) {
    std::vector<NodeRef> rows;
    for (std::int64_t k = 0; k < x.shape()[0]; ++k) rows.push_back(m(op::slice(x, 0, k, k + 1)));
    return op::concat(rows, 0);
  }
  Affine m;
};

// A module around TwoLayer, registered as "model", as a loss wrapper holds the network.
class Wrapper : public Module<Wrapper> {
 public:
  Wrapper() : Module({Variable("x")}) { register_module("model", model); }
  NodeRef call(const NodeRef& x) { return model(x); }
  TwoLayer model;
};

}  // namespace

TEST_CASE("SimpleModel's graph: x and w drawn differently, three operators") {
  SimpleModel m;
  const auto c = count(to_dot(m(3.0)));
  CHECK(c.nodes == 5);
  CHECK(c.variables == 1);
  CHECK(c.parameters == 1);
  CHECK(c.edges == 5);
  CHECK(c.clusters == 1);
}

TEST_CASE("separate weights: two parameter nodes, one cluster per invocation") {
  NoWeightSharingDifferentInputs m;
  const std::string dot = to_dot(m(3.0, 4.0));
  const auto c = count(dot);
  CHECK(c.nodes == 11);
  CHECK(c.parameters == 2);
  CHECK(c.variables == 2);
  CHECK(c.edges == 12);
  CHECK(c.clusters == 3);
  CHECK(dot.find("m1 (SimpleModel)") != std::string::npos);
  CHECK(dot.find("m2 (SimpleModel)") != std::string::npos);
}

TEST_CASE("shared weights: one parameter node outside both invocations") {
  WeightSharingSameInputs m;
  const std::string dot = to_dot(m(3.0));
  const auto c = count(dot);
  CHECK(c.nodes == 9);
  CHECK(c.parameters == 1);
  CHECK(c.variables == 1);
  CHECK(c.edges == 12);
  CHECK(c.clusters == 3);
  // The shared w is declared in the top cluster, before the first nested cluster opens.
  const auto w = dot.find("#f9cb9c");
  const auto first_nested = dot.find("subgraph cluster_1");
  CHECK(w < first_nested);
}

TEST_CASE("labels hold name, functional name and shape; values and gradients on request") {
  SimpleModel m;
  ModuleGraph g = m(Tensor{3.0, 4.0});
  g.back(Tensor{1.0, 1.0});
  const std::string dot = to_dot(g, {.title = "t", .show_values = true, .show_gradients = true});
  CHECK(dot.find("x\\nSimpleModel.x\\n(2,)") != std::string::npos);
  CHECK(dot.find("mult\\n(2,)") != std::string::npos);
  CHECK(dot.find("= [36, 80]") != std::string::npos);
  CHECK(dot.find("grad 25") != std::string::npos);  // dw = 9 + 16
}

TEST_CASE("the DOT output parses with graphviz and renders PNG") {
  if (!graphviz_available()) {
    WARN("graphviz is not installed; only the DOT file is checked");
  }
  WeightSharingDifferentInputs m;
  const auto base = (temp_dir() / "composite").string();
  const auto files = render_graph(m(3.0, 4.0), base, {}, {"png", "svg"});
  REQUIRE(std::filesystem::exists(base + ".dot"));
  if (graphviz_available()) {
    REQUIRE(files.size() == 3);
    CHECK(std::filesystem::file_size(base + ".png") > 1000);
    const std::string check = "dot -Tcanon " + base + ".dot > /dev/null 2>&1";
    CHECK(std::system(check.c_str()) == 0);
  }
  std::filesystem::remove_all(temp_dir());
}

TEST_CASE("a top-level module's parameter is labelled with its name, the functional name in its tooltip") {
  SimpleModel m;
  const std::string dot = to_dot(m(3.0));
  CHECK(has_label(dot, "w\\n()"));
  CHECK(dot.find("tooltip=\"SimpleModel.w\"") != std::string::npos);
  CHECK_FALSE(has_label(dot, "w\\nSimpleModel.w\\n()"));
}

TEST_CASE("a submodule's parameters are labelled with their dotted paths, as named_parameters() gives them") {
  TwoLayer m;
  const std::string dot = to_dot(m(3.0));
  CHECK(has_label(dot, "scale\\n()"));
  CHECK(has_label(dot, "first.w\\n()"));
  CHECK(has_label(dot, "second.w\\n()"));
  std::vector<std::string> names;
  for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"scale", "first.w", "second.w"});
}

TEST_CASE("a wrapped model's parameters carry the wrapper's path: model.first.w") {
  Wrapper w;
  const std::string dot = to_dot(w(3.0));
  CHECK(has_label(dot, "model.scale\\n()"));
  CHECK(has_label(dot, "model.first.w\\n()"));
  CHECK(has_label(dot, "model.second.w\\n()"));
  CHECK(w.model.param("scale").data()->path == "model.scale");
}

TEST_CASE("a shared parameter is labelled with its first path, once") {
  WeightSharingSameInputs m;  // m1 called twice
  const std::string dot = to_dot(m(3.0));
  CHECK(has_label(dot, "m1.w\\n()"));
  CHECK(count(dot).parameters == 1);
}

TEST_CASE("a small constant is labelled with its value") {
  Lambda f({"x"}, [](std::span<const NodeRef> x) {
    return op::add(op::mult(x[0], 2.5), op::mult(x[0], Tensor::from_vector(std::vector<double>{1, 2}, {2})));
  });
  const std::string dot = to_dot(f(Tensor{3.0, 4.0}));
  CHECK(has_label(dot, "2.5"));
  CHECK(has_label(dot, "[1, 2]"));
  CHECK_FALSE(has_label(dot, "const\\n()\\n= 2.5"));
}

TEST_CASE("a large constant is labelled with a summary: zeros, full, or its shape and dtype") {
  Lambda f({"x"}, [](std::span<const NodeRef> x) {
    const NodeRef a = op::add(x[0], Tensor::zeros({3, 4}));
    const NodeRef b = op::add(a, Tensor::full({3, 4}, 0.5));
    return op::add(b, Tensor::arange(12).reshape({3, 4}).to(DType::Float64));
  });
  const std::string dot = to_dot(f(Tensor::ones({3, 4})));
  CHECK(has_label(dot, "zeros (3,4) float64"));
  CHECK(has_label(dot, "full 0.5 (3,4) float64"));
  CHECK(has_label(dot, "const (3,4) float64"));
}

TEST_CASE("a named chain of views is drawn as one node with the name, the operators in its tooltip") {
  Lambda f({"x"}, [](std::span<const NodeRef> x) {
    const NodeRef state = named(op::reshape(named(op::slice(x[0], 0, 1, 2), "h_n"), {3}), "h_n");
    return op::sum(state);
  });
  const std::string dot = to_dot(f(Tensor::ones({2, 3})));
  CHECK(has_label(dot, "h_n\\n(3,)"));
  CHECK(dot.find("tooltip=\"slice -> reshape\"") != std::string::npos);
  CHECK_FALSE(has_label(dot, "slice\\n(1,3)"));
  CHECK_FALSE(has_label(dot, "reshape\\n(3,)"));
  CHECK(count(dot).nodes == 3);  // x, h_n, sum
}

TEST_CASE("a named constant is recorded in the call and labelled with its name and value") {
  Lambda f({"x"}, [](std::span<const NodeRef> x) { return op::add(x[0], named(Tensor::zeros({2, 3}), "h0")); });
  const std::string dot = to_dot(f(Tensor::ones({2, 3})));
  CHECK(has_label(dot, "h0\\nzeros (2,3) float64"));
  CHECK(display_name(named(NodeRef(1.0), "outside a call")).empty());  // nothing to record it in
}

TEST_CASE("repeated calls of one module are drawn top to bottom in call order") {
  RowCalls m;
  const std::string dot = to_dot(m(Tensor::arange(5)));
  CHECK(dot.find("mclimit=") != std::string::npos);  // Graphviz keeps the declared order
  CHECK(dot.find("ordering=out") != std::string::npos);
  for (int k = 1; k <= 5; ++k) CHECK(dot.find("label=\"m (Affine) #" + std::to_string(k) + "\"") != std::string::npos);
  const auto heights = cluster_heights(dot);
  if (heights.empty()) {
    WARN("graphviz is not installed; the drawn order is not checked");
    return;
  }
  for (int k = 1; k < 5; ++k) {
    INFO("call #" << k << " above call #" << k + 1);
    CHECK(heights.at("m (Affine) #" + std::to_string(k)) > heights.at("m (Affine) #" + std::to_string(k + 1)));
  }
}

TEST_CASE("a CPU graph's labels name no device (a device is shown only when it is not the CPU)") {
  SimpleModel m;
  ModuleGraph g = m(Tensor{3.0, 4.0});
  const std::string dot = to_dot(g);
  for (const std::string& label : labels(dot)) {
    INFO(label);
    CHECK(label.find("cpu") == std::string::npos);
    CHECK(label.find("cuda") == std::string::npos);
  }
  CHECK(has_label(dot, "mult\\n(2,)"));
}
