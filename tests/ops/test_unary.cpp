// Unary operators: exp, log, sqrt, tanh, relu, sigmoid (hand-coded derivatives) and pow, abs
// (Jacobian-based). Each gets a float64 gradient check inside its domain, values and
// derivatives against numbers from torch 1.13 or by hand, and a float32 value check.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// Random values with |x| in [0.25, 2) and random signs: no kink of abs or relu lies within
// gradcheck's finite-difference step.
Tensor away_from_zero(const Shape& shape, Generator& gen) {
  const Tensor magnitude = Tensor::uniform(shape, 0.25, 2.0, gen);
  const Tensor sign = kernels::sign(Tensor::uniform(shape, -1.0, 1.0, gen));
  return kernels::mul(magnitude, sign);
}

// Seed of ones shaped like the inputs used by the derivative checks below.
const Tensor kOnes3 = Tensor{1.0, 1.0, 1.0};

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

// ---- exp ---------------------------------------------------------------------------------

TEST_CASE("exp values match torch") {
  // torch 1.13: torch.exp(torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64))
  CHECK(allclose(op::exp(Tensor{-1.0, 0.5, 2.0}).value(),
                 Tensor{0.36787944117144233, 1.64872127070012819, 7.38905609893065041}, 1e-14));
  CHECK(op::exp(Tensor(0.0)).value().item() == 1.0);
}

TEST_CASE("exp derivative equals its value") {
  const auto g = vjp([](std::span<const NodeRef> x) { return op::exp(x[0]); }, {Tensor{-1.0, 0.5, 2.0}}, kOnes3);
  CHECK(allclose(g[0], Tensor{0.36787944117144233, 1.64872127070012819, 7.38905609893065041}, 1e-14));
}

TEST_CASE("exp passes gradcheck") {
  Generator gen(21);
  require_gradcheck([](std::span<const NodeRef> x) { return op::exp(x[0]); }, {Tensor::randn({3, 4}, gen)});
}

TEST_CASE("exp works on float32") {
  const Tensor y = op::exp(Tensor{0.0, 1.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{1.0, 2.718281828459045}, 1e-6));
}

TEST_CASE("exp rejects an int64 tensor") {
  CHECK_THROWS_AS(op::exp(Tensor::arange(3, DType::Int64)), TypeError);
}

// ---- log ---------------------------------------------------------------------------------

TEST_CASE("log values match torch") {
  // torch 1.13: torch.log(torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64))
  CHECK(allclose(op::log(Tensor{0.5, 1.0, 4.0}).value(), Tensor{-0.69314718055994529, 0.0, 1.38629436111989057}, 1e-14));
}

TEST_CASE("log derivative is 1/x") {
  const auto g = vjp([](std::span<const NodeRef> x) { return op::log(x[0]); }, {Tensor{0.5, 1.0, 4.0}}, kOnes3);
  CHECK(allclose(g[0], Tensor{2.0, 1.0, 0.25}));
}

TEST_CASE("log passes gradcheck on positive inputs") {
  Generator gen(22);
  require_gradcheck([](std::span<const NodeRef> x) { return op::log(x[0]); }, {Tensor::uniform({3, 4}, 0.5, 3.0, gen)});
}

TEST_CASE("log works on float32") {
  const Tensor y = op::log(Tensor{1.0, 4.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{0.0, 1.3862943611198906}, 1e-6));
}

// ---- sqrt --------------------------------------------------------------------------------

TEST_CASE("sqrt values match hand-computed roots") {
  CHECK(allclose(op::sqrt(Tensor{{4.0, 9.0}, {2.0, 0.25}}).value(), Tensor{{2.0, 3.0}, {1.4142135623730951, 0.5}}));
}

TEST_CASE("sqrt derivative is 1/(2 sqrt x)") {
  // torch 1.13: sqrt grad at [0.5, 1, 4] = [0.70710678118654746, 0.5, 0.25]
  const auto g = vjp([](std::span<const NodeRef> x) { return op::sqrt(x[0]); }, {Tensor{0.5, 1.0, 4.0}}, kOnes3);
  CHECK(allclose(g[0], Tensor{0.70710678118654746, 0.5, 0.25}, 1e-14));
}

TEST_CASE("sqrt passes gradcheck on positive inputs") {
  Generator gen(23);
  require_gradcheck([](std::span<const NodeRef> x) { return op::sqrt(x[0]); }, {Tensor::uniform({2, 5}, 0.5, 3.0, gen)});
}

TEST_CASE("sqrt works on float32") {
  const Tensor y = op::sqrt(Tensor{4.0, 2.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{2.0, 1.4142135623730951}, 1e-6));
}

// ---- tanh --------------------------------------------------------------------------------

