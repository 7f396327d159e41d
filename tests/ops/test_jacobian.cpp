// Jacobian-based operators: derivatives from evaluating a generic forward on dual numbers.
// Checks the built-in tanh_dual against the hand-coded tanh, and user-defined functors
// through op::elementwise (with broadcasting) and op::jacobian_op (general, on buffers).
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/jacobian.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"
#include "../../ops/src/jacobian_functors.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// ---- user-defined elementwise functors ----

// softplus(x) = log(1 + exp(x)); its derivative is sigmoid(x).
struct Softplus {
  static constexpr std::string_view name = "softplus";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  template <class S>
  S operator()(S x) const {
    using std::exp;
    using std::log;
    return log(S(1) + exp(x));
  }
};

// f(x, y) = x * y + x: df/dx = y + 1, df/dy = x.
struct XYPlusX {
  static constexpr std::string_view name = "xy_plus_x";
  static constexpr std::array<std::string_view, 2> inputs{"x", "y"};
  template <class S>
  S operator()(S x, S y) const {
    return x * y + x;
  }
};

// f(x, y, z) = x * y + z, three operands.
struct MulAdd {
  static constexpr std::string_view name = "mul_add";
  template <class S>
  S operator()(S x, S y, S z) const {
    return x * y + z;
  }
};

// ---- user-defined general functors (contiguous buffers) ----

// The inner product of two vectors of equal length.
struct InnerProduct {
  static constexpr std::string_view name = "inner";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Shape output_shape(const std::array<Shape, 2>& shapes) const {
    if (shapes[0].size() != 1 || shapes[0] != shapes[1]) {
      throw ShapeError("inner " + shape_str(shapes[0]) + " and " + shape_str(shapes[1]) + ": needs equal vectors");
    }
    return {};
  }
  template <class S>
  void operator()(const std::array<const S*, 2>& in, const std::array<Shape, 2>& shapes, S* out) const {
    S acc(0);
    for (std::int64_t i = 0; i < shapes[0][0]; ++i) acc = acc + in[0][i] * in[1][i];
    *out = acc;
  }
};

// A matrix (m, n) times a vector (n,), giving (m,).
struct MatVec {
  static constexpr std::string_view name = "matvec";
  static constexpr std::array<std::string_view, 2> inputs{"m", "v"};
  Shape output_shape(const std::array<Shape, 2>& shapes) const { return {shapes[0][0]}; }
  template <class S>
  void operator()(const std::array<const S*, 2>& in, const std::array<Shape, 2>& shapes, S* out) const {
    const std::int64_t rows = shapes[0][0];
    const std::int64_t cols = shapes[0][1];
    for (std::int64_t r = 0; r < rows; ++r) {
      S acc(0);
      for (std::int64_t c = 0; c < cols; ++c) acc = acc + in[0][r * cols + c] * in[1][c];
      out[r] = acc;
    }
  }
};

// Cumulative sum along the last axis. No `inputs` member: the input is named "a" by default.
struct CumSum {
  static constexpr std::string_view name = "cumsum";
  Shape output_shape(const std::array<Shape, 1>& shapes) const { return shapes[0]; }
  template <class S>
  void operator()(const std::array<const S*, 1>& in, const std::array<Shape, 1>& shapes, S* out) const {
    const Shape& shape = shapes[0];
    const std::int64_t n = shape.empty() ? 1 : shape.back();
    const std::int64_t rows = n == 0 ? 0 : shape_numel(shape) / n;
    for (std::int64_t r = 0; r < rows; ++r) {
      S acc(0);
      for (std::int64_t i = 0; i < n; ++i) {
        acc = acc + in[0][r * n + i];
        out[r * n + i] = acc;
      }
    }
  }
};

