// Comparisons: masks in the operands' dtype, hand-computed, NaN and broadcasting included; no
// gradient through the mask, so x * (x > 0) differentiates like relu away from 0.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/ops/compare.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <limits>

using namespace zkynet;
using namespace zkynet::testing;

namespace {
const double kNan = std::numeric_limits<double>::quiet_NaN();
}

TEST_CASE("comparisons give 1 where the relation holds and 0 elsewhere") {
  const Tensor a{1.0, 2.0, 3.0};
  const Tensor b{2.0, 2.0, 2.0};
  CHECK(allclose(op::greater(a, b).value(), Tensor{0.0, 0.0, 1.0}));
  CHECK(allclose(op::greater_equal(a, b).value(), Tensor{0.0, 1.0, 1.0}));
  CHECK(allclose(op::less(a, b).value(), Tensor{1.0, 0.0, 0.0}));
  CHECK(allclose(op::less_equal(a, b).value(), Tensor{1.0, 1.0, 0.0}));
  CHECK(allclose(op::equal(a, b).value(), Tensor{0.0, 1.0, 0.0}));
  CHECK(allclose(op::not_equal(a, b).value(), Tensor{1.0, 0.0, 1.0}));
}

TEST_CASE("a comparison with NaN is false, but not_equal") {
  const Tensor a{kNan, 1.0};
  const Tensor b{kNan, kNan};
  CHECK(allclose(op::greater_equal(a, b).value(), Tensor{0.0, 0.0}));
  CHECK(allclose(op::equal(a, b).value(), Tensor{0.0, 0.0}));
  CHECK(allclose(op::not_equal(a, b).value(), Tensor{1.0, 1.0}));
}

TEST_CASE("comparisons broadcast and keep float32 and int64 dtypes") {
  const Tensor m = op::greater(Tensor{{1.0, -1.0}, {0.5, 3.0}}.to(DType::Float32), 0.7).value();
  CHECK(m.dtype() == DType::Float32);
  CHECK(allclose(m.to(DType::Float64), Tensor{{1.0, 0.0}, {0.0, 1.0}}));
  const Tensor i = op::less(Tensor::arange(4, DType::Int64), Tensor::full({}, 2.0, DType::Int64)).value();
  CHECK(i.dtype() == DType::Int64);
  CHECK(allclose(i.to(DType::Float64), Tensor{1.0, 1.0, 0.0, 0.0}));
}

TEST_CASE("comparisons of shapes that do not broadcast name the operator and the shapes") {
  CHECK_THROWS_WITH(op::less(Tensor::ones({2, 3}), Tensor::ones({4})),
                    Catch::Contains("less") && Catch::Contains("(2,3)") && Catch::Contains("(4,)"));
}

TEST_CASE("no gradient flows through a mask: x * (x > 0) has relu's gradient") {
  const Body f = [](std::span<const NodeRef> x) { return op::mult(x[0], op::greater(x[0], 0.0)); };
  const auto g = vjp(f, {Tensor{-1.5, 0.5, 2.0}}, Tensor{1.0, 1.0, 1.0});
  CHECK(allclose(g[0], Tensor{0.0, 1.0, 1.0}));
  require_gradcheck(f, {Tensor{-1.5, 0.5, 2.0, -0.3}});
}
