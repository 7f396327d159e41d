// scaled_dot_product_attention and gelu: float64 gradient checks for every option (boolean and
// float masks, causal, broadcast batch axes, L != S, dropout with a fixed key), values and
// gradients against the same attention composed from matmul and softmax (the unfused math path
// torch documents), several key blocks per row, fully masked rows, and the errors. The comparisons
// with torch itself are in tests/python/test_transformer.py.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/attention.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// The math path: softmax(q k^T scale + bias) v, with the boolean mask through where().
NodeRef reference(const NodeRef& q, const NodeRef& k, const NodeRef& v, const Tensor& mask, bool causal,
                  std::optional<double> scale = std::nullopt) {
  const double s = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(q.shape().back()));
  NodeRef scores = op::mult(op::matmul(q, op::transpose(k)), s);
  const std::int64_t L = q.shape()[q.shape().size() - 2], S = k.shape()[k.shape().size() - 2];
  Tensor allowed;
  if (causal) {
    std::vector<double> t(static_cast<std::size_t>(L * S));
    for (std::int64_t i = 0; i < L; ++i) {
      for (std::int64_t j = 0; j < S; ++j) t[static_cast<std::size_t>(i * S + j)] = j <= i ? 1.0 : 0.0;
    }
    allowed = Tensor::from_vector(t, {L, S});
  } else if (mask.defined() && mask.dtype() == DType::Int64) {
    allowed = mask.to(DType::Float64);
  } else if (mask.defined()) {
    scores = op::add(scores, mask);
  }
  if (allowed.defined()) scores = op::where(allowed, scores, -INFINITY);
  return op::matmul(op::softmax(scores, -1), v);
}

Tensor randn(const Shape& s, std::uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, g);
}

Tensor bool_mask(const Shape& s, std::uint64_t seed) {
  Generator g(seed);
  const Tensor u = Tensor::uniform(s, 0.0, 1.0, g);
  std::vector<std::int64_t> m;
  for (double x : u.to_doubles()) m.push_back(x < 0.7 ? 1 : 0);
  for (std::int64_t i = 0; i < s[s.size() - 2]; ++i) m[static_cast<std::size_t>(i * s.back())] = 1;  // key 0 always
  return Tensor::from_vector(m, s);
}

void require_matches_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                               double tol) {
  const Tensor seed = randn(Shape(q.shape().begin(), q.shape().end() - 1), 99);
  Shape out_shape = Tensor::zeros(q.shape()).shape();
  out_shape.back() = v.shape().back();
  const Tensor g = randn(out_shape, 5).to(q.dtype());
  auto fused = [&](std::span<const NodeRef> x) {
    return op::scaled_dot_product_attention(x[0], x[1], x[2], mask, 0.0, causal);
  };
  auto unfused = [&](std::span<const NodeRef> x) { return reference(x[0], x[1], x[2], mask, causal); };
  const auto a = vjp(fused, {q, k, v}, g);
  const auto b = vjp(unfused, {q, k, v}, g);
  const Tensor ya = op::scaled_dot_product_attention(q, k, v, mask, 0.0, causal).value();
  const Tensor yb = reference(q, k, v, mask, causal).value();
  REQUIRE(allclose(ya, yb, tol, tol));
  for (std::size_t i = 0; i < 3; ++i) {
    INFO("gradient " << i);
    REQUIRE(allclose(a[i], b[i], tol, tol));
  }
}

}  // namespace

