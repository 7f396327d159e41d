// zkynet's walkthrough in C++: SimpleModel f(x) = (x + w) * x^2, its gradients and Jacobians,
// a composite model with weight sharing, and the graphs drawn with Graphviz.
//
//   simple_model [output-dir]     (default: zkynet-graphs)
#include <zkynet/framework/dot.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/ops.h>

#include <filesystem>
#include <iostream>

using namespace zkynet;

class SimpleModel : public Module<SimpleModel> {
 public:
  explicit SimpleModel(double w0 = 1.0) : Module({Variable("x")}, {Parameter("w", w0)}) {}
  NodeRef call(const NodeRef& x) { return op::mult(op::add(x, param("w")), op::square(x)); }
};

// Two SimpleModels sharing one weight: f(x1, x2) = m(x1) + m(x2).
class WeightSharing : public Module<WeightSharing> {
 public:
  WeightSharing() : Module({Variable("x1"), Variable("x2")}) { register_module("m", m_); }
  NodeRef call(const NodeRef& x1, const NodeRef& x2) { return op::add(m_(x1), m_(x2)); }

 private:
  SimpleModel m_{2.0};
};

int main(int argc, char** argv) {
  const std::filesystem::path out_dir = argc > 1 ? argv[1] : "zkynet-graphs";
  std::filesystem::create_directories(out_dir);

  SimpleModel m;
  ModuleGraph g = m(3.0);
  g.back();
  std::cout << "SimpleModel f(x) = (x + w) * x^2 at x = 3, w = 1\n"
            << "  value     " << g.value() << "\n"
            << "  df/dw     " << g.grad(m.param("w")) << "\n"
            << "  df/dx     " << g.grad(m.input("x")) << "\n";

  ModuleGraph gv = m(Tensor{3.0, 4.0, 5.0});
  gv.back();
  std::cout << "at x = [3, 4, 5]\n"
            << "  value     " << gv.value() << "\n"
            << "  df/dx     " << gv.grad(m.input("x")) << "\n"
            << "  df/dw     " << gv.grad(m.param("w")) << "\n";

  WeightSharing shared;
  ModuleGraph gs = shared(3.0, 4.0);
  gs.back();
  std::cout << "WeightSharing m(x1) + m(x2) at (3, 4), w = 2\n"
            << "  value     " << gs.value() << "\n"
            << "  df/dw     " << gs.grad(shared.children()[0].second->param("w")) << "\n";

  for (const auto& [graph, name] : {std::pair{g, "simple_model"}, std::pair{gs, "weight_sharing"}}) {
    const auto files = render_graph(graph, (out_dir / name).string(), {.title = name, .show_values = true});
    for (const auto& f : files) std::cout << "wrote " << f << "\n";
  }
  return 0;
}
