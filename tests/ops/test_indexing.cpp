// Indexing operators (concat, stack, split, slice, index_select, gather, embedding, where):
// float64 gradient checks on random inputs, values and gradients against torch 1.13, int64
// and float32 values, and the errors for bad indices, shapes and dtypes.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/indexing.h>
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

// Float64 results against torch's float64 ones: equal to rounding.
bool close(const Tensor& a, const Tensor& b) { return allclose(a, b, 1e-12, 1e-15); }

Tensor ints(const std::vector<std::int64_t>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }
Tensor ints(const std::vector<std::int64_t>& values) {
  return ints(values, Shape{static_cast<std::int64_t>(values.size())});
}

// Random int64 indices in [0, n) of the given shape.
Tensor random_indices(const Shape& shape, std::int64_t n, Generator& gen) {
  std::uniform_int_distribution<std::int64_t> pick(0, n - 1);
  std::vector<std::int64_t> values(static_cast<std::size_t>(shape_numel(shape)));
  for (auto& v : values) v = pick(gen.engine());
  return ints(values, shape);
}

// Operands shared by the torch comparisons.
const Tensor kA{{0.5, -1.2, 2.0}, {1.5, 0.3, -0.7}};
const Tensor kB{{1.1, -0.4}, {0.9, 2.2}};
const Tensor kC{{2.0, 1.0, 0.0}, {-1.0, -2.0, 4.0}};
const Tensor kSeed23{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};

}  // namespace

// ---- concat ------------------------------------------------------------------------------

TEST_CASE("concat along axis 1 matches torch.cat, values and gradients", "[indexing]") {
  // torch 1.13: y = torch.cat([A, B], 1); y.backward(G)
  const Body f = [](std::span<const NodeRef> x) { return op::concat({x[0], x[1]}, 1); };
  CHECK(close(op::concat({kA, kB}, 1).value(), Tensor{{0.5, -1.2, 2.0, 1.1, -0.4}, {1.5, 0.3, -0.7, 0.9, 2.2}}));
  const Tensor seed{{0.3, -1.0, 2.0, 0.5, -0.25}, {1.5, 0.25, -0.5, 1.0, 3.0}};
  const auto g = vjp(f, {kA, kB}, seed);
  CHECK(close(g[0], Tensor{{0.3, -1.0, 2.0}, {1.5, 0.25, -0.5}}));
  CHECK(close(g[1], Tensor{{0.5, -0.25}, {1.0, 3.0}}));
}

TEST_CASE("concat of three tensors along a negative axis", "[indexing]") {
  const Tensor y = op::concat({kA, kC, kA.slice(0, 0, 1)}, -2).value();
  CHECK(y.shape() == Shape{5, 3});
  CHECK(close(y, Tensor{{0.5, -1.2, 2.0}, {1.5, 0.3, -0.7}, {2.0, 1.0, 0.0}, {-1.0, -2.0, 4.0}, {0.5, -1.2, 2.0}}));
}

TEST_CASE("concat passes gradcheck along every axis of 3-d operands", "[indexing]") {
  Generator gen(101);
  for (std::int64_t axis : {0, 1, 2, -1}) {
    INFO("axis " << axis);
    Shape s0{2, 3, 4};
    Shape s1{2, 3, 4};
    s1[static_cast<std::size_t>(axis < 0 ? axis + 3 : axis)] = 1;
    const Body f = [axis](std::span<const NodeRef> x) { return op::concat({x[0], x[1], x[0]}, axis); };
    require_gradcheck(f, {Tensor::randn(s0, gen), Tensor::randn(s1, gen)});
  }
}

TEST_CASE("concat passes gradcheck on a transposed operand", "[indexing]") {
  Generator gen(102);
  const Body f = [](std::span<const NodeRef> x) { return op::concat({op::transpose(x[0]), x[1]}, 0); };
  require_gradcheck(f, {Tensor::randn({3, 2}, gen), Tensor::randn({1, 3}, gen)});
}