TEST_CASE("scaled_dot_product_attention: gradcheck in float64 for every option", "[attention]") {
  const Tensor q = randn({2, 3, 4}, 1), k = randn({2, 5, 4}, 2), v = randn({2, 5, 3}, 3);
  SECTION("plain, L != S") {
    require_gradcheck([](std::span<const NodeRef> x) { return op::scaled_dot_product_attention(x[0], x[1], x[2]); },
                      {q, k, v});
  }
  SECTION("boolean mask broadcast over the batch") {
    const Tensor m = bool_mask({3, 5}, 4);
    require_gradcheck(
        [&](std::span<const NodeRef> x) { return op::scaled_dot_product_attention(x[0], x[1], x[2], m); }, {q, k, v});
  }
  SECTION("float mask and an explicit scale") {
    const Tensor m = randn({2, 3, 5}, 6);
    require_gradcheck(
        [&](std::span<const NodeRef> x) {
          return op::scaled_dot_product_attention(x[0], x[1], x[2], m, 0.0, false, 0.3);
        },
        {q, k, v});
  }
  SECTION("causal") {
    const Tensor qs = randn({2, 5, 4}, 7);
    require_gradcheck(
        [](std::span<const NodeRef> x) {
          return op::scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), 0.0, true);
        },
        {qs, k, v});
  }
  SECTION("broadcast batch and head axes") {
    const Tensor q4 = randn({2, 2, 3, 4}, 8), k4 = randn({1, 2, 5, 4}, 9), v4 = randn({2, 1, 5, 3}, 10);
    require_gradcheck([](std::span<const NodeRef> x) { return op::scaled_dot_product_attention(x[0], x[1], x[2]); },
                      {q4, k4, v4});
  }
  SECTION("dropout, the mask regenerated in the backward") {
    require_gradcheck(
        [](std::span<const NodeRef> x) {
          Generator gen(11);  // the same key at every evaluation
          return op::scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), 0.4, false, std::nullopt, &gen);
        },
        {q, k, v});
  }
}

TEST_CASE("scaled_dot_product_attention: values and gradients of the unfused math path", "[attention]") {
  // 150 rows and keys: several blocks of 64 per row, with a partial last block.
  const Tensor q = randn({2, 150, 16}, 21), k = randn({2, 130, 16}, 22), v = randn({2, 130, 8}, 23);
  SECTION("float64") {
    require_matches_reference(q, k, v, Tensor(), false, 1e-12);
    require_matches_reference(q, k, v, bool_mask({150, 130}, 24), false, 1e-12);
    require_matches_reference(q, k, v, randn({2, 1, 130}, 25), false, 1e-12);
    const Tensor qs = randn({2, 130, 16}, 26);
    require_matches_reference(qs, k, v, Tensor(), true, 1e-12);
  }
  SECTION("float32") {
    const Tensor qs = randn({2, 130, 16}, 26).to(DType::Float32);
    require_matches_reference(q.to(DType::Float32), k.to(DType::Float32), v.to(DType::Float32), Tensor(), false, 2e-5);
    require_matches_reference(qs, k.to(DType::Float32), v.to(DType::Float32), Tensor(), true, 2e-5);
  }
  SECTION("one batch element, several blocks each way") {
    const Tensor q1 = randn({150, 16}, 31), k1 = randn({130, 16}, 32), v1 = randn({130, 8}, 33);
    require_matches_reference(q1, k1, v1, Tensor(), false, 1e-12);
    require_matches_reference(q1, k1, v1, bool_mask({150, 130}, 34), false, 1e-12);
    const Tensor qs = randn({130, 16}, 35);
    require_matches_reference(qs, k1, v1, Tensor(), true, 1e-12);
    require_matches_reference(qs.to(DType::Float32), k1.to(DType::Float32), v1.to(DType::Float32), Tensor(), true,
                              2e-5);
    require_gradcheck(
        [](std::span<const NodeRef> x) {
          Generator gen(12);
          return op::scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), 0.3, true, std::nullopt, &gen);
        },
        {randn({70, 3}, 36), randn({70, 3}, 37), randn({70, 2}, 38)});
  }
  SECTION("large head size: smaller blocks") {
    const Tensor qb = randn({1, 40, 200}, 27), kb = randn({1, 70, 200}, 28), vb = randn({1, 70, 300}, 29);
    require_matches_reference(qb, kb, vb, bool_mask({40, 70}, 30), false, 1e-12);
  }
}

