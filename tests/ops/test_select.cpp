// clamp, maximum, minimum, max, argmax, var and std: float64 gradient checks on random
// inputs away from ties and kinks, values and gradients against torch 1.13 (ties, bounds,
// NaNs included), int64 and float32 values, and the errors.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/select.h>

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

// Float64 results against torch's float64 ones: equal to rounding.
bool close(const Tensor& a, const Tensor& b) { return allclose(a, b, 1e-12, 1e-15); }

Tensor ints(const std::vector<std::int64_t>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// clamp's operand: points below, on, between and above the bounds -1 and 1.
const Tensor kClampX{{-2.0, -1.0, -0.5, 0.0}, {0.5, 1.0, 1.5, 3.0}};
const Tensor kSeed24{{1.0, 2.0, 3.0, 4.0}, {5.0, 6.0, 7.0, 8.0}};

// maximum/minimum operands (2,3) and (3,), broadcasting, with a tie at [0,1] (2 and 2).
const Tensor kMA{{1.0, 2.0, 3.0}, {-1.0, 0.5, 0.0}};
const Tensor kMB{2.0, 2.0, -1.0};
const Tensor kSeed23{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};

// max's operand, with a tie for the maximum in row 0 (3, 3) and row 1 (2, 2).
const Tensor kMaxX{{1.0, 3.0, 3.0, -1.0}, {2.0, 2.0, 1.0, 0.5}, {-4.0, -3.0, -3.5, -5.0}};

// var/std's operand.
const Tensor kV{{0.5, -1.2, 2.0, 1.0}, {1.5, 0.3, -0.7, 4.0}, {2.5, 2.0, -3.0, 0.1}};

// Random values in [-2, 2) kept at least `gap` away from every element of `kinks`
// (clamp's bounds), so that central differences never straddle a kink.
Tensor away_from(const Shape& shape, const std::vector<double>& kinks, double gap, Generator& gen) {
  Tensor t = Tensor::uniform(shape, -2.0, 2.0, gen);
  double* p = t.data<double>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    for (double k : kinks) {
      if (std::abs(p[i] - k) < gap) p[i] = k + (p[i] < k ? -gap : gap);
    }
  }
  return t;
}

}  // namespace

// ---- clamp -------------------------------------------------------------------------------

TEST_CASE("clamp to [-1, 1] matches torch, gradient passing on the bounds", "[indexing]") {
  // torch 1.13: y = torch.clamp(X, -1, 1); y.backward([[1, 2, 3, 4], [5, 6, 7, 8]])
  const Body f = [](std::span<const NodeRef> x) { return op::clamp(x[0], -1.0, 1.0); };
  CHECK(close(op::clamp(kClampX, -1.0, 1.0).value(), Tensor{{-1.0, -1.0, -0.5, 0.0}, {0.5, 1.0, 1.0, 1.0}}));
  CHECK(close(vjp(f, {kClampX}, kSeed24)[0], Tensor{{0.0, 2.0, 3.0, 4.0}, {5.0, 6.0, 0.0, 0.0}}));
}

TEST_CASE("clamp with only a lower bound matches torch", "[indexing]") {
  // torch 1.13: torch.clamp(X, min=0).backward(S)
  const Body f = [](std::span<const NodeRef> x) { return op::clamp(x[0], 0.0, std::nullopt); };
  CHECK(close(op::clamp(kClampX, 0.0, std::nullopt).value(), Tensor{{0.0, 0.0, 0.0, 0.0}, {0.5, 1.0, 1.5, 3.0}}));
  CHECK(close(vjp(f, {kClampX}, kSeed24)[0], Tensor{{0.0, 0.0, 0.0, 4.0}, {5.0, 6.0, 7.0, 8.0}}));
}

TEST_CASE("clamp with only an upper bound matches torch", "[indexing]") {
  // torch 1.13: torch.clamp(X, max=0.5).backward(S)
  const Body f = [](std::span<const NodeRef> x) { return op::clamp(x[0], std::nullopt, 0.5); };
  CHECK(close(op::clamp(kClampX, std::nullopt, 0.5).value(), Tensor{{-2.0, -1.0, -0.5, 0.0}, {0.5, 0.5, 0.5, 0.5}}));
  CHECK(close(vjp(f, {kClampX}, kSeed24)[0], Tensor{{1.0, 2.0, 3.0, 4.0}, {5.0, 0.0, 0.0, 0.0}}));
}

