// Reductions: sum and mean over all axes, given axes, negative axes, with and without keepdim.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// [[1, 2, 3], [4, 5, 6]]
const Tensor kM{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};

// A (2,3,4) tensor with element [i,j,k] = 12i + 4j + k.
Tensor cube() { return Tensor::arange(24).reshape({2, 3, 4}); }

// (Axes, keepdim) configurations for the gradient checks on a (2,3,4) input.
const std::vector<std::pair<Shape, bool>> kConfigs = {
    {{}, false}, {{}, true}, {{0}, false}, {{1}, true}, {{-1}, false}, {{0, 2}, false}, {{-1, -3}, true}, {{2, 0, 1}, false}};

}  // namespace

// ---- sum: values -------------------------------------------------------------------------

TEST_CASE("sum over all axes gives a 0-d total") {
  const Tensor y = op::sum(kM).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == 21.0);
}

TEST_CASE("sum over all axes with keepdim keeps every axis as 1") {
  const Tensor y = op::sum(kM, {}, true).value();
  CHECK(y.shape() == Shape{1, 1});
  CHECK(y.item() == 21.0);
}

TEST_CASE("sum over one axis gives column or row totals") {
  CHECK(allclose(op::sum(kM, {0}).value(), Tensor{5.0, 7.0, 9.0}));
  CHECK(allclose(op::sum(kM, {1}).value(), Tensor{6.0, 15.0}));
}

TEST_CASE("sum with a negative axis counts from the end") {
  CHECK(allclose(op::sum(kM, {-1}).value(), Tensor{6.0, 15.0}));
  CHECK(allclose(op::sum(kM, {-2}).value(), Tensor{5.0, 7.0, 9.0}));
}

TEST_CASE("sum with keepdim keeps the reduced axis as 1") {
  const Tensor y = op::sum(kM, {1}, true).value();
  CHECK(y.shape() == Shape{2, 1});
  CHECK(allclose(y, Tensor{{6.0}, {15.0}}));
  CHECK(allclose(op::sum(kM, {-2}, true).value(), Tensor{{5.0, 7.0, 9.0}}));
}

TEST_CASE("sum over several axes of a 3-d tensor, in any order and sign") {
  // sum over i and k of 12i + 4j + k = 60 + 32j
  const Tensor expected{60.0, 92.0, 124.0};
  CHECK(allclose(op::sum(cube(), {0, 2}).value(), expected));
  CHECK(allclose(op::sum(cube(), {2, 0}).value(), expected));
  CHECK(allclose(op::sum(cube(), {-1, -3}).value(), expected));
  CHECK(allclose(op::sum(cube(), {0, -1}, true).value(), Tensor{{{60.0}, {92.0}, {124.0}}}));
  CHECK(op::sum(cube(), {0, 1, 2}).value().item() == 276.0);
}

TEST_CASE("sum of a transposed (non-contiguous) view reduces the view's axes") {
  const Tensor t = kM.transpose(0, 1);  // [[1, 4], [2, 5], [3, 6]]
  CHECK(allclose(op::sum(t, {0}).value(), Tensor{6.0, 15.0}));
  CHECK(allclose(op::sum(t, {1}).value(), Tensor{5.0, 7.0, 9.0}));
  CHECK(op::sum(t).value().item() == 21.0);
}

TEST_CASE("sum of a 0-d tensor is the tensor") {
  const Tensor y = op::sum(Tensor(2.5)).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == 2.5);
}

TEST_CASE("sum works on float32") {
  const Tensor m = kM.to(DType::Float32);
  const Tensor all = op::sum(m).value();
  const Tensor cols = op::sum(m, {0}).value();
  CHECK(all.dtype() == DType::Float32);
  CHECK(cols.dtype() == DType::Float32);
  CHECK(all.item() == 21.0);
  CHECK(allclose(cols, Tensor{5.0, 7.0, 9.0}));
}

// ---- sum: gradients ----------------------------------------------------------------------

TEST_CASE("sum gradient broadcasts the seed over the reduced axes") {
  const Body rows = [](std::span<const NodeRef> x) { return op::sum(x[0], {1}); };
  CHECK(allclose(vjp(rows, {kM}, Tensor{2.0, -1.0})[0], Tensor{{2.0, 2.0, 2.0}, {-1.0, -1.0, -1.0}}));
  const Body kept = [](std::span<const NodeRef> x) { return op::sum(x[0], {0}, true); };
  CHECK(allclose(vjp(kept, {kM}, Tensor{{1.0, 2.0, 3.0}})[0], Tensor{{1.0, 2.0, 3.0}, {1.0, 2.0, 3.0}}));
  const Body all = [](std::span<const NodeRef> x) { return op::sum(x[0]); };
  CHECK(allclose(vjp(all, {kM}, Tensor(3.0))[0], Tensor::full({2, 3}, 3.0)));
}

