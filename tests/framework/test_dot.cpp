#include "models.h"

#include <zkynet/framework/dot.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

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