TEST_CASE("clamp with min above max gives max everywhere and no gradient, as torch", "[indexing]") {
  // torch 1.13: torch.clamp(X, 1, -1) = -1 everywhere; gradient 0
  const Body f = [](std::span<const NodeRef> x) { return op::clamp(x[0], 1.0, -1.0); };
  CHECK(close(op::clamp(kClampX, 1.0, -1.0).value(), Tensor::full({2, 4}, -1.0)));
  CHECK(close(vjp(f, {kClampX}, kSeed24)[0], Tensor::zeros({2, 4})));
}

TEST_CASE("clamp keeps NaN and gives it no gradient, as torch", "[indexing]") {
  // torch 1.13: torch.clamp([1, nan, 3], 0, 2) = [1, nan, 2]; .sum().backward() -> [1, 0, 0]
  const Body f = [](std::span<const NodeRef> x) { return op::clamp(x[0], 0.0, 2.0); };
  const Tensor x{1.0, kNaN, 3.0};
  const Tensor y = op::clamp(x, 0.0, 2.0).value();
  CHECK(y.at({0}) == 1.0);
  CHECK(std::isnan(y.at({1})));
  CHECK(y.at({2}) == 2.0);
  CHECK(close(vjp(f, {x}, Tensor::ones({3}))[0], Tensor{1.0, 0.0, 0.0}));
}

TEST_CASE("clamp passes gradcheck away from its bounds", "[indexing]") {
  Generator gen(201);
  const Body both = [](std::span<const NodeRef> x) { return op::clamp(x[0], -0.5, 1.0); };
  require_gradcheck(both, {away_from({3, 5}, {-0.5, 1.0}, 1e-3, gen)});
  const Body lower = [](std::span<const NodeRef> x) { return op::clamp(x[0], 0.25, std::nullopt); };
  require_gradcheck(lower, {away_from({4, 4}, {0.25}, 1e-3, gen)});
}

TEST_CASE("clamp of int64 and float32 keeps the dtype", "[indexing]") {
  // torch 1.13: torch.clamp(tensor([1, 5, 9]), 2, 6) = [2, 5, 6]
  const Tensor y = op::clamp(ints({1, 5, 9}, Shape{3}), 2.0, 6.0).value();
  CHECK(y.dtype() == DType::Int64);
  CHECK(y.to_doubles() == std::vector<double>{2, 5, 6});
  const Tensor z = op::clamp(kClampX.to(DType::Float32), -1.0, 1.0).value();
  CHECK(z.dtype() == DType::Float32);
  CHECK(allclose(z, Tensor{{-1.0, -1.0, -0.5, 0.0}, {0.5, 1.0, 1.0, 1.0}}));
}

TEST_CASE("clamp of int64 with bounds beyond its range leaves the values", "[indexing]") {
  const Tensor x = ints({-7, 0, 9}, Shape{3});
  CHECK(op::clamp(x, -1e30, 1e30).value().to_doubles() == std::vector<double>{-7, 0, 9});
  CHECK(op::clamp(x, std::nullopt, -1e30).value().to_doubles() ==
        std::vector<double>(3, static_cast<double>(std::numeric_limits<std::int64_t>::min())));
}

TEST_CASE("clamp rejects a call without bounds", "[indexing]") {
  CHECK_THAT(error_message<UsageError>([] { op::clamp(kClampX, std::nullopt, std::nullopt); }),
             Contains("clamp") && Contains("min") && Contains("max"));
}

TEST_CASE("clamp rejects a fractional bound for an int64 tensor", "[indexing]") {
  // torch 1.13 would promote: torch.clamp(tensor([1, 5, 9]), 2.5) is float32
  CHECK_THAT(error_message<TypeError>([] { op::clamp(ints({1, 5, 9}, Shape{3}), 2.5, std::nullopt); }),
             Contains("clamp") && Contains("int64"));
}

