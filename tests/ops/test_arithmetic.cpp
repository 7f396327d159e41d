// Arithmetic operators: add, sub, mult, div, neg, square and the NodeRef operators.
// Each gets a float64 gradient check (with broadcast operand shapes for binary operators),
// values computed by hand, a float32 value check, and its error cases.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <algorithm>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// Operand shape pairs for binary gradient checks: equal, trailing-axis and two-sided broadcasts.
const std::vector<std::pair<Shape, Shape>> kBinaryShapes = {
    {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{4}, {3, 4}}, {{2, 1, 3}, {4, 1}}, {{}, {2, 3}}, {{2, 3}, {}}};

const Body kAdd = [](std::span<const NodeRef> x) { return op::add(x[0], x[1]); };
const Body kSub = [](std::span<const NodeRef> x) { return op::sub(x[0], x[1]); };
const Body kMult = [](std::span<const NodeRef> x) { return op::mult(x[0], x[1]); };
const Body kDiv = [](std::span<const NodeRef> x) { return op::div(x[0], x[1]); };

void gradcheck_binary(const Body& f, double low, double high) {
  Generator gen(7);
  for (const auto& [sa, sb] : kBinaryShapes) {
    INFO("shapes " << shape_str(sa) << " and " << shape_str(sb));
    const GradcheckResult r = gradcheck(f, {Tensor::uniform(sa, low, high, gen), Tensor::uniform(sb, low, high, gen)});
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

}  // namespace

// ---- add ---------------------------------------------------------------------------------

TEST_CASE("add of same-shape matrices gives elementwise sums") {
  const Tensor y = op::add(Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{{10.0, 20.0}, {30.0, 40.0}}).value();
  CHECK(y.dtype() == DType::Float64);
  CHECK(allclose(y, Tensor{{11.0, 22.0}, {33.0, 44.0}}));
}

TEST_CASE("add broadcasts a row vector and a scalar constant") {
  CHECK(allclose(op::add(Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{10.0, 20.0}).value(), Tensor{{11.0, 22.0}, {13.0, 24.0}}));
  CHECK(allclose(op::add(Tensor{{1.0, 2.0}, {3.0, 4.0}}, 0.5).value(), Tensor{{1.5, 2.5}, {3.5, 4.5}}));
  // (2,1) + (3,) -> (2,3)
  CHECK(allclose(op::add(Tensor{{1.0}, {2.0}}, Tensor{10.0, 20.0, 30.0}).value(),
                 Tensor{{11.0, 21.0, 31.0}, {12.0, 22.0, 32.0}}));
}

TEST_CASE("add passes gradcheck on equal and broadcast shapes") { gradcheck_binary(kAdd, -2.0, 2.0); }

TEST_CASE("add sums the gradient of a broadcast operand over the broadcast axes") {
  const Tensor seed{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  const auto g = vjp(kAdd, {Tensor::zeros({2, 3}), Tensor::zeros({3})}, seed);
  CHECK(allclose(g[0], seed));
  CHECK(allclose(g[1], Tensor{5.0, 7.0, 9.0}));
  const auto h = vjp(kAdd, {Tensor::zeros({2, 1}), Tensor::zeros({3})}, seed);
  CHECK(allclose(h[0], Tensor{{6.0}, {15.0}}));
  CHECK(allclose(h[1], Tensor{5.0, 7.0, 9.0}));
}

TEST_CASE("add works on float32 operands") {
  const Tensor a = Tensor{{1.0, 2.0}, {3.0, 4.0}}.to(DType::Float32);
  const Tensor b = Tensor{0.5, -1.0}.to(DType::Float32);
  const Tensor y = op::add(a, b).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{{1.5, 1.0}, {3.5, 3.0}}));
}

TEST_CASE("add rejects shapes that do not broadcast, naming the operator and both shapes") {
  const std::string msg = error_message<ShapeError>([] { op::add(Tensor::zeros({2, 3}), Tensor::zeros({4})); });
  CHECK_THAT(msg, Contains("add") && Contains("(2,3)") && Contains("(4,)"));
}