TEST_CASE("concat of int64 tensors is int64", "[indexing]") {
  // torch 1.13: torch.cat([zeros(2, 1, long), ones(2, 2, long)], 1) = [[0, 1, 1], [0, 1, 1]]
  const Tensor y = op::concat({Tensor::zeros({2, 1}, DType::Int64), Tensor::ones({2, 2}, DType::Int64)}, 1).value();
  CHECK(y.dtype() == DType::Int64);
  CHECK(y.to_doubles() == std::vector<double>{0, 1, 1, 0, 1, 1});
}

TEST_CASE("concat of float32 tensors is float32", "[indexing]") {
  const Tensor y = op::concat({kA.to(DType::Float32), kC.to(DType::Float32)}, 1).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{{0.5, -1.2, 2.0, 2.0, 1.0, 0.0}, {1.5, 0.3, -0.7, -1.0, -2.0, 4.0}}, 1e-6));
}

TEST_CASE("concat records one node with one parent per operand", "[indexing]") {
  Lambda module({"a", "b", "c"}, [](std::span<const NodeRef> x) { return op::concat({x[0], x[1], x[2]}, 0); });
  ModuleGraph g = module(kA, kC, kA);
  const auto* root = static_cast<const OperatorNode*>(g.root().node());
  CHECK(root->op_name() == "concat");
  CHECK(root->parents().size() == 3);
}

TEST_CASE("concat rejects shapes that differ outside the axis, naming both", "[indexing]") {
  // torch 1.13: torch.cat([zeros(2, 3), zeros(2, 4)], 0) -> RuntimeError (sizes must match except in dim 0)
  const std::string msg = error_message<ShapeError>([] { op::concat({kA, kB}, 0); });
  CHECK_THAT(msg, Contains("concat") && Contains("(2,3)") && Contains("(2,2)"));
  CHECK_THROWS_AS(op::concat({kA, kA.reshape({3, 2, 1})}, 0), ShapeError);
}

TEST_CASE("concat rejects operands of different dtypes, naming both", "[indexing]") {
  const std::string msg = error_message<TypeError>([] { op::concat({kA, kC.to(DType::Float32)}, 0); });
  CHECK_THAT(msg, Contains("concat") && Contains("float64") && Contains("float32"));
}

TEST_CASE("concat rejects an empty list and 0-d operands", "[indexing]") {
  CHECK_THROWS_AS(op::concat({}, 0), UsageError);
  CHECK_THAT(error_message<ShapeError>([] { op::concat({Tensor(1.0), Tensor(2.0)}, 0); }), Contains("0-d"));
}

TEST_CASE("concat rejects an axis out of range, naming the operator", "[indexing]") {
  CHECK_THAT(error_message<IndexError>([] { op::concat({kA, kC}, 2); }), Contains("concat") && Contains("axis 2"));
  CHECK_THROWS_AS(op::concat({kA, kC}, -3), IndexError);
}

// ---- stack -------------------------------------------------------------------------------

TEST_CASE("stack along axis 1 matches torch.stack, values and gradients", "[indexing]") {
  // torch 1.13: y = torch.stack([A, C], 1); y.backward(arange(12).reshape(2, 2, 3) * 0.5 - 2)
  const Body f = [](std::span<const NodeRef> x) { return op::stack({x[0], x[1]}, 1); };
  const Tensor y = op::stack({kA, kC}, 1).value();
  CHECK(y.shape() == Shape{2, 2, 3});
  CHECK(close(y, Tensor{{{0.5, -1.2, 2.0}, {2.0, 1.0, 0.0}}, {{1.5, 0.3, -0.7}, {-1.0, -2.0, 4.0}}}));
  const Tensor seed = op::sub(op::mult(Tensor::arange(12).reshape({2, 2, 3}), 0.5), 2.0).value();
  const auto g = vjp(f, {kA, kC}, seed);
  CHECK(close(g[0], Tensor{{-2.0, -1.5, -1.0}, {1.0, 1.5, 2.0}}));
  CHECK(close(g[1], Tensor{{-0.5, 0.0, 0.5}, {2.5, 3.0, 3.5}}));
}

TEST_CASE("stack passes gradcheck for every new axis position", "[indexing]") {
  Generator gen(103);
  for (std::int64_t axis : {0, 1, 2, -1, -3}) {
    INFO("axis " << axis);
    const Body f = [axis](std::span<const NodeRef> x) { return op::stack({x[0], x[1], x[0]}, axis); };
    require_gradcheck(f, {Tensor::randn({2, 3}, gen), Tensor::randn({2, 3}, gen)});
  }
}

