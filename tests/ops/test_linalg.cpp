// Linear algebra and shape operators: matmul (numpy rules: 1-d, 2-d, batched with
// broadcasting), dot (vectors, matrices, scalars), reshape and transpose.
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

const Body kMatmul = [](std::span<const NodeRef> x) { return op::matmul(x[0], x[1]); };
const Body kDot = [](std::span<const NodeRef> x) { return op::dot(x[0], x[1]); };

// gradcheck of f on random operands of the given shapes.
void require_gradcheck(const Body& f, const Shape& a, const Shape& b, std::uint64_t seed) {
  Generator gen(seed);
  INFO("shapes " << shape_str(a) << " and " << shape_str(b));
  const GradcheckResult r = gradcheck(f, {Tensor::randn(a, gen), Tensor::randn(b, gen)});
  INFO(r.message);
  REQUIRE(r.ok);
}

// Tensor::arange(n) reshaped: 0, 1, 2, ... in row-major order.
Tensor iota(const Shape& shape) { return Tensor::arange(shape_numel(shape)).reshape(shape); }

const Tensor kA{{1.0, 2.0}, {3.0, 4.0}};
const Tensor kB{{5.0, 6.0}, {7.0, 8.0}};

}  // namespace

// ---- matmul: values ----------------------------------------------------------------------

TEST_CASE("matmul of two matrices gives the matrix product") {
  CHECK(allclose(op::matmul(kA, kB).value(), Tensor{{19.0, 22.0}, {43.0, 50.0}}));
  // (2,3) x (3,2)
  CHECK(allclose(op::matmul(Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, Tensor{{1.0, 0.0}, {0.0, 1.0}, {1.0, 1.0}}).value(),
                 Tensor{{4.0, 5.0}, {10.0, 11.0}}));
}

TEST_CASE("matmul treats a 1-d left operand as a row and drops it from the result") {
  const Tensor y = op::matmul(Tensor{1.0, 2.0}, Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}).value();
  CHECK(y.shape() == Shape{3});
  CHECK(allclose(y, Tensor{9.0, 12.0, 15.0}));
}

TEST_CASE("matmul treats a 1-d right operand as a column and drops it from the result") {
  const Tensor y = op::matmul(Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, Tensor{1.0, 0.0, -1.0}).value();
  CHECK(y.shape() == Shape{2});
  CHECK(allclose(y, Tensor{-2.0, -2.0}));
}

TEST_CASE("matmul of two vectors gives their 0-d inner product") {
  const Tensor y = op::matmul(Tensor{1.0, 2.0, 3.0}, Tensor{4.0, 5.0, 6.0}).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == 32.0);
}

TEST_CASE("matmul of a 3-d batch with a matrix multiplies every batch entry") {
  // torch 1.13: torch.arange(12.).reshape(2, 2, 3) @ [[1, 0], [0, 1], [1, 1]]
  const Tensor y = op::matmul(iota({2, 2, 3}), Tensor{{1.0, 0.0}, {0.0, 1.0}, {1.0, 1.0}}).value();
  CHECK(y.shape() == Shape{2, 2, 2});
  CHECK(allclose(y, Tensor{{{2.0, 3.0}, {8.0, 9.0}}, {{14.0, 15.0}, {20.0, 21.0}}}));
}

TEST_CASE("matmul broadcasts batch dimensions of both operands") {
  // (2,1,1,2) x (3,2,1) -> (2,3,1,1): entry [i,j] is row i of a times column j of b.
  // torch 1.13 gives the same [1, 2, -1, 3, 4, -1].
  const Tensor a{{{{1.0, 2.0}}}, {{{3.0, 4.0}}}};
  const Tensor b{{{1.0}, {0.0}}, {{0.0}, {1.0}}, {{1.0}, {-1.0}}};
  const Tensor y = op::matmul(a, b).value();
  CHECK(y.shape() == Shape{2, 3, 1, 1});
  CHECK(allclose(y.reshape({6}), Tensor{1.0, 2.0, -1.0, 3.0, 4.0, -1.0}));
}