TEST_CASE("tanh values match torch") {
  // torch 1.13: torch.tanh(torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64))
  CHECK(allclose(op::tanh(Tensor{-1.0, 0.5, 2.0}).value(),
                 Tensor{-0.76159415595576485, 0.46211715726000974, 0.96402758007581690}, 1e-14));
}

TEST_CASE("tanh derivative is 1 - tanh^2") {
  // torch 1.13: tanh grad at [-1, 0.5, 2]
  const auto g = vjp([](std::span<const NodeRef> x) { return op::tanh(x[0]); }, {Tensor{-1.0, 0.5, 2.0}}, kOnes3);
  CHECK(allclose(g[0], Tensor{0.41997434161402614, 0.78644773296592740, 0.07065082485316443}, 1e-13));
}

TEST_CASE("tanh passes gradcheck") {
  Generator gen(24);
  require_gradcheck([](std::span<const NodeRef> x) { return op::tanh(x[0]); }, {Tensor::randn({4, 3}, gen)});
}

TEST_CASE("tanh works on float32") {
  const Tensor y = op::tanh(Tensor{0.0, 0.5}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{0.0, 0.46211715726000974}, 1e-6));
}

// ---- relu --------------------------------------------------------------------------------

TEST_CASE("relu zeroes negative elements and keeps the others") {
  CHECK(allclose(op::relu(Tensor{{-2.0, 0.0}, {3.0, -0.5}}).value(), Tensor{{0.0, 0.0}, {3.0, 0.0}}));
}

TEST_CASE("relu derivative is 1 for positive inputs and 0 otherwise, including at 0") {
  // torch 1.13 also gives 0 at the kink: relu grad at [-2, 0, 3] = [0, 0, 1]
  const auto g = vjp([](std::span<const NodeRef> x) { return op::relu(x[0]); }, {Tensor{-2.0, 0.0, 3.0}},
                     Tensor{5.0, 6.0, 7.0});
  CHECK(allclose(g[0], Tensor{0.0, 0.0, 7.0}));
}

TEST_CASE("relu passes gradcheck away from the kink") {
  Generator gen(25);
  require_gradcheck([](std::span<const NodeRef> x) { return op::relu(x[0]); }, {away_from_zero({3, 4}, gen)});
}

TEST_CASE("relu keeps NaN and passes the gradient there, as torch") {
  // torch 1.13: torch.relu([nan, -1, 2]) = [nan, 0, 2]; backward(seed [5, 6, 7]) -> [5, 0, 7]
  // (threshold_backward zeroes the gradient only where the output is <= 0)
  const Tensor x{kNaN, -1.0, 2.0};
  CHECK(allclose(op::relu(x).value(), Tensor{kNaN, 0.0, 2.0}));
  CHECK(std::isnan(op::relu(x.to(DType::Float32)).value().at({0})));
  const auto g = vjp([](std::span<const NodeRef> in) { return op::relu(in[0]); }, {x}, Tensor{5.0, 6.0, 7.0});
  CHECK(allclose(g[0], Tensor{5.0, 0.0, 7.0}));
}

TEST_CASE("relu works on float32") {
  const Tensor y = op::relu(Tensor{-1.0, 2.5}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{0.0, 2.5}));
}

// ---- pow ---------------------------------------------------------------------------------

TEST_CASE("pow values match torch with a broadcast exponent") {
  // torch 1.13: torch.pow([[1.5, 2], [0.5, 3]], [2, -0.5])
  CHECK(allclose(op::pow(Tensor{{1.5, 2.0}, {0.5, 3.0}}, Tensor{2.0, -0.5}).value(),
                 Tensor{{2.25, 0.70710678118654757}, {0.25, 0.57735026918962573}}, 1e-14));
  CHECK(allclose(op::pow(Tensor{-2.0, 3.0}, 3.0).value(), Tensor{-8.0, 27.0}));
  CHECK(allclose(op::pow(2.0, Tensor{0.0, 1.0, 10.0}).value(), Tensor{1.0, 2.0, 1024.0}));
}

TEST_CASE("pow derivatives match torch, the exponent's summed over the broadcast axis") {
  // torch 1.13: pow(b, e).sum().backward() with b = [[1.5, 2], [0.5, 3]], e = [2, -0.5]
  const auto g = vjp([](std::span<const NodeRef> x) { return op::pow(x[0], x[1]); },
                     {Tensor{{1.5, 2.0}, {0.5, 3.0}}, Tensor{2.0, -0.5}}, Tensor::ones({2, 2}));
  CHECK(allclose(g[0], Tensor{{3.0, -0.17677669529663689}, {1.0, -0.09622504486493763}}, 1e-13));
  CHECK(allclose(g[1], Tensor{0.73900969810338357, 1.12441317233183757}, 1e-13));
}