TEST_CASE("stack of 0-d tensors gives a vector", "[indexing]") {
  const Tensor y = op::stack({Tensor(1.5), Tensor(-2.0), Tensor(4.0)}, 0).value();
  CHECK(y.shape() == Shape{3});
  CHECK(close(y, Tensor{1.5, -2.0, 4.0}));
}

TEST_CASE("stack rejects tensors of different shapes, naming both", "[indexing]") {
  // torch 1.13: torch.stack([zeros(2, 3), zeros(2, 4)]) -> RuntimeError (equal size expected)
  const std::string msg = error_message<ShapeError>([] { op::stack({kA, kB}, 0); });
  CHECK_THAT(msg, Contains("stack") && Contains("(2,3)") && Contains("(2,2)"));
}

TEST_CASE("stack rejects an axis beyond the new dimension count", "[indexing]") {
  CHECK_THAT(error_message<IndexError>([] { op::stack({kA, kC}, 3); }), Contains("stack") && Contains("axis 3"));
  CHECK_THROWS_AS(op::stack({kA, kC}, -4), IndexError);
}

// ---- split -------------------------------------------------------------------------------

TEST_CASE("split by a size gives equal pieces and a shorter last one", "[indexing]") {
  // torch 1.13: torch.split(arange(5), 2) = ([0, 1], [2, 3], [4])
  const auto pieces = op::split(Tensor::arange(5), 2);
  REQUIRE(pieces.size() == 3);
  CHECK(close(pieces[0].value(), Tensor{0.0, 1.0}));
  CHECK(close(pieces[1].value(), Tensor{2.0, 3.0}));
  CHECK(close(pieces[2].value(), Tensor{4.0}));
}

TEST_CASE("split by sizes along axis 1 gives the pieces of those sizes", "[indexing]") {
  const auto pieces = op::split(kA, std::vector<std::int64_t>{1, 0, 2}, -1);
  REQUIRE(pieces.size() == 3);
  CHECK(close(pieces[0].value(), Tensor{{0.5}, {1.5}}));
  CHECK(pieces[1].value().shape() == Shape{2, 0});
  CHECK(close(pieces[2].value(), Tensor{{-1.2, 2.0}, {0.3, -0.7}}));
}

TEST_CASE("split pieces pass gradcheck when recombined", "[indexing]") {
  Generator gen(104);
  const Body f = [](std::span<const NodeRef> x) {
    const auto p = op::split(x[0], std::vector<std::int64_t>{1, 3}, 1);
    return op::concat({op::mult(p[1], p[1]), op::mult(p[0], 3.0)}, 1);
  };
  require_gradcheck(f, {Tensor::randn({2, 4, 2}, gen)});
  const Body g = [](std::span<const NodeRef> x) { return op::stack(op::split(x[0], 2, 0), 0); };
  require_gradcheck(g, {Tensor::randn({4, 3}, gen)});
}

TEST_CASE("split rejects sizes that do not sum to the axis size, naming both", "[indexing]") {
  // torch 1.13: torch.split(arange(5), [1, 3]) -> RuntimeError (split_sizes must sum to 5)
  const std::string msg = error_message<ShapeError>([] { op::split(Tensor::arange(5), std::vector<std::int64_t>{1, 3}); });
  CHECK_THAT(msg, Contains("split") && Contains("[1, 3]") && Contains("5"));
  CHECK_THROWS_AS(op::split(Tensor::arange(5), std::vector<std::int64_t>{6, -1}), ShapeError);
}

TEST_CASE("split rejects a split size that is not positive", "[indexing]") {
  CHECK_THAT(error_message<ShapeError>([] { op::split(Tensor::arange(5), 0); }), Contains("split") && Contains("0"));
  CHECK_THROWS_AS(op::split(Tensor::arange(5), -2), ShapeError);
}

// ---- slice -------------------------------------------------------------------------------