TEST_CASE("scaled_dot_product_attention: fully masked rows give NaN, as torch's math path", "[attention]") {
  std::vector<std::int64_t> m{1, 1, 0, 0, 0, 0, 1, 0, 1};
  const Tensor mask = Tensor::from_vector(m, {3, 3});
  const Tensor y = op::scaled_dot_product_attention(randn({3, 2}, 1), randn({3, 2}, 2), randn({3, 2}, 3), mask).value();
  REQUIRE(std::isnan(y.at({1, 0})));
  REQUIRE(std::isfinite(y.at({0, 0})));
  REQUIRE(std::isfinite(y.at({2, 1})));
}

TEST_CASE("scaled_dot_product_attention: dropout", "[attention]") {
  const Tensor q = randn({1, 64, 8}, 1), k = randn({1, 64, 8}, 2), v = Tensor::ones({1, 64, 1});
  Generator a(3), b(3);
  const Tensor ya = op::scaled_dot_product_attention(q, k, v, Tensor(), 0.5, false, std::nullopt, &a).value();
  const Tensor yb = op::scaled_dot_product_attention(q, k, v, Tensor(), 0.5, false, std::nullopt, &b).value();
  REQUIRE(allclose(ya, yb, 0.0, 0.0));  // the same seed, the same mask
  // With v = 1 each output is sum_j p_j z_j: 1 on average over rows, not 1 in each.
  double mean = 0.0;
  for (double x : ya.to_doubles()) mean += x / 64.0;
  REQUIRE(mean == Approx(1.0).margin(0.25));
  REQUIRE_FALSE(allclose(ya, Tensor::ones({1, 64, 1}), 1e-3, 1e-3));
  Generator c(4);
  const Tensor all = op::scaled_dot_product_attention(q, k, v, Tensor(), 1.0, false, std::nullopt, &c).value();
  REQUIRE(allclose(all, Tensor::zeros({1, 64, 1}), 0.0, 0.0));
}

TEST_CASE("scaled_dot_product_attention: errors", "[attention]") {
  const Tensor q = randn({3, 4}, 1), k = randn({5, 4}, 2), v = randn({5, 2}, 3);
  REQUIRE_THROWS_WITH(op::scaled_dot_product_attention(q, randn({5, 3}, 2), v), Contains("same last axis"));
  REQUIRE_THROWS_WITH(op::scaled_dot_product_attention(q, k, randn({4, 2}, 3)), Contains("same sequence length"));
  REQUIRE_THROWS_WITH(op::scaled_dot_product_attention(q, k, v.to(DType::Float32)), Contains("floating dtype"));
  REQUIRE_THROWS_WITH(op::scaled_dot_product_attention(q, k, v, bool_mask({3, 5}, 1), 0.0, true),
                      Contains("not both"));
  REQUIRE_THROWS_WITH(op::scaled_dot_product_attention(q, k, v, bool_mask({4, 5}, 1)), Contains("does not broadcast"));
  REQUIRE_THROWS_WITH(op::scaled_dot_product_attention(q, k, v, Tensor(), 0.5), Contains("needs a generator"));
  REQUIRE_THROWS_WITH(op::gelu(q, "erf"), Contains("'none' or 'tanh'"));
}

TEST_CASE("gelu: gradcheck and values, exact and tanh", "[attention]") {
  const Tensor x{-3.0, -1.0, -0.1, 0.0, 0.5, 2.0, 6.0};
  for (const char* approx : {"none", "tanh"}) {
    INFO(approx);
    require_gradcheck([&](std::span<const NodeRef> in) { return op::gelu(in[0], approx); }, {x});
  }
  // torch.nn.functional.gelu(torch.tensor([-1., 0.5, 2.], dtype=torch.float64)) (and approximate='tanh').
  const Tensor xs{-1.0, 0.5, 2.0};
  REQUIRE(allclose(op::gelu(xs).value(), Tensor{-0.15865525393145702, 0.34573123063700656, 1.9544997361036416},
                   1e-14, 1e-14));
  REQUIRE(allclose(op::gelu(xs, "tanh").value(), Tensor{-0.15880800939172324, 0.34571400982514394, 1.954597694087775},
                   1e-14, 1e-14));
}