TEST_CASE("matmul of a vector with a 3-d batch multiplies the row into every batch entry") {
  // torch 1.13: torch.tensor([1., 2, 3]) @ torch.arange(12.).reshape(2, 3, 2)
  const Tensor y = op::matmul(Tensor{1.0, 2.0, 3.0}, iota({2, 3, 2})).value();
  CHECK(y.shape() == Shape{2, 2});
  CHECK(allclose(y, Tensor{{16.0, 22.0}, {52.0, 58.0}}));
}

TEST_CASE("matmul of a 3-d batch with a vector multiplies every batch entry by the column") {
  // torch 1.13: torch.arange(12.).reshape(2, 2, 3) @ torch.tensor([1., 2, 3])
  const Tensor y = op::matmul(iota({2, 2, 3}), Tensor{1.0, 2.0, 3.0}).value();
  CHECK(y.shape() == Shape{2, 2});
  CHECK(allclose(y, Tensor{{8.0, 26.0}, {44.0, 62.0}}));
}

TEST_CASE("matmul reads transposed (non-contiguous) operands correctly") {
  // kA^T = [[1, 3], [2, 4]];  kA^T kB = [[26, 30], [38, 44]];  kA kB^T = [[17, 23], [39, 53]]
  CHECK(allclose(op::matmul(kA.transpose(0, 1), kB).value(), Tensor{{26.0, 30.0}, {38.0, 44.0}}));
  CHECK(allclose(op::matmul(kA, kB.transpose(0, 1)).value(), Tensor{{17.0, 23.0}, {39.0, 53.0}}));
  // A column slice: every other column of a (2,4) matrix.
  const Tensor wide{{1.0, 0.0, 2.0, 0.0}, {3.0, 0.0, 4.0, 0.0}};
  CHECK(allclose(op::matmul(wide.slice(1, 0, 4, 2), kB).value(), Tensor{{19.0, 22.0}, {43.0, 50.0}}));
}

TEST_CASE("matmul works on float32") {
  const Tensor y = op::matmul(kA.to(DType::Float32), kB.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{{19.0, 22.0}, {43.0, 50.0}}));
}

// ---- matmul: gradients -------------------------------------------------------------------

TEST_CASE("matmul gradients are seed B^T and A^T seed") {
  // With a seed of ones: dA = ones B^T (row sums of B), dB = A^T ones (column sums of A).
  const auto g = vjp(kMatmul, {kA, kB}, Tensor::ones({2, 2}));
  CHECK(allclose(g[0], Tensor{{11.0, 15.0}, {11.0, 15.0}}));
  CHECK(allclose(g[1], Tensor{{4.0, 4.0}, {6.0, 6.0}}));
}

TEST_CASE("matmul gradients of a broadcast batch operand are summed over the batch") {
  // a (2,1,2) batch, b (2,2) matrix, seed ones: db = sum over the batch of a_i^T ones.
  const Tensor a{{{1.0, 2.0}}, {{3.0, 4.0}}};
  const auto g = vjp(kMatmul, {a, kB}, Tensor::ones({2, 1, 2}));
  CHECK(allclose(g[0], Tensor{{{11.0, 15.0}}, {{11.0, 15.0}}}));
  CHECK(allclose(g[1], Tensor{{4.0, 4.0}, {6.0, 6.0}}));
}

TEST_CASE("matmul passes gradcheck on matrices and vectors") {
  require_gradcheck(kMatmul, {3, 4}, {4, 2}, 51);
  require_gradcheck(kMatmul, {4}, {4, 3}, 52);
  require_gradcheck(kMatmul, {3, 4}, {4}, 53);
  require_gradcheck(kMatmul, {5}, {5}, 54);
}

TEST_CASE("matmul passes gradcheck on batched operands with broadcasting") {
  require_gradcheck(kMatmul, {2, 3, 4}, {2, 4, 2}, 55);
  require_gradcheck(kMatmul, {2, 3, 4}, {4, 2}, 56);
  require_gradcheck(kMatmul, {3, 4}, {2, 4, 2}, 57);
  require_gradcheck(kMatmul, {2, 1, 2, 3}, {4, 3, 2}, 58);
  require_gradcheck(kMatmul, {3}, {2, 3, 2}, 59);
  require_gradcheck(kMatmul, {2, 2, 3}, {3}, 60);
}