const Body kSoftplus = [](std::span<const NodeRef> x) { return op::elementwise(Softplus{}, x[0]); };
const Body kXYPlusX = [](std::span<const NodeRef> x) { return op::elementwise(XYPlusX{}, x[0], x[1]); };
const Body kInner = [](std::span<const NodeRef> x) { return op::jacobian_op(InnerProduct{}, x[0], x[1]); };
const Body kMatVec = [](std::span<const NodeRef> x) { return op::jacobian_op(MatVec{}, x[0], x[1]); };
const Body kCumSum = [](std::span<const NodeRef> x) { return op::jacobian_op(CumSum{}, x[0]); };

}  // namespace

// ---- tanh: hand-coded vs Jacobian-based ---------------------------------------------------

TEST_CASE("tanh_dual gives the same values as the hand-coded tanh") {
  Generator gen(101);
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tensor x = Tensor::randn({4, 5}, gen, dtype);
    const Tensor hand = op::tanh(x).value();
    const Tensor dual = op::tanh_dual(x).value();
    REQUIRE(dual.dtype() == dtype);
    // Both evaluate std::tanh on the same elements: equal bit for bit.
    CHECK(hand.to_doubles() == dual.to_doubles());
  }
}

TEST_CASE("tanh_dual gives the same derivatives as the hand-coded tanh") {
  Generator gen(102);
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tensor x = Tensor::randn({4, 5}, gen, dtype);
    const Tensor seed = Tensor::randn({4, 5}, gen, dtype);
    const Tensor hand = vjp([](std::span<const NodeRef> v) { return op::tanh(v[0]); }, {x}, seed)[0];
    const Tensor dual = vjp([](std::span<const NodeRef> v) { return op::tanh_dual(v[0]); }, {x}, seed)[0];
    REQUIRE(dual.dtype() == dtype);
    // seed * (1 - tanh^2) either way; allow only last-bit differences from operation order.
    CHECK(allclose(dual, hand, dtype == DType::Float64 ? 1e-15 : 1e-7, 0.0));
  }
}

TEST_CASE("tanh_dual passes gradcheck") {
  Generator gen(103);
  require_gradcheck([](std::span<const NodeRef> x) { return op::tanh_dual(x[0]); }, {Tensor::randn({3, 4}, gen)});
}

// ---- op::elementwise with user functors ---------------------------------------------------

TEST_CASE("elementwise softplus values match torch") {
  // torch 1.13: torch.nn.functional.softplus(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
  CHECK(allclose(op::elementwise(Softplus{}, Tensor{-1.0, 0.0, 1.0}).value(),
                 Tensor{0.31326168751822286, 0.69314718055994529, 1.31326168751822281}, 1e-14));
}

TEST_CASE("elementwise softplus derivative is the sigmoid") {
  // torch 1.13: torch.sigmoid(torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64))
  const auto g = vjp(kSoftplus, {Tensor{-1.0, 0.5, 2.0}}, Tensor{1.0, 1.0, 1.0});
  CHECK(allclose(g[0], Tensor{0.26894142136999510, 0.62245933120185459, 0.88079707797788231}, 1e-14));
}

TEST_CASE("elementwise softplus passes gradcheck") {
  Generator gen(104);
  require_gradcheck(kSoftplus, {Tensor::randn({3, 4}, gen)});
}

TEST_CASE("elementwise softplus works on float32") {
  const Tensor y = op::elementwise(Softplus{}, Tensor{0.0, 1.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{0.69314718055994529, 1.31326168751822281}, 1e-6));
}

TEST_CASE("elementwise x*y + x broadcasts its operands") {
  // x = [[1, 2], [3, 4]], y = [10, -1]
  const Tensor y = op::elementwise(XYPlusX{}, Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{10.0, -1.0}).value();
  CHECK(allclose(y, Tensor{{11.0, 0.0}, {33.0, 0.0}}));
}

TEST_CASE("elementwise x*y + x partials are y + 1 and x, reduced to each operand's shape") {
  const auto g = vjp(kXYPlusX, {Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{10.0, -1.0}}, Tensor{{1.0, 1.0}, {1.0, 2.0}});
  CHECK(allclose(g[0], Tensor{{11.0, 0.0}, {11.0, 0.0}}));
  CHECK(allclose(g[1], Tensor{4.0, 10.0}));  // [1 + 3, 2 + 2 * 4]
}