TEST_CASE("slice with a negative start and a step matches torch, values and gradient", "[indexing]") {
  // torch 1.13: y = X[:, -4::2]; y.backward([[1, 2], [3, 4]])
  const Tensor x{{0.5, -1.2, 2.0, 1.0, -3.0}, {1.5, 0.3, -0.7, 4.0, 2.5}};
  const Body f = [](std::span<const NodeRef> x) {
    return op::slice(x[0], 1, -4, std::numeric_limits<std::int64_t>::max(), 2);
  };
  CHECK(close(f(std::vector<NodeRef>{x}).value(), Tensor{{-1.2, 1.0}, {0.3, 4.0}}));
  CHECK(close(vjp(f, {x}, Tensor{{1.0, 2.0}, {3.0, 4.0}})[0],
              Tensor{{0.0, 1.0, 0.0, 2.0, 0.0}, {0.0, 3.0, 0.0, 4.0, 0.0}}));
}

TEST_CASE("slice clamps start and stop to the axis, as Python does", "[indexing]") {
  // torch 1.13: arange(5)[-10:10:2] = [0, 2, 4]; arange(5)[4:2] is empty
  CHECK(close(op::slice(Tensor::arange(5), 0, -10, 10, 2).value(), Tensor{0.0, 2.0, 4.0}));
  CHECK(op::slice(Tensor::arange(5), 0, 4, 2).value().shape() == Shape{0});
}

TEST_CASE("slice passes gradcheck along every axis", "[indexing]") {
  Generator gen(105);
  for (std::int64_t axis : {0, 1, 2, -2}) {
    INFO("axis " << axis);
    const Body f = [axis](std::span<const NodeRef> x) { return op::square(op::slice(x[0], axis, 1, 5, 2)); };
    require_gradcheck(f, {Tensor::randn({4, 5, 3}, gen)});
  }
}

TEST_CASE("slice rejects a step that is not positive and an axis out of range", "[indexing]") {
  CHECK_THAT(error_message<ShapeError>([] { op::slice(kA, 1, 0, 3, 0); }), Contains("slice") && Contains("step"));
  CHECK_THAT(error_message<IndexError>([] { op::slice(kA, 2, 0, 1); }), Contains("slice") && Contains("axis 2"));
}

// ---- index_select ------------------------------------------------------------------------

TEST_CASE("index_select with repeated indices matches torch, values and gradient", "[indexing]") {
  // torch 1.13: y = torch.index_select(A, 1, tensor([2, 0, 2])); y.backward([[1, 2, 3], [4, 5, 6]])
  const Body f = [](std::span<const NodeRef> x) { return op::index_select(x[0], 1, x[1]); };
  const Tensor idx = ints({2, 0, 2});
  CHECK(close(op::index_select(kA, 1, idx).value(), Tensor{{2.0, 0.5, 2.0}, {-0.7, 1.5, -0.7}}));
  CHECK(close(vjp(f, {kA, idx}, kSeed23)[0], Tensor{{2.0, 0.0, 4.0}, {5.0, 0.0, 10.0}}));
}

TEST_CASE("index_select passes gradcheck along every axis", "[indexing]") {
  Generator gen(106);
  for (std::int64_t axis : {0, 1, 2, -1}) {
    INFO("axis " << axis);
    const Body f = [axis](std::span<const NodeRef> x) { return op::index_select(x[0], axis, x[1]); };
    const Tensor x = Tensor::randn({3, 4, 2}, gen);
    require_gradcheck(f, {x, random_indices({5}, x.size(axis), gen)});
  }
}

TEST_CASE("index_select picks from int64 and float32 tensors, keeping the dtype", "[indexing]") {
  const Tensor y = op::index_select(Tensor::arange(6, DType::Int64).reshape({2, 3}), 1, ints({2, 1})).value();
  CHECK(y.dtype() == DType::Int64);
  CHECK(y.to_doubles() == std::vector<double>{2, 1, 5, 4});
  const Tensor z = op::index_select(kA.to(DType::Float32), 0, ints({1})).value();
  CHECK(z.dtype() == DType::Float32);
  CHECK(allclose(z, Tensor{{1.5, 0.3, -0.7}}, 1e-6));
}

