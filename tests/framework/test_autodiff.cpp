#include "models.h"

#include <zkynet/framework/session.h>

#include <catch2/catch.hpp>

using namespace zkynet;
using zkynet::testing::SimpleModel;

TEST_CASE("gradients accumulate into parameters across backward passes") {
  SimpleModel m;
  CHECK_FALSE(m.param("w").grad().defined());
  m(3.0).back();
  CHECK(m.param("w").grad().item() == 9.0);
  m(4.0).back();
  CHECK(m.param("w").grad().item() == 9.0 + 16.0);
  m.zero_grad();
  CHECK(m.param("w").grad().item() == 0.0);
}

TEST_CASE("zero_grad keeps the gradient buffer") {
  SimpleModel m;
  m(3.0).back();
  const void* buffer = m.param("w").grad().raw_data();
  m.zero_grad();
  m(2.0).back();
  CHECK(m.param("w").grad().raw_data() == buffer);
  CHECK(m.param("w").grad().item() == 4.0);
}

TEST_CASE("calling back() twice recomputes the graph's gradients and accumulates parameters again") {
  SimpleModel m;
  ModuleGraph g = m(3.0);
  g.back();
  g.back();
  CHECK(g.grad(m.input("x")).item() == 33.0);      // per-graph view: the last pass
  CHECK(m.param("w").grad().item() == 18.0);       // accumulated twice, as documented
}

TEST_CASE("full Jacobians do not touch parameters' accumulated gradients") {
  SimpleModel m;
  m(Tensor{1.0, 2.0}).back();
  CHECK_FALSE(m.param("w").grad().defined());
}

// A restores the limit when a test case ends, whatever it set.
struct JacobianLimitScope {
  std::int64_t saved = jacobian_limit();
  ~JacobianLimitScope() { set_jacobian_limit(saved); }
};

TEST_CASE("back() without a seed refuses Jacobians above the limit and says how to get a VJP or the Jacobian") {
  JacobianLimitScope scope;
  SimpleModel m;
  ModuleGraph g = m(Tensor::ones({30}));  // 30 outputs x (30 + 1 + ...) node elements
  set_jacobian_limit(100);
  CHECK_THROWS_AS(g.back(), UsageError);
  CHECK_THROWS_WITH(g.back(), Catch::Contains("root of shape (30,)") && Catch::Contains("back(seed)") &&
                                  Catch::Contains("set_jacobian_limit") && Catch::Contains("above the limit of 100"));
  CHECK_FALSE(g.has_gradients());
  g.back(Tensor::ones({30}));  // the VJP still works
  CHECK(g.grad(m.input("x")).shape() == Shape{30});
}

TEST_CASE("raising the Jacobian limit, or lifting it with 0, gives the full Jacobian") {
  JacobianLimitScope scope;
  SimpleModel m;
  set_jacobian_limit(100);
  ModuleGraph g = m(Tensor::ones({30}));
  set_jacobian_limit(0);
  g.back();
  CHECK(g.grad(m.input("x")).shape() == Shape{30, 30});
  set_jacobian_limit(1 << 20);
  ModuleGraph h = m(Tensor::ones({30}));
  h.back();
  CHECK(h.grad(m.param("w")).shape() == Shape{30});
}

TEST_CASE("the default Jacobian limit is 2^26 elements and scalar roots never meet it") {
  CHECK(jacobian_limit() == (std::int64_t{1} << 26));
  JacobianLimitScope scope;
  set_jacobian_limit(1);
  SimpleModel m;
  ModuleGraph g = m(3.0);
  g.back();
  CHECK(g.grad(m.param("w")).item() == 9.0);
}

TEST_CASE("no_grad records nothing") {
  SimpleModel m;
  NoGradGuard guard;
  ModuleGraph g = m(3.0);
  CHECK(g.value().item() == 36.0);
  CHECK_FALSE(g.root().in_graph());
  CHECK(g.nodes().empty());
  CHECK_THROWS_AS(g.back(), UsageError);
}

TEST_CASE("no_grad is scoped") {
  SimpleModel m;
  {
    NoGradGuard guard;
    CHECK_FALSE(CallSessionManager::current().grad_enabled());
  }
  CHECK(CallSessionManager::current().grad_enabled());
  CHECK(m(3.0).root().in_graph());
}

TEST_CASE("dropping a graph frees its whole tape") {
  SimpleModel m;
  std::weak_ptr<Tape> tape;
  {
    ModuleGraph g = m(Tensor{1.0, 2.0, 3.0});
    g.back();
    tape = g.root().tape();
    CHECK_FALSE(tape.expired());
  }
  CHECK(tape.expired());
}