TEST_CASE("scaled_dot_product_attention: heads seen through a transpose go in and out without copies",
          "[attention]") {
  // q, k, v as MultiheadAttention makes them: (N, L, H, D) projections viewed as (N, H, L, D).
  const Tensor q = randn({2, 70, 3, 4}, 41), k = randn({2, 70, 3, 4}, 42), v = randn({2, 70, 3, 5}, 43);
  auto heads = [](const NodeRef& x) { return op::transpose(x, 1, 2); };
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const Tensor g = randn({2, 3, 70, 5}, 44);
    auto fused = [&](std::span<const NodeRef> x) {
      return op::scaled_dot_product_attention(heads(x[0]), heads(x[1]), heads(x[2]), Tensor(), 0.0, causal);
    };
    auto unfused = [&](std::span<const NodeRef> x) {
      return reference(heads(x[0]), heads(x[1]), heads(x[2]), Tensor(), causal);
    };
    const auto a = vjp(fused, {q, k, v}, g);
    const auto b = vjp(unfused, {q, k, v}, g);
    for (std::size_t i = 0; i < 3; ++i) {
      INFO("gradient " << i);
      REQUIRE(allclose(a[i], b[i], 1e-12, 1e-12));
    }
    const NodeRef o = op::scaled_dot_product_attention(heads(q), heads(k), heads(v), Tensor(), 0.0, causal);
    REQUIRE(allclose(o.value(), reference(heads(q), heads(k), heads(v), Tensor(), causal).value(), 1e-12, 1e-12));
    // Laid out as (N, L, H, Dv): merging the heads back is a view.
    REQUIRE(op::transpose(o, 1, 2).value().is_contiguous());
  }
  require_gradcheck(
      [&](std::span<const NodeRef> x) {
        return op::scaled_dot_product_attention(heads(x[0]), heads(x[1]), heads(x[2]), Tensor(), 0.0, true);
      },
      {randn({1, 5, 2, 3}, 45), randn({1, 5, 2, 3}, 46), randn({1, 5, 2, 2}, 47)});
}

TEST_CASE("gelu: float32's polynomial erf against std::erf in double", "[attention]") {
  // Grid over [-8, 8] (both polynomial regions, their joins at |x| = sqrt 2 and 4 sqrt 2, the
  // zero tail) in float32, each value compared with the double formula at the same float input.
  std::vector<float> xs;
  for (int i = -16000; i <= 16000; ++i) xs.push_back(static_cast<float>(i) * 5e-4f);
  for (float x : {1.41421354f, 1.41421366f, 5.65685415f, 5.65685463f, 1e-30f, -1e-30f, 30.0f, -30.0f}) xs.push_back(x);
  const auto n = static_cast<std::int64_t>(xs.size());
  const Tensor x = Tensor::from_vector(xs, {n});
  const Tensor seed = Tensor::from_vector(std::vector<float>(xs.size(), 1.0f), {n});
  const std::vector<double> y = op::gelu(x).value().to_doubles();
  const std::vector<double> dx = vjp([](std::span<const NodeRef> in) { return op::gelu(in[0]); }, {x}, seed)[0].to_doubles();
  double worst_y = 0, worst_tail = 0, worst_dx = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double a = xs[i];
    const double phi2 = std::erfc(-a * 0.70710678118654752440);
    const double ref = 0.5 * a * phi2;
    const double dref = 0.5 * phi2 + a * std::exp(-0.5 * a * a) * 0.39894228040143267794;
    worst_y = std::max(worst_y, std::abs(y[i] - ref) / (std::abs(a) + std::abs(ref) + 1e-300));
    if (a < -1.0 && a > -5.6) worst_tail = std::max(worst_tail, std::abs(y[i] - ref) / std::abs(ref));
    worst_dx = std::max(worst_dx, std::abs(dx[i] - dref) / (1.0 + std::abs(a)));
  }
  INFO("worst " << worst_y << " tail " << worst_tail << " dx " << worst_dx);
  CHECK(worst_y < 3e-7);     // absolute error of 1 + erf, scaled by x / 2, and y's rounding
  CHECK(worst_tail < 5e-6);  // relative, where 1 + erf is erfc of the polynomial in the exponent
  CHECK(worst_dx < 3e-7);
  // Non-finite inputs as the float64 path (std::erf) gives them.
  const Tensor odd{-INFINITY, INFINITY, NAN};
  const std::vector<double> y32 = op::gelu(odd.to(DType::Float32)).value().to_doubles();
  const std::vector<double> y64 = op::gelu(odd).value().to_doubles();
  for (std::size_t i = 0; i < 3; ++i) {
    INFO(i);
    REQUIRE(std::isnan(y32[i]) == std::isnan(y64[i]));
    if (!std::isnan(y64[i])) REQUIRE(y32[i] == y64[i]);
  }
}