TEST_CASE("index_select takes a 0-d index as one entry", "[indexing]") {
  // torch 1.13: torch.index_select(arange(6.).reshape(2, 3), 1, tensor(2)) = [[2], [5]]
  const Tensor y = op::index_select(Tensor::arange(6).reshape({2, 3}), 1, ints({2}, Shape{})).value();
  CHECK(y.shape() == Shape{2, 1});
  CHECK(close(y, Tensor{{2.0}, {5.0}}));
}

TEST_CASE("index_select rejects an index out of range, naming the index and the size", "[indexing]") {
  const std::string msg = error_message<IndexError>([] { op::index_select(kA, 1, ints({0, 3})); });
  CHECK_THAT(msg, Contains("index_select") && Contains("index 3") && Contains("size 3"));
  // torch 1.13 refuses negative indices too ("index out of range in self")
  CHECK_THAT(error_message<IndexError>([] { op::index_select(kA, 0, ints({-1})); }),
             Contains("index -1") && Contains("size 2"));
}

TEST_CASE("index_select rejects a floating-point index", "[indexing]") {
  CHECK_THAT(error_message<TypeError>([] { op::index_select(kA, 0, Tensor{0.0, 1.0}); }),
             Contains("index_select") && Contains("int64"));
}

TEST_CASE("index_select rejects an index of more than one dimension", "[indexing]") {
  CHECK_THAT(error_message<ShapeError>([] { op::index_select(kA, 0, ints({0, 1}, Shape{1, 2})); }),
             Contains("index_select") && Contains("(1,2)"));
}

// ---- gather ------------------------------------------------------------------------------

TEST_CASE("gather along axis 1 matches torch, values and gradient", "[indexing]") {
  // torch 1.13: y = torch.gather(A, 1, tensor([[2, 2], [0, 1]])); y.backward([[1, -2], [0.5, 3]])
  const Body f = [](std::span<const NodeRef> x) { return op::gather(x[0], 1, x[1]); };
  const Tensor idx = ints({2, 2, 0, 1}, Shape{2, 2});
  CHECK(close(op::gather(kA, 1, idx).value(), Tensor{{2.0, 2.0}, {1.5, 0.3}}));
  CHECK(close(vjp(f, {kA, idx}, Tensor{{1.0, -2.0}, {0.5, 3.0}})[0], Tensor{{0.0, 0.0, -1.0}, {0.5, 3.0, 0.0}}));
}

TEST_CASE("gather along axis 0 with a smaller index matches torch, values and gradient", "[indexing]") {
  // torch 1.13: y = torch.gather(A, 0, tensor([[1, 0, 1]])); y.backward([[1, -2, 0.5]])
  const Body f = [](std::span<const NodeRef> x) { return op::gather(x[0], 0, x[1]); };
  const Tensor idx = ints({1, 0, 1}, Shape{1, 3});
  CHECK(close(op::gather(kA, 0, idx).value(), Tensor{{1.5, -1.2, -0.7}}));
  CHECK(close(vjp(f, {kA, idx}, Tensor{{1.0, -2.0, 0.5}})[0], Tensor{{0.0, -2.0, 0.0}, {1.0, 0.0, 0.5}}));
}

TEST_CASE("gather passes gradcheck along every axis of a 3-d tensor", "[indexing]") {
  Generator gen(107);
  for (std::int64_t axis : {0, 1, 2, -2}) {
    INFO("axis " << axis);
    const Body f = [axis](std::span<const NodeRef> x) { return op::gather(x[0], axis, x[1]); };
    const Tensor x = Tensor::randn({3, 4, 2}, gen);
    Shape index_shape{2, 3, 2};
    index_shape[static_cast<std::size_t>(axis < 0 ? axis + 3 : axis)] = 5;
    require_gradcheck(f, {x, random_indices(index_shape, x.size(axis), gen)});
  }
}

TEST_CASE("gather from a transposed view equals gather from its copy", "[indexing]") {
  Generator gen(108);
  const Tensor view = Tensor::randn({4, 3}, gen).transpose(0, 1);
  const Tensor idx = random_indices({3, 6}, 4, gen);
  CHECK(close(op::gather(view, 1, idx).value(), op::gather(view.contiguous(), 1, idx).value()));
}