TEST_CASE("matmul passes gradcheck through transposed operands") {
  const Body f = [](std::span<const NodeRef> x) { return op::matmul(op::transpose(x[0]), op::transpose(x[1], 0, 2)); };
  // (3,4)^T = (4,3);  (5,3,2) with axes 0 and 2 swapped = (2,3,5);  product (2,4,5)
  require_gradcheck(f, {3, 4}, {5, 3, 2}, 61);
}

// ---- matmul: errors ----------------------------------------------------------------------

TEST_CASE("matmul rejects differing inner dimensions, naming the operator and both shapes") {
  const std::string msg = error_message<ShapeError>([] { op::matmul(Tensor::ones({2, 3}), Tensor::ones({4, 5})); });
  CHECK_THAT(msg, Contains("matmul") && Contains("(2,3)") && Contains("(4,5)"));
  const std::string vec = error_message<ShapeError>([] { op::matmul(Tensor::ones({3}), Tensor::ones({2, 2})); });
  CHECK_THAT(vec, Contains("matmul") && Contains("(3,)") && Contains("(2,2)"));
}

TEST_CASE("matmul rejects batch dimensions that do not broadcast") {
  const std::string msg = error_message<ShapeError>([] { op::matmul(Tensor::ones({2, 2, 3}), Tensor::ones({3, 3, 2})); });
  CHECK_THAT(msg, Contains("matmul") && Contains("(2,2,3)") && Contains("(3,3,2)"));
}

TEST_CASE("matmul rejects 0-d operands") {
  CHECK_THROWS_AS(op::matmul(Tensor(2.0), Tensor::ones({2, 2})), ShapeError);
}

TEST_CASE("matmul rejects a float32 matrix with a float64 matrix") {
  const std::string msg =
      error_message<TypeError>([] { op::matmul(Tensor::ones({2, 2}, DType::Float32), Tensor::ones({2, 2})); });
  CHECK_THAT(msg, Contains("matmul") && Contains("float32") && Contains("float64"));
}

// ---- dot ---------------------------------------------------------------------------------

TEST_CASE("dot of two vectors gives their 0-d inner product") {
  const Tensor y = op::dot(Tensor{1.0, 2.0, 3.0}, Tensor{4.0, 5.0, 6.0}).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == 32.0);
}

TEST_CASE("dot of matrices and vectors follows numpy.dot") {
  CHECK(allclose(op::dot(kA, kB).value(), Tensor{{19.0, 22.0}, {43.0, 50.0}}));
  CHECK(allclose(op::dot(kA, Tensor{1.0, -1.0}).value(), Tensor{-1.0, -1.0}));
  CHECK(allclose(op::dot(Tensor{1.0, -1.0}, kA).value(), Tensor{-2.0, -2.0}));
}

TEST_CASE("dot with a scalar scales the other operand") {
  CHECK(allclose(op::dot(2.0, kA).value(), Tensor{{2.0, 4.0}, {6.0, 8.0}}));
  CHECK(allclose(op::dot(Tensor{1.0, -3.0}, 0.5).value(), Tensor{0.5, -1.5}));
  CHECK(op::dot(3.0, 4.0).value().item() == 12.0);
}

TEST_CASE("dot gradients match hand-computed values") {
  // d(a . b)/da = b, d(a . b)/db = a
  const auto v = vjp(kDot, {Tensor{1.0, 2.0, 3.0}, Tensor{4.0, 5.0, 6.0}}, Tensor(2.0));
  CHECK(allclose(v[0], Tensor{8.0, 10.0, 12.0}));
  CHECK(allclose(v[1], Tensor{2.0, 4.0, 6.0}));
  // scalar s times matrix M: d/ds = sum(seed * M), d/dM = s * seed
  const auto s = vjp(kDot, {Tensor(2.0), kA}, Tensor::ones({2, 2}));
  CHECK(s[0].item() == 10.0);
  CHECK(allclose(s[1], Tensor::full({2, 2}, 2.0)));
}

