#include <zkynet/framework/gradcheck.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/embedding.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

#include <cmath>

using namespace zkynet;

TEST_CASE("Linear computes x W^T + b with PyTorch's parameter shapes") {
  nn::Linear l(3, 2, {.dtype = DType::Float64});
  l.param("weight").set_value(Tensor{{1.0, 2.0, 3.0}, {-1.0, 0.0, 1.0}});
  l.param("bias").set_value(Tensor{0.5, -0.5});
  ModuleGraph y = l(Tensor{{1.0, 1.0, 1.0}, {2.0, 0.0, -1.0}});
  CHECK(allclose(y.value(), Tensor{{6.5, -0.5}, {-0.5, -3.5}}));
  y.back(Tensor::ones({2, 2}));
  CHECK(allclose(l.param("weight").grad(), Tensor{{3.0, 1.0, 0.0}, {3.0, 1.0, 0.0}}));
  CHECK(allclose(l.param("bias").grad(), Tensor{2.0, 2.0}));
}

TEST_CASE("Linear initializes within PyTorch's bound 1/sqrt(in_features), reproducibly") {
  nn::manual_seed(3);
  nn::Linear a(100, 20);
  nn::manual_seed(3);
  nn::Linear b(100, 20);
  CHECK(allclose(a.param("weight").value(), b.param("weight").value(), 0.0, 0.0));
  CHECK(a.param("weight").value().dtype() == DType::Float32);
  for (double w : a.param("weight").value().to_doubles()) REQUIRE(std::abs(w) <= 0.1);
  CHECK(a.named_parameters().size() == 2);
  CHECK(nn::Linear(4, 2, {.bias = false}).named_parameters().size() == 1);
}

TEST_CASE("Linear gradients pass gradcheck") {
  Generator gen(5);
  nn::Linear l(4, 3, {.dtype = DType::Float64, .generator = &gen});
  const auto r = gradcheck([&](std::span<const NodeRef> x) { return l(x[0]); }, {Tensor::randn({2, 4}, gen)});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("a Linear fed the wrong width names the layer and the shapes") {
  nn::Sequential mlp;
  mlp.add<nn::Linear>(4, 3);
  mlp.add<nn::ReLU>();
  mlp.add<nn::Linear>(5, 2);
  CHECK_THROWS_WITH(mlp(Tensor::zeros({8, 4}, DType::Float32)),
                    Catch::Matchers::StartsWith("Sequential.2 (Linear): linear x (8,3), weight (2,5), bias (2,): x has 3 features, weight expects 5"));
}

TEST_CASE("Sequential chains layers and names their parameters by position") {
  nn::Sequential mlp;
  mlp.add<nn::Linear>(4, 8, nn::LinearOptions{.dtype = DType::Float64});
  mlp.add<nn::Tanh>();
  mlp.add<nn::Linear>(8, 2, nn::LinearOptions{.dtype = DType::Float64});
  const auto named = mlp.named_parameters();
  REQUIRE(named.size() == 4);
  CHECK(named[0].first == "0.weight");
  CHECK(named[3].first == "2.bias");
  Generator gen(1);
  ModuleGraph out = mlp(Tensor::randn({5, 4}, gen));
  CHECK(out.value().shape() == Shape{5, 2});
  const auto r = gradcheck([&](std::span<const NodeRef> x) { return mlp(x[0]); }, {Tensor::randn({3, 4}, gen)});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("Linear(0, 5) maps empty features to its bias, as in PyTorch") {
  nn::Linear l(0, 5, {.dtype = DType::Float64});
  CHECK(l.param("weight").value().shape() == Shape{5, 0});
  CHECK(allclose(l.param("bias").value(), Tensor::zeros({5})));  // torch's bound is 0 for fan_in 0
  l.param("bias").set_value(Tensor{1.0, 2.0, 3.0, 4.0, 5.0});
  ModuleGraph y = l(Tensor::zeros({2, 0}));
  CHECK(allclose(y.value(), Tensor{{1.0, 2.0, 3.0, 4.0, 5.0}, {1.0, 2.0, 3.0, 4.0, 5.0}}));
  y.back(Tensor::ones({2, 5}));
  CHECK(l.param("weight").grad().shape() == Shape{5, 0});
  CHECK(allclose(l.param("bias").grad(), Tensor::full({5}, 2.0)));
}

TEST_CASE("Linear refuses negative feature counts") {
  CHECK_THROWS_AS(nn::Linear(-1, 5), ShapeError);
}

TEST_CASE("layers whose weight would overflow int64 bytes are refused by name") {
  CHECK_THROWS_WITH(nn::Embedding(std::int64_t{1} << 62, 4),
                    Catch::Matchers::Contains("Embedding(4611686018427387904, 4)") &&
                        Catch::Matchers::Contains("2^63 bytes"));
  CHECK_THROWS_AS(nn::Linear(std::int64_t{1} << 40, std::int64_t{1} << 40), ShapeError);
}

TEST_CASE("Linear(3, 0) gives an empty output and empty gradients") {
  nn::Linear l(3, 0, {.dtype = DType::Float64});
  ModuleGraph y = l(Tensor::ones({2, 3}));
  CHECK(y.value().shape() == Shape{2, 0});
  y.back(Tensor::zeros({2, 0}));
  CHECK(l.param("weight").grad().shape() == Shape{0, 3});
  CHECK(l.param("bias").grad().shape() == Shape{0});
}
