#include "models.h"

#include <catch2/catch.hpp>

using namespace zkynet;
using namespace zkynet::testing;

TEST_CASE("NO weight sharing, NO input sharing") {
  NoWeightSharingDifferentInputs m;
  ModuleGraph g = m(3.0, 4.0);
  CHECK(g.value().item() == 36.0 + 80.0);
  g.back();
  CHECK(g.grad(m.input("x1")).item() == 33.0);
  CHECK(g.grad(m.input("x2")).item() == 56.0);
  CHECK(g.grad(m.m1.param("w")).item() == 9.0);
  CHECK(g.grad(m.m2.param("w")).item() == 16.0);
  CHECK(g.grad(m.m1.input("x")).item() == 33.0);  // m1's x is bound to x1 in this call
}

TEST_CASE("YES weight sharing, NO input sharing") {
  WeightSharingDifferentInputs m;
  ModuleGraph g = m(3.0, 4.0);
  CHECK(g.value().item() == (3.0 + 2.0) * 9.0 + (4.0 + 2.0) * 16.0);
  g.back();
  CHECK(g.grad(m.input("x1")).item() == 3 * 9.0 + 2 * 2.0 * 3.0);
  CHECK(g.grad(m.input("x2")).item() == 3 * 16.0 + 2 * 2.0 * 4.0);
  CHECK(g.grad(m.m1.param("w")).item() == 9.0 + 16.0);
}

TEST_CASE("NO weight sharing, YES input sharing") {
  NoWeightSharingSameInputs m;
  m.m2.param("w").set_value(Tensor(2.0));
  ModuleGraph g = m(3.0);
  CHECK(g.value().item() == 36.0 + 45.0);
  g.back();
  CHECK(g.grad(m.input("x1")).item() == 33.0 + 39.0);
  CHECK(g.grad(m.m1.param("w")).item() == 9.0);
  CHECK(g.grad(m.m2.param("w")).item() == 9.0);
}

TEST_CASE("YES weight sharing, YES input sharing") {
  WeightSharingSameInputs m;
  ModuleGraph g = m(3.0);
  CHECK(g.value().item() == 72.0);
  g.back();
  CHECK(g.grad(m.input("x1")).item() == 66.0);
  CHECK(g.grad(m.m1.param("w")).item() == 18.0);
}

TEST_CASE("composites give Jacobians for vector inputs") {
  WeightSharingDifferentInputs m;
  ModuleGraph g = m(Tensor{1.0, 2.0}, Tensor{3.0, 4.0});
  g.back();
  // d/dx (x + 2) x^2 = 3x^2 + 4x on the diagonal; d/dw = x1^2 + x2^2 per output.
  CHECK(allclose(g.grad(m.input("x1")), Tensor{{7.0, 0.0}, {0.0, 20.0}}));
  CHECK(allclose(g.grad(m.m1.param("w")), Tensor{10.0, 20.0}));
}

TEST_CASE("a composite's graph is flat: only input and operator nodes") {
  NoWeightSharingDifferentInputs m;
  ModuleGraph g = m(3.0, 4.0);
  std::size_t inputs = 0, operators = 0;
  for (const auto& n : g.nodes()) (n->kind() == NodeKind::Operator ? operators : inputs)++;
  CHECK(inputs == 4);     // x1, x2, m1.w, m2.w
  CHECK(operators == 7);  // 3 per SimpleModel + the final add
  for (const auto& n : g.nodes()) CHECK(n->call_id() == g.call_id());
}