TEST_CASE("sum passes gradcheck over all, given, negative and kept axes") {
  Generator gen(41);
  for (const auto& [axes, keepdim] : kConfigs) {
    INFO("axes " << shape_str(axes) << " keepdim " << keepdim);
    const Body f = [axes = axes, keepdim = keepdim](std::span<const NodeRef> x) { return op::sum(x[0], axes, keepdim); };
    require_gradcheck(f, {Tensor::randn({2, 3, 4}, gen)});
  }
}

TEST_CASE("sum passes gradcheck on a transposed input") {
  Generator gen(42);
  const Body f = [](std::span<const NodeRef> x) { return op::sum(op::transpose(x[0]), {0}); };
  require_gradcheck(f, {Tensor::randn({3, 4}, gen)});
}

// ---- sum: errors -------------------------------------------------------------------------

TEST_CASE("sum rejects an axis out of range, naming the operator") {
  std::string msg;
  try {
    op::sum(kM, {2});
  } catch (const IndexError& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("sum") && Contains("axis 2"));
  CHECK_THROWS_AS(op::sum(kM, {-3}), IndexError);
}

TEST_CASE("sum rejects a repeated axis") {
  CHECK_THROWS_AS(op::sum(kM, {1, -1}), IndexError);
}

// ---- mean --------------------------------------------------------------------------------

TEST_CASE("mean over all axes gives a 0-d average") {
  const Tensor y = op::mean(kM).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == 3.5);
}

TEST_CASE("mean over all axes with keepdim keeps every axis as 1") {
  const Tensor kept = op::mean(kM, {}, true).value();
  CHECK(kept.shape() == Shape{1, 1});
  CHECK(kept.item() == 3.5);
}

TEST_CASE("mean over given and negative axes, with keepdim") {
  CHECK(allclose(op::mean(kM, {0}).value(), Tensor{2.5, 3.5, 4.5}));
  CHECK(allclose(op::mean(kM, {-1}).value(), Tensor{2.0, 5.0}));
  const Tensor y = op::mean(kM, {-1}, true).value();
  CHECK(y.shape() == Shape{2, 1});
  CHECK(allclose(y, Tensor{{2.0}, {5.0}}));
  // mean over i and k of 12i + 4j + k = (60 + 32j) / 8
  CHECK(allclose(op::mean(cube(), {-3, 2}).value(), Tensor{7.5, 11.5, 15.5}));
}

TEST_CASE("mean gradient is the seed divided by the reduced count") {
  const Body rows = [](std::span<const NodeRef> x) { return op::mean(x[0], {1}); };
  CHECK(allclose(vjp(rows, {kM}, Tensor{3.0, -6.0})[0], Tensor{{1.0, 1.0, 1.0}, {-2.0, -2.0, -2.0}}));
  const Body all = [](std::span<const NodeRef> x) { return op::mean(x[0]); };
  CHECK(allclose(vjp(all, {kM}, Tensor(1.0))[0], Tensor::full({2, 3}, 1.0 / 6.0)));
  const Body two = [](std::span<const NodeRef> x) { return op::mean(x[0], {0, 2}, true); };
  CHECK(allclose(vjp(two, {cube()}, Tensor::ones({1, 3, 1}))[0], Tensor::full({2, 3, 4}, 0.125)));
}

TEST_CASE("mean passes gradcheck over all, given, negative and kept axes") {
  Generator gen(43);
  for (const auto& [axes, keepdim] : kConfigs) {
    INFO("axes " << shape_str(axes) << " keepdim " << keepdim);
    const Body f = [axes = axes, keepdim = keepdim](std::span<const NodeRef> x) { return op::mean(x[0], axes, keepdim); };
    require_gradcheck(f, {Tensor::randn({2, 3, 4}, gen)});
  }
}

TEST_CASE("mean works on float32") {
  const Tensor y = op::mean(kM.to(DType::Float32), {1}).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{2.0, 5.0}));
}

TEST_CASE("mean rejects an axis out of range, naming the operator") {
  std::string msg;
  try {
    op::mean(kM, {-4});
  } catch (const IndexError& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("mean") && Contains("axis -4"));
}

TEST_CASE("mean rejects an int64 tensor") {
  CHECK_THROWS_AS(op::mean(Tensor::arange(4, DType::Int64)), TypeError);
}
