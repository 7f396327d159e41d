#include "models.h"

#include <catch2/catch.hpp>

using namespace zkynet;
using zkynet::testing::SimpleModel;
using Catch::Matchers::Contains;

namespace {

class Projection : public Module<Projection> {
 public:
  Projection(std::int64_t in, std::int64_t out) : Module({Variable("x")}) {
    register_parameter("weight", Tensor::zeros({in, out}));
  }
  NodeRef call(const NodeRef& x) { return op::matmul(x, param("weight")); }
};

class MLP : public Module<MLP> {
 public:
  MLP() : Module({Variable("x")}) {
    register_module("l1", l1);
    register_module("l2", l2);
  }
  NodeRef call(const NodeRef& x) { return l2(op::relu(l1(x))); }
  Projection l1{784, 512}, l2{10, 10};  // l2 is miswired on purpose
};

}  // namespace

TEST_CASE("a shape error names the module path, the operator and the shapes") {
  MLP mlp;
  CHECK_THROWS_WITH(mlp(Tensor::zeros({128, 784})),
                    "MLP.l2 (Projection): matmul (128,512) x (10,10): inner dimensions differ (512 vs 10)");
}

TEST_CASE("shape errors keep their type across module calls") {
  MLP mlp;
  CHECK_THROWS_AS(mlp(Tensor::zeros({128, 784})), ShapeError);
  CHECK_THROWS_AS(mlp(Tensor::zeros({128, 783})), ShapeError);
}

TEST_CASE("a wrong number of inputs is refused") {
  SimpleModel m;
  CHECK_THROWS_AS(m(1.0, 2.0), UsageError);
  CHECK_THROWS_WITH(m(1.0, 2.0), Contains("SimpleModel: expected 1 input(s) (x), got 2"));
}

TEST_CASE("unknown parameter and input names are refused") {
  SimpleModel m;
  CHECK_THROWS_AS(m.param("v"), IndexError);
  CHECK_THROWS_WITH(m.param("v"), Contains("no parameter named 'v'"));
  CHECK_THROWS_WITH(m.input("y"), Contains("no input named 'y' (inputs: x)"));
}

TEST_CASE("grad() of an input absent from the graph is refused") {
  SimpleModel m, other;
  ModuleGraph g = m(3.0);
  g.back();
  CHECK_THROWS_AS(g.grad(other.param("w")), UsageError);
  CHECK_THROWS_WITH(g.grad(other.param("w")), Contains("is not part of graph"));
}

TEST_CASE("grad() before back() is refused") {
  SimpleModel m;
  ModuleGraph g = m(3.0);
  CHECK_THROWS_WITH(g.grad(m.param("w")), Contains("call back()"));
}

TEST_CASE("values of the wrong dtype are refused") {
  Lambda f({"a", "b"}, [](std::span<const NodeRef> x) { return op::matmul(x[0], x[1]); });
  CHECK_THROWS_AS(f(Tensor::zeros({2, 2}, DType::Float32), Tensor::zeros({2, 2}, DType::Float64)), TypeError);
  Lambda g({"a"}, [](std::span<const NodeRef> x) { return op::log(x[0]); });
  CHECK_THROWS_WITH(g(Tensor::scalar(3, DType::Int64)), Contains("log") && Contains("int64"));
}

TEST_CASE("operands from two different calls are refused") {
  SimpleModel m;
  ModuleGraph a = m(1.0);
  ModuleGraph b = m(2.0);
  CHECK_THROWS_WITH(op::add(a, b), Contains("different graphs"));
}

TEST_CASE("a seed of the wrong shape is refused") {
  SimpleModel m;
  ModuleGraph g = m(Tensor{1.0, 2.0});
  CHECK_THROWS_AS(g.back(Tensor{1.0, 2.0, 3.0}), ShapeError);
}