TEST_CASE("pow with a constant exponent has derivative n x^(n-1), also for negative bases") {
  const auto g = vjp([](std::span<const NodeRef> x) { return op::pow(x[0], 3.0); }, {Tensor{-2.0, 0.5, 1.0}}, kOnes3);
  CHECK(allclose(g[0], Tensor{12.0, 0.75, 3.0}));
}

TEST_CASE("pow with a zero exponent has derivative 0 with respect to the base") {
  const auto h = vjp([](std::span<const NodeRef> x) { return op::pow(x[0], 0.0); }, {Tensor{-2.0, 0.5, 1.0}}, kOnes3);
  CHECK(allclose(h[0], Tensor{0.0, 0.0, 0.0}));
}

TEST_CASE("pow keeps each partial apart where the other overflows, and follows torch off the domain") {
  // torch 1.13: pow([1e200, -2, 0, 0], [2, 2, -1.5, 2]) = [inf, 4, inf, 0];
  // backward(ones): base [2e200, -4, -inf, 0], exponent [inf, nan, -inf, 0]
  // (the base's 2e200 used to be 2e200 + inf * 0 = NaN; the exponent's NaN for a negative
  // base and -inf at 0^-1.5 used to be 0)
  const auto g = vjp([](std::span<const NodeRef> x) { return op::pow(x[0], x[1]); },
                     {Tensor{1e200, -2.0, 0.0, 0.0}, Tensor{2.0, 2.0, -1.5, 2.0}}, Tensor::ones({4}));
  CHECK(allclose(g[0], Tensor{2e200, -4.0, -kInf, 0.0}, 1e-15));
  CHECK(allclose(g[1], Tensor{kInf, kNaN, -kInf, 0.0}, 1e-15));
  // float32: 1e30^2.5 overflows; both partials are inf as in torch, not NaN
  const auto h = vjp([](std::span<const NodeRef> x) { return op::pow(x[0], x[1]); },
                     {Tensor{1e30}.to(DType::Float32), Tensor{2.5}.to(DType::Float32)},
                     Tensor::ones({1}, DType::Float32));
  CHECK(allclose(h[0], Tensor{kInf}));
  CHECK(allclose(h[1], Tensor{kInf}));
}

TEST_CASE("pow passes gradcheck on positive bases with broadcast exponents") {
  Generator gen(26);
  const Body f = [](std::span<const NodeRef> x) { return op::pow(x[0], x[1]); };
  require_gradcheck(f, {Tensor::uniform({3, 4}, 0.5, 2.0, gen), Tensor::randn({3, 4}, gen)});
  require_gradcheck(f, {Tensor::uniform({3, 4}, 0.5, 2.0, gen), Tensor::randn({4}, gen)});
  require_gradcheck(f, {Tensor::uniform({2, 1, 3}, 0.5, 2.0, gen), Tensor::randn({4, 1}, gen)});
  require_gradcheck(f, {Tensor::uniform({}, 0.5, 2.0, gen), Tensor::randn({2, 3}, gen)});
}

TEST_CASE("pow passes gradcheck on any base with an integer constant exponent") {
  Generator gen(27);
  require_gradcheck([](std::span<const NodeRef> x) { return op::pow(x[0], 3.0); }, {Tensor::randn({2, 3}, gen)});
}

TEST_CASE("pow works on float32 and keeps float32 with a float64 scalar exponent") {
  const Tensor y = op::pow(Tensor{2.0, 3.0}.to(DType::Float32), Tensor{3.0, 0.5}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{8.0, 1.7320508075688772}, 1e-6));
  const Tensor z = op::pow(Tensor{2.0, 3.0}.to(DType::Float32), 2.0).value();
  CHECK(z.dtype() == DType::Float32);
  CHECK(allclose(z, Tensor{4.0, 9.0}));
}

TEST_CASE("pow rejects shapes that do not broadcast, naming the operator and both shapes") {
  std::string msg;
  try {
    op::pow(Tensor::ones({2, 3}), Tensor::ones({4}));
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("pow") && Contains("(2,3)") && Contains("(4,)"));
}

TEST_CASE("pow rejects a float32 base with a float64 exponent tensor") {
  CHECK_THROWS_AS(op::pow(Tensor::ones({2}, DType::Float32), Tensor::ones({2})), TypeError);
}

// ---- abs ---------------------------------------------------------------------------------

TEST_CASE("abs gives magnitudes") {
  CHECK(allclose(op::abs(Tensor{{-1.5, 0.0}, {2.0, -0.0}}).value(), Tensor{{1.5, 0.0}, {2.0, 0.0}}));
}