TEST_CASE("add rejects a float32 tensor with a float64 tensor") {
  CHECK_THROWS_AS(op::add(Tensor::ones({2}, DType::Float32), Tensor::ones({2})), TypeError);
  const std::string msg =
      error_message<TypeError>([] { op::add(Tensor::ones({2}, DType::Float32), Tensor::ones({2})); });
  CHECK_THAT(msg, Contains("add") && Contains("float32") && Contains("float64"));
}

TEST_CASE("add of float32 with a 0-d float64 constant stays float32") {
  const Tensor a = Tensor{1.0, 2.0}.to(DType::Float32);
  const Tensor right = op::add(a, 0.5).value();
  const Tensor left = op::add(Tensor(0.5), a).value();
  CHECK(right.dtype() == DType::Float32);
  CHECK(left.dtype() == DType::Float32);
  CHECK(allclose(right, Tensor{1.5, 2.5}));
  CHECK(allclose(left, Tensor{1.5, 2.5}));
}

// ---- sub ---------------------------------------------------------------------------------

TEST_CASE("sub gives elementwise differences with broadcasting") {
  CHECK(allclose(op::sub(Tensor{{5.0, 7.0}, {9.0, 11.0}}, Tensor{{1.0, 2.0}, {3.0, 4.0}}).value(),
                 Tensor{{4.0, 5.0}, {6.0, 7.0}}));
  CHECK(allclose(op::sub(Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{1.0, 10.0}).value(), Tensor{{0.0, -8.0}, {2.0, -6.0}}));
  CHECK(allclose(op::sub(1.0, Tensor{1.0, 2.0, 3.0}).value(), Tensor{0.0, -1.0, -2.0}));
}

TEST_CASE("sub passes gradcheck on equal and broadcast shapes") { gradcheck_binary(kSub, -2.0, 2.0); }

TEST_CASE("sub gives the subtrahend the negated, reduced gradient") {
  const Tensor seed{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  const auto g = vjp(kSub, {Tensor::zeros({2, 3}), Tensor::zeros({3})}, seed);
  CHECK(allclose(g[0], seed));
  CHECK(allclose(g[1], Tensor{-5.0, -7.0, -9.0}));
}

TEST_CASE("sub works on float32 operands") {
  const Tensor y = op::sub(Tensor{3.0, 1.0}.to(DType::Float32), Tensor{0.5, 2.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{2.5, -1.0}));
}

TEST_CASE("sub rejects shapes that do not broadcast, naming the operator and both shapes") {
  const std::string msg = error_message<ShapeError>([] { op::sub(Tensor::zeros({2, 3}), Tensor::zeros({2})); });
  CHECK_THAT(msg, Contains("sub") && Contains("(2,3)") && Contains("(2,)"));
}

TEST_CASE("sub rejects a float64 tensor with a float32 tensor") {
  CHECK_THROWS_AS(op::sub(Tensor::ones({2, 2}), Tensor::ones({2}, DType::Float32)), TypeError);
}

// ---- mult --------------------------------------------------------------------------------

TEST_CASE("mult gives elementwise products with broadcasting") {
  CHECK(allclose(op::mult(Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{{5.0, 6.0}, {7.0, 8.0}}).value(),
                 Tensor{{5.0, 12.0}, {21.0, 32.0}}));
  CHECK(allclose(op::mult(Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{{10.0}, {-1.0}}).value(),
                 Tensor{{10.0, 20.0}, {-3.0, -4.0}}));
  CHECK(allclose(op::mult(Tensor{1.0, -2.0}, 3.0).value(), Tensor{3.0, -6.0}));
}

TEST_CASE("mult passes gradcheck on equal and broadcast shapes") { gradcheck_binary(kMult, -2.0, 2.0); }

TEST_CASE("mult gradients are the other operand times the seed, reduced to each shape") {
  const Tensor a{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  const Tensor b{10.0, 20.0, 30.0};
  const auto g = vjp(kMult, {a, b}, Tensor::ones({2, 3}));
  CHECK(allclose(g[0], Tensor{{10.0, 20.0, 30.0}, {10.0, 20.0, 30.0}}));
  CHECK(allclose(g[1], Tensor{5.0, 7.0, 9.0}));
}

TEST_CASE("mult of one node by itself doubles the gradient") {
  const Body f = [](std::span<const NodeRef> x) { return op::mult(x[0], x[0]); };
  const auto g = vjp(f, {Tensor{1.0, -2.0, 3.0}}, Tensor::ones({3}));
  CHECK(allclose(g[0], Tensor{2.0, -4.0, 6.0}));
}

TEST_CASE("mult works on float32 operands") {
  const Tensor y = op::mult(Tensor{{1.0, 2.0}, {3.0, 4.0}}.to(DType::Float32), Tensor{2.0, 0.5}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{{2.0, 1.0}, {6.0, 2.0}}));
}

TEST_CASE("mult rejects shapes that do not broadcast, naming the operator and both shapes") {
  const std::string msg = error_message<ShapeError>([] { op::mult(Tensor::zeros({2, 1, 3}), Tensor::zeros({4, 2})); });
  CHECK_THAT(msg, Contains("mult") && Contains("(2,1,3)") && Contains("(4,2)"));
}

TEST_CASE("mult rejects a float32 tensor with a float64 tensor") {
  CHECK_THROWS_AS(op::mult(Tensor::ones({3}, DType::Float32), Tensor::ones({3})), TypeError);
}

TEST_CASE("mult of float32 with a 0-d float64 constant stays float32") {
  const Tensor y = op::mult(Tensor{1.0, 2.0}.to(DType::Float32), 2.5).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{2.5, 5.0}));
}

