// Custom derivative rules (CustomVjp, JAX's custom_vjp), stop_gradient and non-differentiable
// arguments: values and gradients against hand-computed numbers, gradcheck against float64
// central differences, the node a rule records, and the errors of a missing or wrong rule.
#include "models.h"
#include "testing/error_message.h"

#include <zkynet/framework/custom_vjp.h>
#include <zkynet/framework/dot.h>
#include <zkynet/framework/functional.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/compare.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/select.h>

#include <catch2/catch.hpp>

#include <cmath>

using namespace zkynet;
using Catch::Matchers::Contains;
using testing::error_message;

namespace {

// max(x, 0) + log(1 + e^-|x|) = log(1 + e^x) without overflow.
NodeRef stable_log1pexp(const NodeRef& x) {
  return op::add(op::relu(x), op::log(op::add(op::exp(op::neg(op::abs(x))), 1.0)));
}

// log(1 + e^x) whose derivative is sigmoid(x): finite everywhere, where the plain formula's
// e^x / (1 + e^x) is nan at x = 1000.
CustomVjp make_log1pexp() {
  CustomVjp f("log1pexp", 1, [](std::span<const NodeRef> x) { return op::log(op::add(op::exp(x[0]), 1.0)); });
  f.defvjp([](std::span<const NodeRef> x) { return CustomVjp::Forward{stable_log1pexp(x[0]), {x[0].value()}}; },
           [](std::span<const Tensor> residuals, const Tensor& grad) {
             return std::vector<Tensor>{op::mult(grad, op::sigmoid(residuals[0])).value()};
           });
  return f;
}

// Binarizes to +-1; the straight-through estimator passes the gradient where |x| <= 1.
CustomVjp make_binarize() {
  const auto sign = [](const NodeRef& x) { return op::where(op::greater(x, 0.0), 1.0, -1.0); };
  CustomVjp f("binarize", 1, [sign](std::span<const NodeRef> x) { return sign(x[0]); });
  f.defvjp([sign](std::span<const NodeRef> x) { return CustomVjp::Forward{sign(x[0]), {x[0].value()}}; },
           [](std::span<const Tensor> residuals, const Tensor& grad) {
             const NodeRef inside = op::less_equal(op::abs(residuals[0]), 1.0);
             return std::vector<Tensor>{op::where(inside, grad, 0.0).value()};
           });
  return f;
}

// The identity whose backward clips the incoming gradient to [-limit, limit].
CustomVjp make_clip_gradient(double limit) {
  CustomVjp f("clip_gradient", 1, [](std::span<const NodeRef> x) { return x[0]; });
  f.defvjp([](std::span<const NodeRef> x) { return CustomVjp::Forward{x[0], {}}; },
           [limit](std::span<const Tensor>, const Tensor& grad) {
             return std::vector<Tensor>{op::clamp(grad, -limit, limit).value()};
           });
  return f;
}

// f(a, b) = a * b with a hand-coded rule, b declared non-differentiable.
CustomVjp make_scaled(std::vector<std::size_t> nondiff) {
  CustomVjp f("scaled", 2, [](std::span<const NodeRef> x) { return op::mult(x[0], x[1]); }, std::move(nondiff));
  f.defvjp([](std::span<const NodeRef> x) { return CustomVjp::Forward{op::mult(x[0], x[1]), {x[0].value(), x[1].value()}}; },
           [](std::span<const Tensor> r, const Tensor& g) {
             return std::vector<Tensor>{op::mult(g, r[1]).value(), op::mult(g, r[0]).value()};
           });
  return f;
}

Tensor grad_at(const std::function<NodeRef(std::span<const NodeRef>)>& f, const Tensor& x) {
  return grad(f)({x})[0];
}

// A hand-coded operator whose second argument (an exponent) takes no gradient: x^k.
struct PowerDef {
  static constexpr std::string_view name = "power";
  static constexpr std::array<std::string_view, 2> inputs{"x", "k"};
  static constexpr std::array<bool, 2> nondiff{false, true};
  Tensor forward(const Tensor& x, const Tensor& k) const { return op::pow(x, k).value(); }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const NodeRef k(c.in(1));
    return {op::mult(c.grad, op::mult(k, op::pow(c.in(0), op::sub(k, 1.0)))).value(), Tensor()};
  }
};

}  // namespace