TEST_CASE("a graph outlives its module") {
  auto m = std::make_unique<SimpleModel>();
  ModuleGraph g = (*m)(3.0);
  Parameter w = m->param("w");
  m.reset();
  g.back();
  CHECK(g.grad(w).item() == 9.0);
  CHECK(w.grad().item() == 9.0);
}

TEST_CASE("an input used twice is one node and its gradient sums both uses") {
  SimpleModel m;
  ModuleGraph g = m(2.0);
  std::size_t x_nodes = 0;
  for (const auto& n : g.nodes()) x_nodes += n->kind() == NodeKind::Variable;
  CHECK(x_nodes == 1);
  g.back();
  CHECK(g.grad(m.input("x")).item() == 3 * 4.0 + 2 * 2.0);
}

TEST_CASE("gradients of intermediate nodes can be read") {
  NodeRef inner;
  Lambda g({"x"}, [&](std::span<const NodeRef> x) {
    inner = op::square(x[0]);
    return op::mult(inner, 3.0);
  });
  ModuleGraph graph = g(2.0);
  graph.back();
  CHECK(graph.grad(inner).item() == 3.0);
  CHECK(graph.grad(g.input("x")).item() == 12.0);
}

TEST_CASE("an input with no path to the root has a zero gradient") {
  Lambda f({"x", "unused"}, [](std::span<const NodeRef> x) { return op::square(x[0]); });
  ModuleGraph g = f(3.0, Tensor{1.0, 2.0});
  g.back();
  CHECK(g.grad(f.input("x")).item() == 6.0);
  CHECK(allclose(g.grad(f.input("unused")), Tensor{0.0, 0.0}));
}

TEST_CASE("broadcast parameters receive gradients reduced to their shape") {
  Lambda f({"x"}, [](std::span<const NodeRef> x) { return op::sum(op::mult(x[0], 2.0)); });
  ModuleGraph g = f(Tensor{{1.0, 2.0}, {3.0, 4.0}});
  g.back();
  CHECK(allclose(g.grad(f.input("x")), Tensor{{2.0, 2.0}, {2.0, 2.0}}));
}

TEST_CASE("an operator applied to a graph's root extends that graph") {
  SimpleModel m;
  ModuleGraph g = m(3.0);
  Lambda loss({"y"}, [](std::span<const NodeRef> y) { return op::square(op::sub(y[0], 30.0)); });
  ModuleGraph l = loss(g);
  CHECK(l.call_id() == g.call_id());
  CHECK(l.value().item() == 36.0);
  l.back();
  CHECK(l.grad(m.param("w")).item() == 2 * 6.0 * 9.0);
  CHECK(l.grad(m.input("x")).item() == 2 * 6.0 * 33.0);
}

TEST_CASE("variables can opt out of differentiation") {
  class Scaled : public Module<Scaled> {
   public:
    Scaled() : Module({Variable("x"), Variable("label").requires_grad(false)}, {Parameter("w", 2.0)}) {}
    NodeRef call(const NodeRef& x, const NodeRef& label) { return op::mult(op::mult(x, param("w")), label); }
  };
  Scaled s;
  ModuleGraph g = s(3.0, 5.0);
  g.back();
  CHECK(g.grad(s.param("w")).item() == 15.0);
  CHECK(g.grad(s.input("label")).item() == 0.0);
}

TEST_CASE("back(seed) copies the seed: later changes to it do not reach the gradients") {
  Lambda f({"a"}, [](std::span<const NodeRef> x) { return op::add(x[0], 1.0); });
  ModuleGraph g = f(Tensor{1.0, 2.0});
  Tensor seed{3.0, 4.0};
  g.back(seed);
  seed.fill_(7.0);
  CHECK(allclose(g.grad(f.input("a")), Tensor{3.0, 4.0}));
}

TEST_CASE("gradients keep each value's dtype when 0-d operands of mixed precision promote a result") {
  // float32 0-d + float64 0-d gives float64; the float32 branch must still get float32 gradients.
  Lambda f({"x"}, [](std::span<const NodeRef> in) {
    return op::add(Tensor::scalar(0.0, DType::Float32), op::mult(op::sum(op::square(in[0])), Tensor::scalar(0.5)));
  });
  const std::vector<NodeRef> args{NodeRef(Tensor::full({3}, 2.0, DType::Float32))};
  ModuleGraph g = f.invoke(args);
  g.back();
  const Tensor grad = g.grad(f.input("x"));
  CHECK(grad.dtype() == DType::Float32);
  CHECK(allclose(grad, Tensor::full({3}, 2.0, DType::Float32)));
}