// ---- div ---------------------------------------------------------------------------------

TEST_CASE("div gives elementwise quotients with broadcasting") {
  CHECK(allclose(op::div(Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{2.0, 4.0}).value(), Tensor{{0.5, 0.5}, {1.5, 1.0}}));
  CHECK(allclose(op::div(1.0, Tensor{2.0, 4.0, -0.5}).value(), Tensor{0.5, 0.25, -2.0}));
}

TEST_CASE("div passes gradcheck on equal and broadcast shapes") {
  // Denominators kept in [0.5, 2], away from the pole at 0.
  gradcheck_binary(kDiv, 0.5, 2.0);
  Generator gen(11);
  const GradcheckResult r = gradcheck(kDiv, {Tensor::randn({2, 1, 3}, gen), Tensor::uniform({4, 1}, -2.0, -0.5, gen)});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("div gradients are 1/b and -a/b^2, reduced to each shape") {
  // a = [[1, 2], [3, 4]], b = [2, 4]: d/da = 1/b per row; d/db_j = -sum_i a_ij / b_j^2.
  const auto g = vjp(kDiv, {Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{2.0, 4.0}}, Tensor::ones({2, 2}));
  CHECK(allclose(g[0], Tensor{{0.5, 0.25}, {0.5, 0.25}}));
  CHECK(allclose(g[1], Tensor{-1.0, -0.375}));
}

TEST_CASE("div works on float32 operands") {
  const Tensor y = op::div(Tensor{1.0, 3.0}.to(DType::Float32), Tensor{4.0, 2.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{0.25, 1.5}));
}

TEST_CASE("div rejects shapes that do not broadcast, naming the operator and both shapes") {
  const std::string msg = error_message<ShapeError>([] { op::div(Tensor::ones({3}), Tensor::ones({2, 2})); });
  CHECK_THAT(msg, Contains("div") && Contains("(3,)") && Contains("(2,2)"));
}

TEST_CASE("div rejects a float32 tensor with a float64 tensor") {
  CHECK_THROWS_AS(op::div(Tensor::ones({2}, DType::Float32), Tensor::ones({2})), TypeError);
}

// ---- neg ---------------------------------------------------------------------------------

TEST_CASE("neg negates every element") {
  CHECK(allclose(op::neg(Tensor{{1.0, -2.0}, {0.0, 3.5}}).value(), Tensor{{-1.0, 2.0}, {0.0, -3.5}}));
}

TEST_CASE("neg passes gradcheck") {
  Generator gen(3);
  const GradcheckResult r = gradcheck([](std::span<const NodeRef> x) { return op::neg(x[0]); }, {Tensor::randn({3, 4}, gen)});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("neg gradient is the negated seed") {
  const auto g = vjp([](std::span<const NodeRef> x) { return op::neg(x[0]); }, {Tensor{1.0, 2.0}}, Tensor{3.0, -4.0});
  CHECK(allclose(g[0], Tensor{-3.0, 4.0}));
}

TEST_CASE("neg works on float32") {
  const Tensor y = op::neg(Tensor{1.5, -2.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{-1.5, 2.0}));
}

// ---- square ------------------------------------------------------------------------------

TEST_CASE("square squares every element") {
  CHECK(allclose(op::square(Tensor{{1.0, -2.0}, {0.5, 3.0}}).value(), Tensor{{1.0, 4.0}, {0.25, 9.0}}));
}

TEST_CASE("square passes gradcheck") {
  Generator gen(5);
  const GradcheckResult r =
      gradcheck([](std::span<const NodeRef> x) { return op::square(x[0]); }, {Tensor::randn({2, 3, 2}, gen)});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("square gradient is 2x times the seed") {
  const auto g = vjp([](std::span<const NodeRef> x) { return op::square(x[0]); }, {Tensor{1.0, -2.0, 3.0}},
                     Tensor{1.0, 1.0, 0.5});
  CHECK(allclose(g[0], Tensor{2.0, -4.0, 3.0}));
}

TEST_CASE("square works on float32") {
  const Tensor y = op::square(Tensor{1.5, -2.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{2.25, 4.0}));
}

// ---- NodeRef operators -------------------------------------------------------------------

TEST_CASE("NodeRef operators + - * / and unary - compute like the named operators") {
  const NodeRef a = Tensor{{1.0, 2.0}, {3.0, 4.0}};
  const NodeRef b = Tensor{2.0, 4.0};
  CHECK(allclose((a + b).value(), Tensor{{3.0, 6.0}, {5.0, 8.0}}));
  CHECK(allclose((a - b).value(), Tensor{{-1.0, -2.0}, {1.0, 0.0}}));
  CHECK(allclose((a * b).value(), Tensor{{2.0, 8.0}, {6.0, 16.0}}));
  CHECK(allclose((a / b).value(), Tensor{{0.5, 0.5}, {1.5, 1.0}}));
  CHECK(allclose((-a).value(), Tensor{{-1.0, -2.0}, {-3.0, -4.0}}));
  // Constants on either side.
  CHECK(allclose((a * 2.0 + 1.0).value(), Tensor{{3.0, 5.0}, {7.0, 9.0}}));
  CHECK(allclose((1.0 - a / 2.0).value(), Tensor{{0.5, 0.0}, {-0.5, -1.0}}));
}

TEST_CASE("NodeRef operators record the named operators in a module's graph") {
  Lambda f({"a", "b"}, [](std::span<const NodeRef> x) { return -(x[0] * x[1] + x[0] / x[1] - x[1]); });
  ModuleGraph g = f(Tensor{1.0, 2.0}, Tensor{2.0, 4.0});
  std::vector<std::string> labels;
  for (const auto& node : g.nodes()) {
    if (node->kind() == NodeKind::Operator) labels.push_back(node->label());
  }
  // The operands of + are evaluated in an unspecified order: compare the recorded operators as a set.
  std::sort(labels.begin(), labels.end());
  CHECK(labels == std::vector<std::string>{"add", "div", "mult", "neg", "sub"});
  CHECK(g.root().node()->label() == "neg");
  // -(a*b + a/b - b) at a = [1, 2], b = [2, 4]
  CHECK(allclose(g.value(), Tensor{-0.5, -4.5}));
}

TEST_CASE("an expression of NodeRef operators passes gradcheck with broadcasting") {
  Generator gen(13);
  const Body f = [](std::span<const NodeRef> x) { return -(x[0] * x[1] + x[0] / x[1] - x[1]) * x[0]; };
  const GradcheckResult r = gradcheck(f, {Tensor::randn({3, 4}, gen), Tensor::uniform({4}, 0.5, 2.0, gen)});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("NodeRef operator gradients match hand-computed values") {
  // f = a*b + a/b - b at a = 2, b = 4: df/da = b + 1/b = 4.25, df/db = a - a/b^2 - 1 = 0.875
  const Body f = [](std::span<const NodeRef> x) { return x[0] * x[1] + x[0] / x[1] - x[1]; };
  const auto g = vjp(f, {Tensor(2.0), Tensor(4.0)}, Tensor(1.0));
  CHECK(g[0].item() == Approx(4.25));
  CHECK(g[1].item() == Approx(0.875));
}