TEST_CASE("a custom rule gives finite gradients where the plain formula's are nan") {
  const CustomVjp log1pexp = make_log1pexp();
  const Tensor x{-1000.0, 0.0, 1000.0};
  const Tensor g = grad_at([&](std::span<const NodeRef> a) { return op::sum(log1pexp(a[0])); }, x);
  CHECK(allclose(g, Tensor{0.0, 0.5, 1.0}, 0.0, 1e-15));
  const Tensor plain = grad_at([](std::span<const NodeRef> a) { return op::sum(op::log(op::add(op::exp(a[0]), 1.0))); }, x);
  CHECK(std::isnan(plain.data<double>()[2]));
}

TEST_CASE("a custom rule's forward is fwd's output") {
  const CustomVjp log1pexp = make_log1pexp();
  Lambda f({"x"}, [&](std::span<const NodeRef> a) { return log1pexp(a[0]); });
  const ModuleGraph g = f(Tensor{0.0, 1000.0});
  CHECK(allclose(g.value(), Tensor{std::log(2.0), 1000.0}, 1e-15, 0.0));
}

TEST_CASE("a custom rule passes gradcheck in float64") {
  const CustomVjp log1pexp = make_log1pexp();
  Generator gen(4);
  const GradcheckResult r = gradcheck([&](std::span<const NodeRef> a) { return log1pexp(a[0]); },
                                      {Tensor::randn({3, 4}, gen)});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("a custom rule records one node named by the rule, shown in DOT") {
  const CustomVjp log1pexp = make_log1pexp();
  Lambda f({"x"}, [&](std::span<const NodeRef> a) { return log1pexp(a[0]); }, "Model");
  const ModuleGraph g = f(Tensor{1.0, 2.0});
  int operators = 0;
  for (const auto& n : g.nodes()) operators += n->kind() == NodeKind::Operator;
  CHECK(operators == 1);
  CHECK(g.root().node()->label() == "log1pexp");
  CHECK_THAT(to_dot(g), Contains("log1pexp"));
}

TEST_CASE("outside a graph a custom rule runs the function itself") {
  int calls = 0;
  CustomVjp f("counted", 1, [&](std::span<const NodeRef> x) { ++calls; return op::square(x[0]); });
  f.defvjp([](std::span<const NodeRef> x) { return CustomVjp::Forward{op::square(x[0]), {}}; },
           [](std::span<const Tensor>, const Tensor& g) { return std::vector<Tensor>{g}; });
  const NodeRef y = f(Tensor{3.0});
  CHECK(calls == 1);
  CHECK(!y.in_graph());
  CHECK(y.value().item() == 9.0);
}

TEST_CASE("the straight-through estimator binarizes forward and passes the gradient inside [-1, 1]") {
  const CustomVjp binarize = make_binarize();
  const Tensor x{-2.0, -0.5, 0.25, 3.0};
  Lambda f({"x"}, [&](std::span<const NodeRef> a) { return binarize(a[0]); });
  CHECK(allclose(f(x).value(), Tensor{-1.0, -1.0, 1.0, 1.0}, 0.0, 0.0));
  const Tensor g = grad_at([&](std::span<const NodeRef> a) { return op::sum(op::mult(binarize(a[0]), 3.0)); }, x);
  CHECK(allclose(g, Tensor{0.0, 3.0, 3.0, 0.0}, 0.0, 0.0));
}

TEST_CASE("a rule can clip the gradient inside the backward pass") {
  const CustomVjp clip = make_clip_gradient(1.0);
  // d/d(clip's output) of sum(5 clip(x)^2) is 10 x = (-20, 0.5, 30); the rule clips it to [-1, 1].
  const Tensor x{-2.0, 0.05, 3.0};
  const Tensor g = grad_at([&](std::span<const NodeRef> a) { return op::sum(op::mult(op::square(clip(a[0])), 5.0)); }, x);
  CHECK(allclose(g, Tensor{-1.0, 0.5, 1.0}, 0.0, 1e-15));
}

TEST_CASE("a non-differentiable argument of a custom rule gets no gradient") {
  const CustomVjp scaled = make_scaled({1});
  const auto f = [&](std::span<const NodeRef> a) { return op::sum(scaled(a[0], a[1])); };
  const std::vector<Tensor> g = grad(f, {0, 1})({Tensor{1.0, 2.0}, Tensor{3.0, 4.0}});
  CHECK(allclose(g[0], Tensor{3.0, 4.0}, 0.0, 0.0));
  CHECK(allclose(g[1], Tensor{0.0, 0.0}, 0.0, 0.0));
  const std::vector<Tensor> both = grad([&](std::span<const NodeRef> a) { return op::sum(make_scaled({})(a[0], a[1])); },
                                        {0, 1})({Tensor{1.0, 2.0}, Tensor{3.0, 4.0}});
  CHECK(allclose(both[1], Tensor{1.0, 2.0}, 0.0, 0.0));
}

TEST_CASE("a hand-coded operator may declare an argument non-differentiable") {
  const std::vector<Tensor> g = grad([](std::span<const NodeRef> a) { return op::sum(apply(PowerDef{}, a[0], a[1])); },
                                     {0, 1})({Tensor{2.0, 3.0}, Tensor{3.0, 2.0}});
  CHECK(allclose(g[0], Tensor{12.0, 6.0}, 0.0, 1e-12));
  CHECK(allclose(g[1], Tensor{0.0, 0.0}, 0.0, 0.0));
}

TEST_CASE("a custom rule used in a graph before defvjp names the rule to write") {
  CustomVjp f("my_rule", 2, [](std::span<const NodeRef> x) { return op::mult(x[0], x[1]); });
  CHECK_THAT(error_message<UsageError>([&] {
               grad([&](std::span<const NodeRef> a) { return op::sum(f(a[0], a[1])); })({Tensor{1.0}, Tensor{2.0}});
             }),
             Contains("custom_vjp 'my_rule' has no derivative rule: call defvjp(fwd, bwd)") &&
                 Contains("x = (x0, x1)") && Contains("{grad_x0, grad_x1}"));
}

TEST_CASE("a backward rule returning the wrong number of gradients is refused with the rule's signature") {
  CustomVjp f("short", 2, [](std::span<const NodeRef> x) { return op::mult(x[0], x[1]); });
  f.defvjp([](std::span<const NodeRef> x) { return CustomVjp::Forward{op::mult(x[0], x[1]), {}}; },
           [](std::span<const Tensor>, const Tensor& g) { return std::vector<Tensor>{g}; });
  CHECK_THAT(error_message<UsageError>([&] {
               grad([&](std::span<const NodeRef> a) { return op::sum(f(a[0], a[1])); })({Tensor{1.0}, Tensor{2.0}});
             }),
             Contains("custom_vjp 'short': bwd returned 1 gradient(s) for 2 argument(s)") && Contains("grad_x1"));
}

TEST_CASE("a custom rule refuses a wrong argument count and an out-of-range non-differentiable argument") {
  const CustomVjp log1pexp = make_log1pexp();
  CHECK_THAT(error_message<UsageError>([&] { log1pexp(Tensor{1.0}, Tensor{2.0}); }),
             Contains("custom_vjp 'log1pexp': expected 1 argument(s), got 2"));
  CHECK_THAT(error_message<UsageError>([] { make_scaled({2}); }),
             Contains("scaled: non-differentiable argument 2 out of range for 2 argument(s)"));
}

TEST_CASE("stop_gradient passes the value and stops the gradient") {
  // d/dx sum(x * stop_gradient(x)) = stop_gradient(x) = x, not 2x.
  const Tensor x{1.5, -2.0};
  const Tensor g = grad_at([](std::span<const NodeRef> a) { return op::sum(op::mult(a[0], op::stop_gradient(a[0]))); }, x);
  CHECK(allclose(g, x, 0.0, 0.0));
  const Tensor none = grad_at([](std::span<const NodeRef> a) { return op::sum(op::mult(op::detach(a[0]), 2.0)); }, x);
  CHECK(allclose(none, Tensor{0.0, 0.0}, 0.0, 0.0));
}

TEST_CASE("stop_gradient records a node that needs no gradient") {
  Lambda f({"x"}, [](std::span<const NodeRef> a) { return op::stop_gradient(a[0]); });
  const ModuleGraph g = f(Tensor{1.0, 2.0});
  CHECK(g.root().node()->label() == "stop_gradient");
  CHECK(!g.root().node()->requires_grad());
  CHECK(allclose(g.value(), Tensor{1.0, 2.0}, 0.0, 0.0));
}