namespace {
// packed_self_attention's definition: slice, split the heads, attend, merge.
NodeRef packed_reference(const NodeRef& qkv, std::int64_t heads, const Tensor& mask, bool causal) {
  const std::int64_t n = qkv.shape()[0], l = qkv.shape()[1], e = qkv.shape()[2] / 3, d = e / heads;
  auto part = [&](std::int64_t i) {
    return op::transpose(op::reshape(op::slice(qkv, 2, i * e, (i + 1) * e), {n, l, heads, d}), 1, 2);
  };
  const NodeRef o = op::scaled_dot_product_attention(part(0), part(1), part(2), mask, 0.0, causal);
  return op::reshape(op::transpose(o, 1, 2), {n, l, e});
}
}  // namespace

TEST_CASE("packed_self_attention: the sliced heads' attention, values and gradients", "[attention]") {
  const Tensor qkv = randn({2, 70, 18}, 51);  // E 6, 3 heads of 2
  const Tensor g = randn({2, 70, 6}, 52);
  struct Case {
    const char* name;
    Tensor mask;
    bool causal;
  };
  for (const Case& c : {Case{"plain", Tensor(), false}, Case{"causal", Tensor(), true},
                        Case{"float (L, L) mask", randn({70, 70}, 53), false},
                        Case{"boolean key padding (N, 1, 1, L)", bool_mask({2, 1, 1, 70}, 54), false}}) {
    INFO(c.name);
    auto packed = [&](std::span<const NodeRef> x) { return op::packed_self_attention(x[0], 3, c.mask, 0.0, c.causal); };
    auto sliced = [&](std::span<const NodeRef> x) { return packed_reference(x[0], 3, c.mask, c.causal); };
    REQUIRE(allclose(op::packed_self_attention(qkv, 3, c.mask, 0.0, c.causal).value(),
                     packed_reference(qkv, 3, c.mask, c.causal).value(), 1e-12, 1e-12));
    REQUIRE(allclose(vjp(packed, {qkv}, g)[0], vjp(sliced, {qkv}, g)[0], 1e-12, 1e-12));
    const Tensor q32 = qkv.to(DType::Float32), g32 = g.to(DType::Float32);
    REQUIRE(allclose(vjp(packed, {q32}, g32)[0], vjp(sliced, {q32}, g32)[0], 2e-5, 2e-5));
  }
  require_gradcheck([](std::span<const NodeRef> x) { return op::packed_self_attention(x[0], 2, Tensor(), 0.0, true); },
                    {randn({2, 5, 12}, 55)});
  require_gradcheck(
      [](std::span<const NodeRef> x) {
        Generator gen(13);
        return op::packed_self_attention(x[0], 2, Tensor(), 0.3, false, &gen);
      },
      {randn({1, 6, 6}, 56)});
}

TEST_CASE("packed_self_attention: errors", "[attention]") {
  REQUIRE_THROWS_WITH(op::packed_self_attention(randn({2, 5, 10}, 1), 3), Contains("packed_self_attention") &&
                                                                              Contains("(N, L, 3 E)"));
  REQUIRE_THROWS_WITH(op::packed_self_attention(randn({2, 5, 12}, 1), 2, Tensor(), 2.0), Contains("[0, 1]"));
  REQUIRE_THROWS_WITH(op::packed_self_attention(randn({2, 5, 12}, 1), 2, bool_mask({4, 5}, 1)),
                      Contains("does not broadcast"));
}