TEST_CASE("abs derivative is the sign, 0 at 0 as in torch") {
  // torch 1.13: abs grad at [-2, 0, 3] = [-1, 0, 1]
  const auto g = vjp([](std::span<const NodeRef> x) { return op::abs(x[0]); }, {Tensor{-2.0, 0.0, 3.0}},
                     Tensor{2.0, 2.0, 2.0});
  CHECK(allclose(g[0], Tensor{-2.0, 0.0, 2.0}));
}

TEST_CASE("abs passes gradcheck away from the kink") {
  Generator gen(28);
  require_gradcheck([](std::span<const NodeRef> x) { return op::abs(x[0]); }, {away_from_zero({3, 4}, gen)});
}

TEST_CASE("abs works on float32") {
  const Tensor y = op::abs(Tensor{-1.5, 2.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{1.5, 2.0}));
}

// ---- sigmoid -----------------------------------------------------------------------------

TEST_CASE("sigmoid values match torch") {
  // torch 1.13: torch.sigmoid(torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64))
  CHECK(allclose(op::sigmoid(Tensor{-1.0, 0.5, 2.0}).value(),
                 Tensor{0.26894142136999510, 0.62245933120185459, 0.88079707797788231}, 1e-14));
  CHECK(op::sigmoid(Tensor(0.0)).value().item() == 0.5);
}

TEST_CASE("sigmoid derivative is s (1 - s)") {
  // torch 1.13: sigmoid grad at [-1, 0.5, 2]
  const auto g = vjp([](std::span<const NodeRef> x) { return op::sigmoid(x[0]); }, {Tensor{-1.0, 0.5, 2.0}}, kOnes3);
  CHECK(allclose(g[0], Tensor{0.19661193324148185, 0.23500371220159449, 0.10499358540350662}, 1e-13));
}

TEST_CASE("sigmoid's gradient is finite in its flat tails: 0 where torch gives 0, not NaN") {
  // torch 1.13 float64: sigmoid grad at [-1000, -710, -100, 1000, -inf, inf]
  //   = [0, 0, 3.7200759760208356e-44, 0, 0, 0]
  // (the derivative of 1 / (1 + e^-x) is inf / inf = NaN from x = -710; from the output it is 0)
  const Body f = [](std::span<const NodeRef> x) { return op::sigmoid(x[0]); };
  const Tensor x{-1000.0, -710.0, -100.0, 1000.0, -kInf, kInf};
  CHECK(allclose(op::sigmoid(x).value(), Tensor{0.0, 0.0, 3.7200759760208356e-44, 1.0, 0.0, 1.0}, 1e-14, 0.0));
  CHECK(allclose(vjp(f, {x}, Tensor::ones({6}))[0], Tensor{0.0, 0.0, 3.7200759760208356e-44, 0.0, 0.0, 0.0}, 1e-14,
                 0.0));
  // torch 1.13 float32: sigmoid grad at [-89, -100, -1e30, 1e30] = [0, 0, 0, 0] (NaN from -89 before)
  const Tensor g32 = vjp(f, {Tensor{-89.0, -100.0, -1e30, 1e30}.to(DType::Float32)}, Tensor::ones({4}, DType::Float32))[0];
  CHECK(g32.dtype() == DType::Float32);
  CHECK(allclose(g32, Tensor{0.0, 0.0, 0.0, 0.0}, 0.0, 0.0));
  // NaN stays NaN, value and gradient
  CHECK(allclose(vjp(f, {Tensor{kNaN}}, Tensor::ones({1}))[0], Tensor{kNaN}));
}

TEST_CASE("sigmoid passes gradcheck") {
  Generator gen(29);
  require_gradcheck([](std::span<const NodeRef> x) { return op::sigmoid(x[0]); }, {Tensor::randn({2, 3, 2}, gen)});
}

TEST_CASE("sigmoid works on float32") {
  const Tensor y = op::sigmoid(Tensor{0.0, 2.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{0.5, 0.88079707797788231}, 1e-6));
}

TEST_CASE("sigmoid rejects an int64 tensor") {
  CHECK_THROWS_AS(op::sigmoid(Tensor::arange(3, DType::Int64)), TypeError);
}

// ---- compositions ------------------------------------------------------------------------

TEST_CASE("a composition of unary operators passes gradcheck") {
  // log(1 + exp(x)) * sqrt(sigmoid(x)) + tanh(x)^2 - |x| + relu(x)
  Generator gen(30);
  const Body f = [](std::span<const NodeRef> x) {
    const NodeRef& v = x[0];
    return op::log(1.0 + op::exp(v)) * op::sqrt(op::sigmoid(v)) + op::pow(op::tanh(v), 2.0) - op::abs(v) + op::relu(v);
  };
  require_gradcheck(f, {away_from_zero({3, 3}, gen)});
}