TEST_CASE("gather rejects an index out of range, naming the index and the size", "[indexing]") {
  const std::string msg = error_message<IndexError>([] { op::gather(kA, 1, ints({0, 5}, Shape{1, 2})); });
  CHECK_THAT(msg, Contains("gather") && Contains("index 5") && Contains("size 3"));
  // torch 1.13: "index -1 is out of bounds for dimension 0 with size 3"
  CHECK_THAT(error_message<IndexError>([] { op::gather(Tensor::arange(3), 0, ints({-1})); }),
             Contains("index -1") && Contains("size 3"));
}

TEST_CASE("gather rejects an index with other dimensions or larger sizes, naming both shapes", "[indexing]") {
  // torch 1.13: gather(zeros(2, 3), 1, zeros(3, 1, long)) -> RuntimeError (index [3, 1] larger than self [2, 3])
  CHECK_THAT(error_message<ShapeError>([] { op::gather(kA, 1, ints({0, 0, 0}, Shape{3, 1})); }),
             Contains("gather") && Contains("(2,3)") && Contains("(3,1)"));
  CHECK_THROWS_AS(op::gather(kA, 1, ints({0, 0})), ShapeError);
}

TEST_CASE("gather rejects a floating-point index", "[indexing]") {
  CHECK_THAT(error_message<TypeError>([] { op::gather(kA, 1, Tensor{{0.0}, {1.0}}); }),
             Contains("gather") && Contains("int64"));
}

// ---- embedding ---------------------------------------------------------------------------

TEST_CASE("embedding matches torch, rows and the scattered-added weight gradient", "[indexing]") {
  // torch 1.13: y = F.embedding([[1, 3, 1], [0, 2, 1]], W); y.backward(arange(12).reshape(2, 3, 2) - 5.5)
  const Tensor w{{0.1, 0.2}, {-1.0, 0.5}, {2.0, -0.3}, {0.7, 0.7}};
  const Tensor idx = ints({1, 3, 1, 0, 2, 1}, Shape{2, 3});
  const Tensor y = op::embedding(idx, w).value();
  CHECK(y.shape() == Shape{2, 3, 2});
  CHECK(close(y, Tensor{{{-1.0, 0.5}, {0.7, 0.7}, {-1.0, 0.5}}, {{0.1, 0.2}, {2.0, -0.3}, {-1.0, 0.5}}}));
  const Body f = [](std::span<const NodeRef> x) { return op::embedding(x[0], x[1]); };
  const Tensor seed = op::sub(Tensor::arange(12).reshape({2, 3, 2}), 5.5).value();
  CHECK(close(vjp(f, {idx, w}, seed)[1], Tensor{{0.5, 1.5}, {-2.5, 0.5}, {2.5, 3.5}, {-3.5, -2.5}}));
}

TEST_CASE("embedding passes gradcheck with repeated indices", "[indexing]") {
  Generator gen(109);
  const Body f = [](std::span<const NodeRef> x) { return op::embedding(x[0], x[1]); };
  require_gradcheck(f, {random_indices({2, 4}, 3, gen), Tensor::randn({3, 2}, gen)});
  require_gradcheck(f, {random_indices({}, 3, gen), Tensor::randn({3, 4}, gen)});
}

namespace {
// sum(embedding(tokens, weight)) with a 3x2 weight.
class Embed : public Module<Embed> {
 public:
  Embed() : Module({Variable("tokens")}, {Parameter("weight", Tensor{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}})}) {}
  NodeRef call(const NodeRef& tokens) { return op::sum(op::embedding(tokens, param("weight"))); }
};
}  // namespace

TEST_CASE("embedding accumulates into a Parameter's grad inside a module", "[indexing]") {
  Embed m;
  ModuleGraph g = m(ints({2, 0, 2}));
  CHECK(g.value().item() == 25.0);  // rows 2, 0, 2: 11 + 3 + 11
  g.back();
  CHECK(close(m.param("weight").grad(), Tensor{{1.0, 1.0}, {0.0, 0.0}, {2.0, 2.0}}));
}

TEST_CASE("embedding rejects an index out of range, naming the index and the row count", "[indexing]") {
  const Tensor w = Tensor::zeros({5, 3});
  const std::string msg = error_message<IndexError>([&] { op::embedding(ints({1, 7}), w); });
  CHECK_THAT(msg, Contains("embedding") && Contains("index 7") && Contains("size 5"));
  CHECK_THAT(error_message<IndexError>([&] { op::embedding(ints({-1}), w); }), Contains("index -1"));
}

