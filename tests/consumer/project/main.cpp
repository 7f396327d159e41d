// Built against an installed zkynet, through the one umbrella header: prints "36 9 33" for
// SimpleModel at x = 3.
#include <zkynet/zkynet.h>

#include <iostream>

using namespace zkynet;

class SimpleModel : public Module<SimpleModel> {
 public:
  SimpleModel() : Module({Variable("x")}, {Parameter("w", 1.0)}) {}
  NodeRef call(const NodeRef& x) { return op::mult(op::add(x, param("w")), op::square(x)); }
};

int main() {
  SimpleModel m;
  ModuleGraph g = m(3.0);
  g.back();
  std::cout << g.value().item() << " " << g.grad(m.param("w")).item() << " " << g.grad(m.input("x")).item() << "\n";
  return 0;
}