TEST_CASE("elementwise x*y + x passes gradcheck on equal and broadcast shapes") {
  Generator gen(105);
  const std::vector<std::pair<Shape, Shape>> shapes = {{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 3}, {4, 1}}, {{}, {2, 3}}};
  for (const auto& [sa, sb] : shapes) {
    INFO("shapes " << shape_str(sa) << " and " << shape_str(sb));
    require_gradcheck(kXYPlusX, {Tensor::randn(sa, gen), Tensor::randn(sb, gen)});
  }
}

TEST_CASE("elementwise partials stay apart where another operand's partial is infinite") {
  // x * y + x at x = inf, y = 2: df/dx = y + 1 = 3 and df/dy = x = inf (torch: 3 and inf).
  // Both come from one evaluation on Dual<T, 2>; x's partial used to catch inf * 0 = NaN from
  // y's direction, in which x does not vary.
  const double inf = std::numeric_limits<double>::infinity();
  const auto g = vjp(kXYPlusX, {Tensor{inf, 1.0}, Tensor{2.0, -1.0}}, Tensor{1.0, 1.0});
  CHECK(allclose(g[0], Tensor{3.0, 0.0}));
  CHECK(allclose(g[1], Tensor{inf, 1.0}));
  // the chain rule of a unary function likewise: sqrt at 0 is steep along x only
  const Dual<double, 2> r = sqrt(Dual<double, 2>(0.0, {1.0, 0.0}));
  CHECK(r.d[0] == inf);
  CHECK(r.d[1] == 0.0);
}

TEST_CASE("elementwise with a constant operand differentiates the other one only") {
  const Body f = [](std::span<const NodeRef> x) { return op::elementwise(XYPlusX{}, x[0], 2.0); };
  Generator gen(106);
  require_gradcheck(f, {Tensor::randn({2, 3}, gen)});
  CHECK(allclose(vjp(f, {Tensor{1.0, 2.0}}, Tensor{1.0, 1.0})[0], Tensor{3.0, 3.0}));
}

TEST_CASE("elementwise of float32 with a 0-d float64 constant stays float32") {
  const Tensor y = op::elementwise(XYPlusX{}, Tensor{1.0, 2.0}.to(DType::Float32), 2.0).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{3.0, 6.0}));
}

TEST_CASE("elementwise rejects shapes that do not broadcast, naming the functor and both shapes") {
  std::string msg;
  try {
    op::elementwise(XYPlusX{}, Tensor::ones({2, 3}), Tensor::ones({4}));
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("xy_plus_x") && Contains("(2,3)") && Contains("(4,)"));
}

TEST_CASE("elementwise rejects a float32 tensor with a float64 tensor") {
  CHECK_THROWS_AS(op::elementwise(XYPlusX{}, Tensor::ones({2}, DType::Float32), Tensor::ones({2})), TypeError);
}

TEST_CASE("elementwise with three operands broadcasts them and passes gradcheck") {
  const Tensor y = op::elementwise(MulAdd{}, Tensor{{1.0, 2.0}, {3.0, 4.0}}, Tensor{10.0, -1.0}, 0.5).value();
  CHECK(allclose(y, Tensor{{10.5, -1.5}, {30.5, -3.5}}));
  Generator gen(107);
  require_gradcheck([](std::span<const NodeRef> x) { return op::elementwise(MulAdd{}, x[0], x[1], x[2]); },
                    {Tensor::randn({2, 1, 3}, gen), Tensor::randn({4, 1}, gen), Tensor::randn({3}, gen)});
}

TEST_CASE("elementwise with three operands rejects float32 with float64 after a leading scalar") {
  // The 0-d first operand takes the others' dtype; the other two still differ.
  CHECK_THROWS_AS(op::elementwise(MulAdd{}, 2.0, Tensor::ones({2}, DType::Float32), Tensor::ones({2})), TypeError);
  CHECK_THROWS_AS(op::elementwise(MulAdd{}, Tensor::ones({2}, DType::Float32), 2.0, Tensor::ones({2})), TypeError);
}

