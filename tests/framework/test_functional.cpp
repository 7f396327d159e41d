// grad, value_and_grad, jacobian and vjp: hand-computed derivatives of small functions, the
// errors they give, and that Parameters' accumulated gradients stay untouched.
#include "models.h"

#include <zkynet/framework/functional.h>
#include <zkynet/framework/gradcheck.h>

#include <catch2/catch.hpp>

#include <cmath>

using namespace zkynet;
using Catch::Matchers::Contains;

namespace {

// f(a, b) = sum(a * b^2): df/da = b^2, df/db = 2ab.
NodeRef weighted_squares(std::span<const NodeRef> x) { return op::sum(op::mult(x[0], op::square(x[1]))); }
// g(a) = a^2 elementwise: Jacobian diag(2a).
NodeRef squares(std::span<const NodeRef> x) { return op::square(x[0]); }

}  // namespace

TEST_CASE("grad gives the derivative of a scalar function with respect to argument 0 by default") {
  const std::vector<Tensor> g = grad(weighted_squares)({Tensor{1.0, 2.0}, Tensor{3.0, -1.0}});
  REQUIRE(g.size() == 1);
  CHECK(allclose(g[0], Tensor{9.0, 1.0}));
}

TEST_CASE("grad with argnums returns one gradient per named argument, negative ones counted from the end") {
  const std::vector<Tensor> g = grad(weighted_squares, {-1, 0})({Tensor{1.0, 2.0}, Tensor{3.0, -1.0}});
  REQUIRE(g.size() == 2);
  CHECK(allclose(g[0], Tensor{6.0, -4.0}));
  CHECK(allclose(g[1], Tensor{9.0, 1.0}));
}

TEST_CASE("value_and_grad returns the value with the gradients") {
  const ValueAndGrad r = value_and_grad(weighted_squares, {1})({Tensor{1.0, 2.0}, Tensor{3.0, -1.0}});
  CHECK(r.value.item() == 11.0);
  CHECK(allclose(r.grads[0], Tensor{6.0, -4.0}));
}

TEST_CASE("grad of a non-scalar function is an error that points to jacobian and vjp") {
  CHECK_THROWS_AS(grad(squares)({Tensor{1.0, 2.0}}), ShapeError);
  CHECK_THROWS_WITH(grad(squares)({Tensor{1.0, 2.0}}),
                    Contains("grad") && Contains("(2,)") && Contains("jacobian()") && Contains("vjp()"));
}

TEST_CASE("grad names an argnum outside the call") {
  CHECK_THROWS_WITH(grad(weighted_squares, {2})({Tensor{1.0}, Tensor{2.0}}),
                    Contains("argnums names argument 2 of a call with 2 arguments"));
}

TEST_CASE("jacobian stacks one row per output element: out.shape + argument.shape") {
  const std::vector<Tensor> j = jacobian(squares)({Tensor{1.0, -3.0, 0.5}});
  REQUIRE(j[0].shape() == Shape{3, 3});
  CHECK(allclose(j[0], Tensor{{2.0, 0.0, 0.0}, {0.0, -6.0, 0.0}, {0.0, 0.0, 1.0}}));
}

TEST_CASE("jacobian of a scalar function equals grad, and of an argument it ignores is zero") {
  const auto f = [](std::span<const NodeRef> x) { return op::sum(op::square(x[0])); };
  const std::vector<Tensor> j = jacobian(f, {0, 1})({Tensor{1.0, 2.0}, Tensor{5.0}});
  CHECK(allclose(j[0], Tensor{2.0, 4.0}));
  CHECK(allclose(j[1], Tensor{0.0}));
}

TEST_CASE("vjp's pullback gives the cotangent's vector-Jacobian product, as often as asked") {
  const VjpResult r = vjp(squares, {Tensor{1.0, -3.0}});
  CHECK(allclose(r.value, Tensor{1.0, 9.0}));
  CHECK(allclose(r.pullback(Tensor{1.0, 1.0})[0], Tensor{2.0, -6.0}));
  CHECK(allclose(r.pullback(Tensor{0.5, 0.0})[0], Tensor{1.0, 0.0}));
}

TEST_CASE("the transforms agree with float64 finite differences") {
  const auto f = [](std::span<const NodeRef> x) { return op::sum(op::mult(op::exp(x[0]), op::tanh(x[1]))); };
  const Tensor a{0.3, -0.7, 1.1};
  const Tensor b{0.2, 0.9, -0.4};
  const std::vector<Tensor> g = grad(f, {0, 1})({a, b});
  const double h = 1e-6;
  for (std::int64_t i = 0; i < 3; ++i) {
    Tensor ap = a.clone(), am = a.clone();
    ap.data<double>()[i] += h;
    am.data<double>()[i] -= h;
    const double fd = (value_and_grad(f)({ap, b}).value.item() - value_and_grad(f)({am, b}).value.item()) / (2 * h);
    CHECK(std::abs(g[0].at({i}) - fd) < 1e-7);
  }
}

TEST_CASE("the transforms leave Parameters' accumulated gradients untouched") {
  testing::SimpleModel m;
  const auto f = [&m](std::span<const NodeRef> x) -> NodeRef { return m(x[0]); };
  const std::vector<Tensor> g = grad(f)({Tensor(3.0)});
  CHECK(g[0].item() == 33.0);
  CHECK_FALSE(m.param("w").grad().defined());
}

TEST_CASE("every transform call grounds a graph of its own") {
  const auto f = [](std::span<const NodeRef> x) { return op::sum(op::square(x[0])); };
  const GradFn df = grad(f);
  const Tensor x{1.0, 2.0};
  CHECK(allclose(df({x})[0], Tensor{2.0, 4.0}));
  CHECK(allclose(df({Tensor{3.0, 4.0}})[0], Tensor{6.0, 8.0}));
  CHECK(allclose(df({x})[0], Tensor{2.0, 4.0}));
}