// ---- maximum, minimum --------------------------------------------------------------------

TEST_CASE("maximum with broadcasting and ties matches torch, ties splitting the gradient", "[indexing]") {
  // torch 1.13: y = torch.maximum(A, B); y.backward([[1, 2, 3], [4, 5, 6]])  (A (2,3), B (3,))
  const Body f = [](std::span<const NodeRef> x) { return op::maximum(x[0], x[1]); };
  CHECK(close(op::maximum(kMA, kMB).value(), Tensor{{2.0, 2.0, 3.0}, {2.0, 2.0, 0.0}}));
  const auto g = vjp(f, {kMA, kMB}, kSeed23);
  CHECK(close(g[0], Tensor{{0.0, 1.0, 3.0}, {0.0, 0.0, 6.0}}));
  CHECK(close(g[1], Tensor{5.0, 6.0, 0.0}));
}

TEST_CASE("minimum with broadcasting and ties matches torch, ties splitting the gradient", "[indexing]") {
  // torch 1.13: y = torch.minimum(A, B); y.backward([[1, 2, 3], [4, 5, 6]])
  const Body f = [](std::span<const NodeRef> x) { return op::minimum(x[0], x[1]); };
  CHECK(close(op::minimum(kMA, kMB).value(), Tensor{{1.0, 2.0, -1.0}, {-1.0, 0.5, -1.0}}));
  const auto g = vjp(f, {kMA, kMB}, kSeed23);
  CHECK(close(g[0], Tensor{{1.0, 1.0, 0.0}, {4.0, 5.0, 0.0}}));
  CHECK(close(g[1], Tensor{0.0, 1.0, 9.0}));
}

TEST_CASE("maximum and minimum pass gradcheck with broadcast operands", "[indexing]") {
  Generator gen(202);
  const Body mx = [](std::span<const NodeRef> x) { return op::maximum(x[0], x[1]); };
  const Body mn = [](std::span<const NodeRef> x) { return op::minimum(x[0], x[1]); };
  // Continuous random values: ties have probability 0, and gaps exceed the 1e-6 step.
  require_gradcheck(mx, {Tensor::randn({3, 4}, gen), Tensor::randn({4}, gen)});
  require_gradcheck(mn, {Tensor::randn({2, 1, 3}, gen), Tensor::randn({4, 1}, gen)});
  require_gradcheck(mx, {Tensor::randn({3}, gen), Tensor(0.1)});
}

TEST_CASE("maximum and minimum propagate NaN; both operands get the gradient there, as torch", "[indexing]") {
  // torch 1.13: torch.maximum([1, nan], [2, 2]) = [2, nan]; .sum().backward() -> a [0, 1], b [1, 1]
  const Body f = [](std::span<const NodeRef> x) { return op::maximum(x[0], x[1]); };
  const Tensor a{1.0, kNaN};
  const Tensor b{2.0, 2.0};
  const Tensor y = op::maximum(a, b).value();
  CHECK(y.at({0}) == 2.0);
  CHECK(std::isnan(y.at({1})));
  CHECK(std::isnan(op::minimum(b, a).value().at({1})));
  const auto g = vjp(f, {a, b}, Tensor::ones({2}));
  CHECK(close(g[0], Tensor{0.0, 1.0}));
  CHECK(close(g[1], Tensor{1.0, 1.0}));
}

TEST_CASE("maximum and minimum of int64 tensors are int64", "[indexing]") {
  // torch 1.13: torch.maximum(tensor([1, 5]), tensor([3, 2])) = [3, 5]
  const Tensor y = op::maximum(ints({1, 5}, Shape{2}), ints({3, 2}, Shape{2})).value();
  CHECK(y.dtype() == DType::Int64);
  CHECK(y.to_doubles() == std::vector<double>{3, 5});
  CHECK(op::minimum(ints({1, 5}, Shape{2}), ints({3, 2}, Shape{2})).value().to_doubles() == std::vector<double>{1, 2});
}