TEST_CASE("elementwise with three operands keeps float32 with float64 scalars on either side") {
  const Tensor y = op::elementwise(MulAdd{}, 2.0, Tensor{1.0, 2.0}.to(DType::Float32), 0.5).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{2.5, 4.5}));
}

// ---- op::jacobian_op with user functors ---------------------------------------------------

TEST_CASE("jacobian_op inner product equals op::dot in value") {
  CHECK(op::jacobian_op(InnerProduct{}, Tensor{1.0, 2.0, 3.0}, Tensor{4.0, 5.0, 6.0}).value().item() == 32.0);
  Generator gen(111);
  const Tensor a = Tensor::randn({6}, gen);
  const Tensor b = Tensor::randn({6}, gen);
  const Tensor y = op::jacobian_op(InnerProduct{}, a, b).value();
  CHECK(y.shape() == Shape{});
  CHECK(allclose(y, op::dot(a, b).value(), 1e-12));
}

TEST_CASE("jacobian_op inner product gradients equal op::dot's") {
  Generator gen(112);
  const Tensor a = Tensor::randn({6}, gen);
  const Tensor b = Tensor::randn({6}, gen);
  const auto general = vjp(kInner, {a, b}, Tensor(1.5));
  const auto dot = vjp([](std::span<const NodeRef> x) { return op::dot(x[0], x[1]); }, {a, b}, Tensor(1.5));
  CHECK(allclose(general[0], dot[0], 1e-12));
  CHECK(allclose(general[1], dot[1], 1e-12));
  // By hand: d(a . b)/da = seed * b.
  const auto hand = vjp(kInner, {Tensor{1.0, 2.0, 3.0}, Tensor{4.0, 5.0, 6.0}}, Tensor(2.0));
  CHECK(allclose(hand[0], Tensor{8.0, 10.0, 12.0}));
  CHECK(allclose(hand[1], Tensor{2.0, 4.0, 6.0}));
}

TEST_CASE("jacobian_op inner product passes gradcheck, alone and inside a graph") {
  Generator gen(113);
  require_gradcheck(kInner, {Tensor::randn({5}, gen), Tensor::randn({5}, gen)});
  const Body composite = [](std::span<const NodeRef> x) {
    return op::jacobian_op(InnerProduct{}, op::tanh(x[0]), op::mult(x[1], x[0]));
  };
  require_gradcheck(composite, {Tensor::randn({4}, gen), Tensor::randn({4}, gen)});
}

TEST_CASE("jacobian_op inner product works on float32") {
  const Tensor y =
      op::jacobian_op(InnerProduct{}, Tensor{1.0, 2.0}.to(DType::Float32), Tensor{3.0, 4.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(y.item() == 11.0);
}

TEST_CASE("jacobian_op reports the functor's own shape errors") {
  std::string msg;
  try {
    op::jacobian_op(InnerProduct{}, Tensor::ones({3}), Tensor::ones({4}));
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Contains("inner") && Contains("(3,)") && Contains("(4,)"));
}

TEST_CASE("jacobian_op rejects a float32 tensor with a float64 tensor") {
  CHECK_THROWS_AS(op::jacobian_op(InnerProduct{}, Tensor::ones({2}, DType::Float32), Tensor::ones({2})), TypeError);
}

TEST_CASE("jacobian_op matrix-vector product equals op::matmul in value and gradients") {
  Generator gen(114);
  const Tensor m = Tensor::randn({3, 4}, gen);
  const Tensor v = Tensor::randn({4}, gen);
  const Tensor seed = Tensor::randn({3}, gen);
  CHECK(allclose(op::jacobian_op(MatVec{}, m, v).value(), op::matmul(m, v).value(), 1e-12));
  const auto general = vjp(kMatVec, {m, v}, seed);
  const auto blas = vjp([](std::span<const NodeRef> x) { return op::matmul(x[0], x[1]); }, {m, v}, seed);
  CHECK(allclose(general[0], blas[0], 1e-12));
  CHECK(allclose(general[1], blas[1], 1e-12));
}

TEST_CASE("jacobian_op matrix-vector product passes gradcheck") {
  Generator gen(115);
  require_gradcheck(kMatVec, {Tensor::randn({3, 4}, gen), Tensor::randn({4}, gen)});
}

TEST_CASE("jacobian_op cumulative sum gives running totals along the last axis") {
  const Tensor y = op::jacobian_op(CumSum{}, Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}).value();
  CHECK(allclose(y, Tensor{{1.0, 3.0, 6.0}, {4.0, 9.0, 15.0}}));
}

TEST_CASE("jacobian_op cumulative sum gradient is the reversed cumulative sum of the seed") {
  const auto g = vjp(kCumSum, {Tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}}, Tensor{{1.0, 2.0, 3.0}, {1.0, 1.0, 1.0}});
  CHECK(allclose(g[0], Tensor{{6.0, 5.0, 3.0}, {3.0, 2.0, 1.0}}));
}