TEST_CASE("embedding rejects floating-point indices and a weight that is not 2-d", "[indexing]") {
  CHECK_THAT(error_message<TypeError>([] { op::embedding(Tensor{1.0}, Tensor::zeros({5, 3})); }),
             Contains("embedding") && Contains("int64"));
  CHECK_THAT(error_message<ShapeError>([] { op::embedding(ints({1}), Tensor::zeros({5})); }),
             Contains("embedding") && Contains("(5,)"));
}

// ---- where -------------------------------------------------------------------------------

TEST_CASE("where with broadcasting matches torch, values and both gradients", "[indexing]") {
  // torch 1.13: y = torch.where(tensor([[1.], [0.]]) != 0, A, tensor([10., 20., 30.])); y.backward([[1, 2, 3], [4, 5, 6]])
  const Body f = [](std::span<const NodeRef> x) { return op::where(x[0], x[1], x[2]); };
  const Tensor cond{{1.0}, {0.0}};
  const Tensor b{10.0, 20.0, 30.0};
  CHECK(close(op::where(cond, kA, b).value(), Tensor{{0.5, -1.2, 2.0}, {10.0, 20.0, 30.0}}));
  const auto g = vjp(f, {cond, kA, b}, kSeed23);
  CHECK(close(g[1], Tensor{{1.0, 2.0, 3.0}, {0.0, 0.0, 0.0}}));
  CHECK(close(g[2], Tensor{4.0, 5.0, 6.0}));
}

TEST_CASE("where gives the condition no gradient", "[indexing]") {
  const Body f = [](std::span<const NodeRef> x) { return op::where(x[0], x[1], x[2]); };
  const auto g = vjp(f, {Tensor{{1.0}, {0.0}}, kA, kC}, kSeed23);
  CHECK(close(g[0], Tensor::zeros({2, 1})));
}

TEST_CASE("where passes gradcheck with broadcast operands", "[indexing]") {
  Generator gen(110);
  const Body f = [](std::span<const NodeRef> x) { return op::where(x[0], x[1], x[2]); };
  const Tensor cond = random_indices({3, 1, 4}, 2, gen);
  require_gradcheck(f, {cond, Tensor::randn({2, 4}, gen), Tensor::randn({3, 2, 1}, gen)});
}

TEST_CASE("where treats every nonzero condition value as true, NaN included", "[indexing]") {
  const Tensor cond{0.0, -0.5, std::numeric_limits<double>::quiet_NaN(), 2.0};
  CHECK(close(op::where(cond, Tensor::ones({4}), Tensor::zeros({4})).value(), Tensor{0.0, 1.0, 1.0, 1.0}));
  const Tensor icond = ints({0, 3, 0, -1});
  CHECK(close(op::where(icond, Tensor::ones({4}), Tensor::zeros({4})).value(), Tensor{0.0, 1.0, 0.0, 1.0}));
}

TEST_CASE("where with a number keeps the tensor's dtype, float32 or int64", "[indexing]") {
  const Tensor y = op::where(Tensor{1.0, 0.0}, Tensor{1.5, 2.5}.to(DType::Float32), 0.0).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{1.5, 0.0}));
  const Tensor z = op::where(Tensor{0.0, 1.0}, ints({4, 5}), ints({7, 8})).value();
  CHECK(z.dtype() == DType::Int64);
  CHECK(z.to_doubles() == std::vector<double>{7, 5});
}

TEST_CASE("where rejects shapes that do not broadcast, naming them", "[indexing]") {
  CHECK_THAT(error_message<ShapeError>([] { op::where(Tensor{1.0, 0.0}, kA, kC); }),
             Contains("where") && Contains("(2,)") && Contains("(2,3)"));
}

TEST_CASE("where rejects operands of different dtypes", "[indexing]") {
  CHECK_THAT(error_message<TypeError>([] { op::where(Tensor{1.0, 0.0}, kA, kC.to(DType::Float32)); }),
             Contains("where") && Contains("float32"));
}