TEST_CASE("maximum rejects shapes that do not broadcast, naming them", "[indexing]") {
  CHECK_THAT(error_message<ShapeError>([] { op::maximum(kMA, Tensor{1.0, 2.0}); }),
             Contains("maximum") && Contains("(2,3)") && Contains("(2,)"));
  CHECK_THAT(error_message<ShapeError>([] { op::minimum(kMA, Tensor{1.0, 2.0}); }), Contains("minimum"));
}

TEST_CASE("maximum rejects operands of different dtypes", "[indexing]") {
  CHECK_THAT(error_message<TypeError>([] { op::maximum(kMA, kMB.to(DType::Float32)); }),
             Contains("maximum") && Contains("float32"));
}

// ---- max, argmax -------------------------------------------------------------------------

TEST_CASE("max along axis 1 matches torch, the gradient going to the first maximum", "[indexing]") {
  // torch 1.13: v, i = torch.max(X, 1); i = [1, 0, 1]; v.backward([1, -2, 3])
  const Body f = [](std::span<const NodeRef> x) { return op::max(x[0], 1); };
  CHECK(close(op::max(kMaxX, 1).value(), Tensor{3.0, 2.0, -3.0}));
  CHECK(close(vjp(f, {kMaxX}, Tensor{1.0, -2.0, 3.0})[0],
              Tensor{{0.0, 1.0, 0.0, 0.0}, {-2.0, 0.0, 0.0, 0.0}, {0.0, 3.0, 0.0, 0.0}}));
}

TEST_CASE("max along axis 0 with keepdim matches torch, values and gradient", "[indexing]") {
  // torch 1.13: v, i = torch.max(X, 0, keepdim=True); i = [[1, 0, 0, 1]]; v.backward([[1, 2, 3, 4]])
  const Body f = [](std::span<const NodeRef> x) { return op::max(x[0], 0, true); };
  const Tensor y = op::max(kMaxX, 0, true).value();
  CHECK(y.shape() == Shape{1, 4});
  CHECK(close(y, Tensor{{2.0, 3.0, 3.0, 0.5}}));
  CHECK(close(vjp(f, {kMaxX}, Tensor{{1.0, 2.0, 3.0, 4.0}})[0],
              Tensor{{0.0, 2.0, 3.0, 0.0}, {1.0, 0.0, 0.0, 4.0}, {0.0, 0.0, 0.0, 0.0}}));
}

TEST_CASE("argmax gives torch's int64 positions, first of ties, with and without keepdim", "[indexing]") {
  // torch 1.13: torch.argmax(X, 1) = [1, 0, 1]; torch.argmax(X, 0, keepdim=True) = [[1, 0, 0, 1]]
  const Tensor i = op::argmax(kMaxX, 1).value();
  CHECK(i.dtype() == DType::Int64);
  CHECK(i.shape() == Shape{3});
  CHECK(i.to_doubles() == std::vector<double>{1, 0, 1});
  const Tensor k = op::argmax(kMaxX, -2, true).value();
  CHECK(k.shape() == Shape{1, 4});
  CHECK(k.to_doubles() == std::vector<double>{1, 0, 0, 1});
}

TEST_CASE("max passes gradcheck along every axis of a 3-d tensor", "[indexing]") {
  Generator gen(203);
  for (std::int64_t axis : {0, 1, 2, -1}) {
    for (bool keepdim : {false, true}) {
      INFO("axis " << axis << " keepdim " << keepdim);
      const Body f = [axis, keepdim](std::span<const NodeRef> x) { return op::max(x[0], axis, keepdim); };
      require_gradcheck(f, {Tensor::randn({2, 3, 4}, gen)});  // continuous: no ties
    }
  }
}

TEST_CASE("gather at argmax equals max, and gradients flow through gather only", "[indexing]") {
  Generator gen(204);
  const Body f = [](std::span<const NodeRef> x) { return op::gather(x[0], 1, op::argmax(x[0], 1, true)); };
  const Tensor x = Tensor::randn({4, 5}, gen);
  CHECK(close(f(std::vector<NodeRef>{x}).value(), op::max(x, 1, true).value()));
  require_gradcheck(f, {x});
}