TEST_CASE("dot passes gradcheck on vectors, matrices and scalars") {
  require_gradcheck(kDot, {4}, {4}, 71);
  require_gradcheck(kDot, {3, 4}, {4, 2}, 72);
  require_gradcheck(kDot, {3, 4}, {4}, 73);
  require_gradcheck(kDot, {4}, {4, 2}, 74);
  require_gradcheck(kDot, {}, {3, 2}, 75);
  require_gradcheck(kDot, {3}, {}, 76);
  require_gradcheck(kDot, {}, {}, 77);
}

TEST_CASE("dot works on float32") {
  const Tensor y = op::dot(Tensor{1.0, 2.0}.to(DType::Float32), Tensor{3.0, 4.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(y.item() == 11.0);
  const Tensor s = op::dot(kA.to(DType::Float32), 2.0).value();
  CHECK(s.dtype() == DType::Float32);
  CHECK(allclose(s, Tensor{{2.0, 4.0}, {6.0, 8.0}}));
}

TEST_CASE("dot rejects differing inner dimensions, naming the operator and both shapes") {
  const std::string msg = error_message<ShapeError>([] { op::dot(Tensor::ones({2, 3}), Tensor::ones({2})); });
  CHECK_THAT(msg, Contains("dot") && Contains("(2,3)") && Contains("(2,)"));
}

TEST_CASE("dot rejects operands of more than 2 dimensions") {
  const std::string msg = error_message<ShapeError>([] { op::dot(Tensor::ones({2, 2, 2}), Tensor::ones({2})); });
  CHECK_THAT(msg, Contains("dot") && Contains("(2,2,2)"));
}

// ---- reshape -----------------------------------------------------------------------------

TEST_CASE("reshape keeps row-major order and infers a -1 dimension") {
  const Tensor y = op::reshape(Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, {3, 2}).value();
  CHECK(allclose(y, Tensor{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}}));
  const Tensor z = op::reshape(iota({2, 3, 4}), {-1, 4}).value();
  CHECK(z.shape() == Shape{6, 4});
  CHECK(z.at({5, 3}) == 23.0);
}

TEST_CASE("reshape of a transposed view reads the view's order") {
  const Tensor y = op::reshape(kA.transpose(0, 1), {4}).value();
  CHECK(allclose(y, Tensor{1.0, 3.0, 2.0, 4.0}));
}

TEST_CASE("reshape gradient has the input's shape and order") {
  const Body f = [](std::span<const NodeRef> x) { return op::reshape(x[0], {3, 2}); };
  const auto g = vjp(f, {Tensor::zeros({2, 3})}, Tensor{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}});
  CHECK(allclose(g[0], Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}));
}

TEST_CASE("reshape passes gradcheck") {
  Generator gen(81);
  // Alone: its gradient is a view of the seed.
  const GradcheckResult alone =
      gradcheck([](std::span<const NodeRef> x) { return op::reshape(x[0], {3, 4}); }, {Tensor::randn({2, 6}, gen)});
  INFO(alone.message);
  REQUIRE(alone.ok);
  const Body f = [](std::span<const NodeRef> x) { return op::mult(op::reshape(x[0], {4, -1}), x[1]); };
  const GradcheckResult r = gradcheck(f, {Tensor::randn({2, 3, 2}, gen), Tensor::randn({3}, gen)});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("reshape works on float32") {
  const Tensor y = op::reshape(kA.to(DType::Float32), {4}).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{1.0, 2.0, 3.0, 4.0}));
}

TEST_CASE("reshape rejects a shape with a different element count") {
  const std::string msg = error_message<ShapeError>([] { op::reshape(Tensor::ones({2, 3}), {4, 2}); });
  CHECK_THAT(msg, Contains("reshape") && Contains("(2,3)") && Contains("(4,2)"));
}

// ---- transpose ---------------------------------------------------------------------------

TEST_CASE("transpose swaps the last two axes by default") {
  CHECK(allclose(op::transpose(Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}).value(),
                 Tensor{{1.0, 4.0}, {2.0, 5.0}, {3.0, 6.0}}));
  const Tensor y = op::transpose(iota({2, 3, 4})).value();
  CHECK(y.shape() == Shape{2, 4, 3});
  CHECK(y.at({1, 3, 2}) == 12.0 + 8.0 + 3.0);
}