TEST_CASE("jacobian_op cumulative sum passes gradcheck") {
  Generator gen(116);
  require_gradcheck(kCumSum, {Tensor::randn({6}, gen)});
  require_gradcheck(kCumSum, {Tensor::randn({2, 3}, gen)});
}

TEST_CASE("jacobian_op names undeclared inputs a, b, ... in order") {
  Operator<GeneralJacobianDef<CumSum, 1>> cumsum;
  ModuleGraph g = cumsum(Tensor{1.0, 2.0, 3.0});
  CHECK(allclose(g.value(), Tensor{1.0, 3.0, 6.0}));
  g.back(Tensor{1.0, 1.0, 1.0});
  CHECK(allclose(g.grad(cumsum.input("a")), Tensor{3.0, 2.0, 1.0}));
}

// ---- the CUDA kernels' registry (jacobian_cuda.cuh fills it from .cu files at load time) ----

TEST_CASE("a functor with no registered CUDA kernels names itself and the macro that registers them") {
  using Table = detail::ElementwiseDeviceKernels<Softplus, 1>;
  CHECK_THROWS_AS(detail::device_kernels<Table>("softplus", "ZKYNET_CUDA_ELEMENTWISE"), DeviceError);
  CHECK_THROWS_WITH(detail::device_kernels<Table>("softplus", "ZKYNET_CUDA_ELEMENTWISE"),
                    Contains("softplus has no CUDA kernels") && Contains("ZKYNET_CUDA_ELEMENTWISE") &&
                        Contains("jacobian_cuda.cuh"));
}

TEST_CASE("registered CUDA kernels are found by the functor's type and operand count") {
  using Table = detail::GeneralDeviceKernels<CumSum, 1>;
  static const Table table{nullptr, nullptr};
  detail::register_device_kernels(typeid(Table), &table);
  CHECK(&detail::device_kernels<Table>("cumsum", "ZKYNET_CUDA_JACOBIAN") == &table);
  CHECK(detail::find_device_kernels(typeid(detail::ElementwiseDeviceKernels<CumSum, 1>)) == nullptr);
}

TEST_CASE("the built-in Jacobian-based operators have CUDA kernels exactly when zkynet is built with CUDA") {
  namespace fn = op::jacobian_functors;
  const bool pow = detail::find_device_kernels(typeid(detail::ElementwiseDeviceKernels<fn::Pow, 2>)) != nullptr;
  const bool abs = detail::find_device_kernels(typeid(detail::ElementwiseDeviceKernels<fn::Abs, 1>)) != nullptr;
  const bool tanh = detail::find_device_kernels(typeid(detail::ElementwiseDeviceKernels<fn::TanhDual, 1>)) != nullptr;
  CHECK(pow == cuda::built());
  CHECK(abs == cuda::built());
  CHECK(tanh == cuda::built());
}