TEST_CASE("max and argmax pick the first NaN, as torch", "[indexing]") {
  // torch 1.13: torch.max([1, nan, 3], 0) = (nan, 1); torch.argmax([1, nan, 3]) = 1
  const Tensor x{1.0, kNaN, 3.0, kNaN};
  CHECK(std::isnan(op::max(x, 0).value().item()));
  CHECK(op::argmax(x, 0).value().item() == 1.0);
}

TEST_CASE("max and argmax of int64 and float32 tensors", "[indexing]") {
  // torch 1.13: torch.argmax(tensor([[1, 5, 5]]), 1) = [1]
  const Tensor x = ints({1, 5, 5, 7, 0, 7}, Shape{2, 3});
  const Tensor m = op::max(x, 1).value();
  CHECK(m.dtype() == DType::Int64);
  CHECK(m.to_doubles() == std::vector<double>{5, 7});
  CHECK(op::argmax(x, 1).value().to_doubles() == std::vector<double>{1, 0});
  const Tensor f = op::max(kMaxX.to(DType::Float32), 1).value();
  CHECK(f.dtype() == DType::Float32);
  CHECK(allclose(f, Tensor{3.0, 2.0, -3.0}));
}

TEST_CASE("max of a 0-d tensor along axis 0 or -1 is the tensor, as torch", "[indexing]") {
  // torch 1.13: torch.max(tensor(5.), 0) = (5, 0); with dim=-1, keepdim=True still 0-d
  CHECK(op::max(Tensor(5.0), 0).value().item() == 5.0);
  CHECK(op::max(Tensor(5.0), -1, true).value().shape() == Shape{});
  CHECK(op::argmax(Tensor(5.0), 0).value().item() == 0.0);
}

TEST_CASE("max and argmax reject an axis out of range, naming the operator", "[indexing]") {
  CHECK_THAT(error_message<IndexError>([] { op::max(kMaxX, 2); }), Contains("max") && Contains("axis 2"));
  CHECK_THAT(error_message<IndexError>([] { op::argmax(kMaxX, -3); }), Contains("argmax") && Contains("axis -3"));
}

TEST_CASE("max rejects reducing an empty axis, as torch", "[indexing]") {
  // torch 1.13: torch.max(zeros(0, 3), 0) -> IndexError (reduction dim 0 must have non-zero size)
  CHECK_THAT(error_message<IndexError>([] { op::max(Tensor::zeros({0, 3}), 0); }),
             Contains("max") && Contains("(0,3)") && Contains("size 0"));
  CHECK_THROWS_AS(op::argmax(Tensor::zeros({2, 0}), 1), IndexError);
}

// ---- var, std ----------------------------------------------------------------------------