TEST_CASE("transpose swaps the given axes") {
  const Tensor y = op::transpose(iota({2, 3, 4}), 0, 2).value();
  CHECK(y.shape() == Shape{4, 3, 2});
  CHECK(y.at({3, 1, 0}) == 0.0 + 4.0 + 3.0);
  CHECK(y.at({1, 2, 1}) == 12.0 + 8.0 + 1.0);
}

TEST_CASE("transpose of a vector is the vector") {
  const Tensor y = op::transpose(Tensor{1.0, 2.0, 3.0}).value();
  CHECK(y.shape() == Shape{3});
  CHECK(allclose(y, Tensor{1.0, 2.0, 3.0}));
}

TEST_CASE("transpose gradient is the transposed seed") {
  const Body f = [](std::span<const NodeRef> x) { return op::transpose(x[0]); };
  const auto g = vjp(f, {Tensor::zeros({2, 3})}, Tensor{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}});
  CHECK(allclose(g[0], Tensor{{1.0, 3.0, 5.0}, {2.0, 4.0, 6.0}}));
}

TEST_CASE("transpose passes gradcheck with default and explicit axes") {
  Generator gen(91);
  // Alone: its gradient is a view of the seed.
  const GradcheckResult alone =
      gradcheck([](std::span<const NodeRef> x) { return op::transpose(x[0]); }, {Tensor::randn({3, 4}, gen)});
  INFO(alone.message);
  REQUIRE(alone.ok);
  // Multiplying by a vector along the new last axis makes every element's gradient distinct.
  const Body last = [](std::span<const NodeRef> x) { return op::mult(op::transpose(x[0]), x[1]); };
  const GradcheckResult r1 = gradcheck(last, {Tensor::randn({2, 3, 4}, gen), Tensor::randn({3}, gen)});
  INFO(r1.message);
  REQUIRE(r1.ok);
  const Body outer = [](std::span<const NodeRef> x) { return op::mult(op::transpose(x[0], 0, -1), x[1]); };
  const GradcheckResult r2 = gradcheck(outer, {Tensor::randn({2, 3, 4}, gen), Tensor::randn({2}, gen)});
  INFO(r2.message);
  REQUIRE(r2.ok);
}

TEST_CASE("transpose works on float32") {
  const Tensor y = op::transpose(kA.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{{1.0, 3.0}, {2.0, 4.0}}));
}

TEST_CASE("transpose rejects an axis out of range") {
  CHECK_THROWS_AS(op::transpose(Tensor::ones({2, 3}), 0, 2), IndexError);
}

// ---- linear -------------------------------------------------------------------------------

TEST_CASE("linear computes x W^T + b") {
  // torch.nn.functional.linear(x, w, b) in torch 1.13 gives [[1.5, 1, 7], [3.5, 1, 15]].
  const Tensor x{{1.0, 2.0}, {3.0, 4.0}};
  const Tensor w{{1.0, 0.0}, {0.0, 0.0}, {1.0, 3.0}};
  const Tensor b{0.5, 1.0, 0.0};
  CHECK(allclose(op::linear(x, w, b).value(), Tensor{{1.5, 1.0, 7.0}, {3.5, 1.0, 15.0}}));
  CHECK(allclose(op::linear(x, w).value(), Tensor{{1.0, 0.0, 7.0}, {3.0, 0.0, 15.0}}));
}

TEST_CASE("linear applies to every leading index of a batched input") {
  const Tensor x = iota({2, 3, 4});
  Generator gen(5);
  const Tensor w = Tensor::randn({5, 4}, gen);
  const Tensor b = Tensor::randn({5}, gen);
  const Tensor y = op::linear(x, w, b).value();
  CHECK(y.shape() == Shape{2, 3, 5});
  CHECK(allclose(y, op::add(op::matmul(x, op::transpose(w)), b).value(), 1e-12, 1e-12));
}