TEST_CASE("var matches torch for all, given, negative and kept axes, values and gradients", "[indexing]") {
  // torch 1.13: y = torch.var(V, dim, unbiased, keepdim); y.backward(1 or arange(1, n + 1).reshape(y.shape))
  const auto var = [](Shape axes, bool unbiased, bool keepdim) {
    return Body([=](std::span<const NodeRef> x) { return op::var(x[0], axes, unbiased, keepdim); });
  };
  CHECK(op::var(kV).value().item() == Approx(3.4572727272727275).epsilon(1e-14));
  CHECK(close(vjp(var({}, true, false), {kV}, Tensor(1.0))[0],
              Tensor{{-0.045454545454545456, -0.35454545454545455, 0.2272727272727273, 0.045454545454545456},
                     {0.13636363636363635, -0.08181818181818182, -0.2636363636363636, 0.5909090909090909},
                     {0.3181818181818182, 0.2272727272727273, -0.6818181818181819, -0.1181818181818182}}));

  CHECK(close(op::var(kV, {1}).value(), Tensor{1.7891666666666668, 4.109166666666667, 6.206666666666667}));
  CHECK(close(vjp(var({1}, true, false), {kV}, Tensor{1.0, 2.0, 3.0})[0],
              Tensor{{-0.04999999999999997, -1.1833333333333331, 0.95, 0.2833333333333333},
                     {0.3000000000000001, -1.2999999999999998, -2.633333333333333, 3.6333333333333333},
                     {4.2, 3.2, -6.8, -0.6000000000000001}}));

  const Tensor kept = op::var(kV, {0}, false, true).value();
  CHECK(kept.shape() == Shape{1, 4});
  CHECK(close(kept, Tensor{{0.6666666666666666, 1.708888888888889, 4.1755555555555555, 2.78}}));
  CHECK(close(vjp(var({0}, false, true), {kV}, Tensor{{1.0, 2.0, 3.0, 4.0}})[0],
              Tensor{{-0.6666666666666666, -2.0888888888888886, 5.133333333333333, -1.8666666666666665},
                     {0.0, -0.08888888888888893, -0.2666666666666666, 6.133333333333333},
                     {0.6666666666666666, 2.1777777777777776, -4.866666666666667, -4.266666666666666}}));

  CHECK(op::var(kV, {-1, 0}, false).value().item() == Approx(3.169166666666667).epsilon(1e-14));
  CHECK(close(vjp(var({-1, 0}, false, false), {kV}, Tensor(1.0))[0],
              Tensor{{-0.041666666666666664, -0.32499999999999996, 0.20833333333333331, 0.041666666666666664},
                     {0.125, -0.075, -0.24166666666666664, 0.5416666666666666},
                     {0.29166666666666663, 0.20833333333333331, -0.625, -0.10833333333333334}}));
}

TEST_CASE("std matches torch for all, given, negative and kept axes, values and gradients", "[indexing]") {
  // torch 1.13: y = torch.std(V, dim, unbiased, keepdim); y.backward(1 or arange(1, n + 1).reshape(y.shape))
  const auto sd = [](Shape axes, bool unbiased, bool keepdim) {
    return Body([=](std::span<const NodeRef> x) { return op::std(x[0], axes, unbiased, keepdim); });
  };
  CHECK(op::std(kV).value().item() == Approx(1.859374283804293).epsilon(1e-14));
  CHECK(close(vjp(sd({}, true, false), {kV}, Tensor(1.0))[0],
              Tensor{{-0.012223075754695589, -0.09533999088662559, 0.061115378773477946, 0.012223075754695589},
                     {0.036669227264086765, -0.022001536358452062, -0.07089383937723441, 0.15889998481104264},
                     {0.08556153028286913, 0.061115378773477946, -0.18334613632043384, -0.03177999696220853}}));

  CHECK(close(op::std(kV, {1}).value(), Tensor{1.3375973484822206, 2.0271079563424013, 2.491318258807306}));
  CHECK(close(vjp(sd({1}, true, false), {kV}, Tensor{1.0, 2.0, 3.0})[0],
              Tensor{{-0.018690228437106, -0.4423354063448423, 0.35511434030501426, 0.10591129447693408},
                     {0.07399704565841256, -0.3206538645197876, -0.6495296230016211, 0.8961864418629962},
                     {0.8429272304235245, 0.6422302707988758, -1.364739325447611, -0.12041817577478922}}));

  const Tensor kept = op::std(kV, {0}, false, true).value();
  CHECK(kept.shape() == Shape{1, 4});
  CHECK(close(kept, Tensor{{0.816496580927726, 1.307244770075172, 2.043417616532547, 1.6673332000533065}}));
  CHECK(close(vjp(sd({0}, false, true), {kV}, Tensor{{1.0, 2.0, 3.0, 4.0}})[0],
              Tensor{{-0.40824829046386296, -0.7989662443892467, 1.2560656450745564, -0.5597761343104626},
                     {0.0, -0.033998563591031795, -0.06525016338049643, 1.8392644413058057},
                     {0.40824829046386296, 0.8329648079802784, -1.1908154816940602, -1.279488306995343}}));

  CHECK(op::std(kV, {-1, 0}, false).value().item() == Approx(1.7802153427792569).epsilon(1e-14));
  CHECK(close(vjp(sd({-1, 0}, false, false), {kV}, Tensor(1.0))[0],
              Tensor{{-0.011702704067704817, -0.09128109172809758, 0.05851352033852408, 0.011702704067704817},
                     {0.03510811220311445, -0.02106486732186867, -0.06787568359268793, 0.15213515288016263},
                     {0.08191892847393371, 0.05851352033852408, -0.17554056101557225, -0.030427030576032525}}));
}

TEST_CASE("var and std pass gradcheck over all, given, negative and kept axes", "[indexing]") {
  Generator gen(205);
  const std::vector<std::pair<Shape, bool>> configs = {
      {{}, false}, {{}, true}, {{0}, false}, {{1}, true}, {{-1}, false}, {{0, 2}, true}, {{2, 0, 1}, false}};
  for (const auto& [axes, keepdim] : configs) {
    for (bool unbiased : {true, false}) {
      INFO("axes " << shape_str(axes) << " keepdim " << keepdim << " unbiased " << unbiased);
      const Body v = [axes = axes, keepdim = keepdim, unbiased](std::span<const NodeRef> x) {
        return op::var(x[0], axes, unbiased, keepdim);
      };
      const Body s = [axes = axes, keepdim = keepdim, unbiased](std::span<const NodeRef> x) {
        return op::std(x[0], axes, unbiased, keepdim);
      };
      require_gradcheck(v, {Tensor::randn({2, 3, 4}, gen)});
      require_gradcheck(s, {Tensor::randn({2, 3, 4}, gen)});
    }
  }
}

TEST_CASE("var and std of float32 are float32 and agree with float64", "[indexing]") {
  const Tensor v = op::var(kV.to(DType::Float32), {1}).value();
  const Tensor s = op::std(kV.to(DType::Float32), {0}, false).value();
  CHECK(v.dtype() == DType::Float32);
  CHECK(s.dtype() == DType::Float32);
  CHECK(allclose(v, op::var(kV, {1}).value(), 1e-6));
  CHECK(allclose(s, op::std(kV, {0}, false).value(), 1e-6));
}

TEST_CASE("var and std are stable for a large mean", "[indexing]") {
  // var([1e9 + 1, 1e9 + 2, 1e9 + 3]) = 1 exactly (a one-pass sum of squares would lose it)
  CHECK(op::var(Tensor{1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0}).value().item() == 1.0);
  CHECK(op::std(Tensor{1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0}).value().item() == 1.0);
}

TEST_CASE("unbiased var and std of one element per output are NaN, as torch", "[indexing]") {
  // torch 1.13: torch.std([[3.], [4.]], 1) = [nan, nan], gradient nan; biased var of one element is 0
  const Body f = [](std::span<const NodeRef> x) { return op::std(x[0], {1}); };
  const Tensor x{{3.0}, {4.0}};
  CHECK(std::isnan(op::std(x, {1}).value().at({0})));
  CHECK(std::isnan(op::var(x, {1}).value().at({1})));
  CHECK(std::isnan(vjp(f, {x}, Tensor::ones({2}))[0].at({0, 0})));
  CHECK(close(op::var(x, {1}, false).value(), Tensor{0.0, 0.0}));
}

TEST_CASE("std of constant values has a zero gradient, as torch", "[indexing]") {
  // torch 1.13: s = torch.std([3., 3.]) = 0; s.backward() -> [0, 0]
  const Body f = [](std::span<const NodeRef> x) { return op::std(x[0]); };
  CHECK(op::std(Tensor{3.0, 3.0}).value().item() == 0.0);
  CHECK(close(vjp(f, {Tensor{3.0, 3.0}}, Tensor(1.0))[0], Tensor{0.0, 0.0}));
}

TEST_CASE("var and std reject int64 tensors and axes out of range", "[indexing]") {
  CHECK_THAT(error_message<TypeError>([] { op::var(ints({1, 2, 3}, Shape{3})); }), Contains("var") && Contains("int64"));
  CHECK_THAT(error_message<IndexError>([] { op::std(kV, {2}); }), Contains("std") && Contains("axis 2"));
  CHECK_THROWS_AS(op::var(kV, {0, -2}), IndexError);
}