TEST_CASE("linear passes gradcheck with and without bias") {
  const Body with_bias = [](std::span<const NodeRef> x) { return op::linear(x[0], x[1], x[2]); };
  const Body without_bias = [](std::span<const NodeRef> x) { return op::linear(x[0], x[1]); };
  Generator gen(11);
  require_gradcheck(with_bias, {Tensor::randn({3, 4}, gen), Tensor::randn({2, 4}, gen), Tensor::randn({2}, gen)});
  require_gradcheck(with_bias, {Tensor::randn({2, 3, 4}, gen), Tensor::randn({2, 4}, gen), Tensor::randn({2}, gen)});
  require_gradcheck(without_bias, {Tensor::randn({3, 4}, gen), Tensor::randn({5, 4}, gen)});
}

TEST_CASE("linear gradients match hand-computed values and come back contiguous") {
  // d/dW sum(x W^T) = column sums of x per output row; d/dx = column sums of W; d/db = batch size.
  const Tensor x{{1.0, 2.0}, {3.0, 4.0}};
  const Tensor w{{1.0, 0.0}, {2.0, -1.0}, {1.0, 3.0}};
  const Body f = [](std::span<const NodeRef> in) { return op::linear(in[0], in[1], in[2]); };
  const auto g = vjp(f, {x, w, Tensor{0.0, 0.0, 0.0}}, Tensor::ones({2, 3}));
  CHECK(allclose(g[0], Tensor{{4.0, 2.0}, {4.0, 2.0}}));
  CHECK(allclose(g[1], Tensor{{4.0, 6.0}, {4.0, 6.0}, {4.0, 6.0}}));
  CHECK(allclose(g[2], Tensor{2.0, 2.0, 2.0}));
  CHECK(g[1].is_contiguous());
}

TEST_CASE("linear names the shapes when they do not fit") {
  const std::string msg = error_message<ShapeError>([] { op::linear(Tensor::ones({2, 3}), Tensor::ones({4, 2})); });
  CHECK_THAT(msg, Contains("linear") && Contains("(2,3)") && Contains("(4,2)"));
  const std::string bias_msg = error_message<ShapeError>(
      [] { op::linear(Tensor::ones({2, 3}), Tensor::ones({4, 3}), Tensor::ones({3})); });
  CHECK_THAT(bias_msg, Contains("bias"));
}

TEST_CASE("matmul and linear above the size OpenBLAS would thread: split over zkynet's pool", "[linalg]") {
  // ops/src/kernels/blas.h splits C by rows (m >= n) or columns (m < n) into single-threaded
  // GEMMs; every layout of A and B (transposed views too) against a plain triple loop.
  Generator gen(3);
  auto naive = [](const Tensor& a, const Tensor& b) {
    const std::int64_t m = a.shape()[0], k = a.shape()[1], n = b.shape()[1];
    const Tensor ac = a.contiguous(), bc = b.contiguous();
    const std::vector<double> av = ac.to_doubles(), bv = bc.to_doubles();
    std::vector<double> c(static_cast<std::size_t>(m * n), 0.0);
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t p = 0; p < k; ++p) {
        for (std::int64_t j = 0; j < n; ++j) {
          c[static_cast<std::size_t>(i * n + j)] += av[static_cast<std::size_t>(i * k + p)] * bv[static_cast<std::size_t>(p * n + j)];
        }
      }
    }
    return Tensor::from_vector(c, {m, n});
  };
  for (auto [m, n] : {std::pair<std::int64_t, std::int64_t>{301, 97}, {97, 301}}) {
    const std::int64_t k = 45;  // m n k > 65536 * 4
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        INFO("m " << m << " n " << n << " ta " << ta << " tb " << tb);
        const Tensor a = ta ? Tensor::randn({k, m}, gen).transpose(0, 1) : Tensor::randn({m, k}, gen);
        const Tensor b = tb ? Tensor::randn({n, k}, gen).transpose(0, 1) : Tensor::randn({k, n}, gen);
        REQUIRE(allclose(op::matmul(a, b).value(), naive(a, b), 1e-12, 1e-12));
      }
    }
  }
  const Tensor x = Tensor::randn({300, 64}, gen), w = Tensor::randn({200, 64}, gen), bias = Tensor::randn({200}, gen);
  REQUIRE(allclose(op::linear(x, w, bias).value(), op::add(naive(x, w.transpose(0, 1)), bias).value(), 1e-12, 1e-12));
}
