#include "models.h"

#include <catch2/catch.hpp>

using namespace zkynet;
using zkynet::testing::SimpleModel;

TEST_CASE("SimpleModel at x = 3 gives 36 with grad(w) = 9 and grad(x) = 33") {
  SimpleModel m;
  ModuleGraph g = m(3.0);
  CHECK(g.value().item() == 36.0);
  g.back();
  CHECK(g.grad(m.param("w")).item() == 9.0);
  CHECK(g.grad(m.input("x")).item() == 33.0);
  CHECK(g.grad(m.param("w")).shape() == Shape{});
}

TEST_CASE("SimpleModel on a vector gives values and full Jacobians") {
  SimpleModel m;
  ModuleGraph g = m(Tensor{3.0, 4.0, 5.0});
  CHECK(allclose(g.value(), Tensor{36.0, 80.0, 150.0}));
  g.back();
  CHECK(allclose(g.grad(m.input("x")), Tensor{{33.0, 0.0, 0.0}, {0.0, 56.0, 0.0}, {0.0, 0.0, 85.0}}));
  // output (3,) + parameter () = (3,): zkynet's column [[9], [16], [25]] for a scalar w.
  CHECK(allclose(g.grad(m.param("w")), Tensor{9.0, 16.0, 25.0}));
}

TEST_CASE("SimpleModel on a 2x2 matrix gives a 2x2x2x2 Jacobian") {
  SimpleModel m;
  ModuleGraph g = m(Tensor{{1.0, 2.0}, {3.0, 4.0}});
  g.back();
  const Tensor j = g.grad(m.input("x"));
  REQUIRE(j.shape() == Shape{2, 2, 2, 2});
  // df_ij/dx_kl = (3x^2 + 2wx) on the diagonal (i,j) == (k,l), else 0.
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t jj = 0; jj < 2; ++jj)
      for (std::int64_t k = 0; k < 2; ++k)
        for (std::int64_t l = 0; l < 2; ++l) {
          const double x = static_cast<double>(1 + 2 * i + jj);
          const double expected = (i == k && jj == l) ? 3 * x * x + 2 * x : 0.0;
          CHECK(j.at({i, jj, k, l}) == expected);
        }
}

TEST_CASE("back(seed) gives the vector-Jacobian product shaped like the input") {
  SimpleModel m;
  ModuleGraph g = m(Tensor{3.0, 4.0, 5.0});
  g.back(Tensor{1.0, 2.0, 3.0});
  CHECK(allclose(g.grad(m.input("x")), Tensor{33.0, 112.0, 255.0}));
  CHECK(g.grad(m.param("w")).item() == 9.0 + 32.0 + 75.0);
}

TEST_CASE("two calls give two independent graphs") {
  SimpleModel m;
  ModuleGraph a = m(3.0);
  ModuleGraph b = m(3.0);
  CHECK(a.call_id() != b.call_id());
  CHECK_FALSE(a == b);
  CHECK_FALSE(a.root() == b.root());
  CHECK(a.root().node() != b.root().node());
  a.back();
  CHECK_THROWS_AS(b.grad(m.param("w")), UsageError);  // b has no gradients yet
}

TEST_CASE("parameters, named_parameters and lookups by name") {
  zkynet::testing::TwoLayer net;
  const auto named = net.named_parameters();
  REQUIRE(named.size() == 3);
  CHECK(named[0].first == "scale");
  CHECK(named[1].first == "first.w");
  CHECK(named[2].first == "second.w");
  CHECK(net.parameters().size() == 3);
  CHECK(net.param("scale").functional_name() == "TwoLayer.scale");
  CHECK(net.input("x").name() == "x");
}

TEST_CASE("a module keeps the functional name of its type and a settable name") {
  SimpleModel m;
  CHECK(m.functional_name() == "SimpleModel");
  CHECK(m.name() == "SimpleModel");
  m.set_name("encoder");
  CHECK(m.name() == "encoder");
  CHECK(m.param("w").functional_name() == "SimpleModel.w");
}

TEST_CASE("buffers are registered by name, shared in place and listed recursively") {
  zkynet::testing::TwoLayer net;
  Tensor& count = net.first.register_buffer("count", Tensor::zeros({2}));
  net.register_buffer("steps", Tensor(0.0));
  count.fill_(3.0);
  const auto named = net.named_buffers();
  REQUIRE(named.size() == 2);
  CHECK(named[0].first == "steps");
  CHECK(named[1].first == "first.count");
  CHECK(named[1].second.at({1}) == 3.0);
  CHECK(net.first.buffer("count").shares_storage_with(count));
  CHECK_THROWS_AS(net.buffer("nope"), IndexError);
  CHECK_THROWS_AS(net.register_buffer("steps", Tensor(1.0)), UsageError);
}

TEST_CASE("train() and eval() switch a module and its submodules") {
  zkynet::testing::TwoLayer net;
  CHECK(net.is_training());
  net.eval();
  CHECK_FALSE(net.is_training());
  CHECK_FALSE(net.first.is_training());
  net.train();
  CHECK(net.second.is_training());
}

TEST_CASE("registering a submodule under an existing name replaces it") {
  zkynet::testing::TwoLayer net;
  SimpleModel replacement(5.0);
  net.register_module("first", replacement);
  const auto named = net.named_parameters();
  REQUIRE(named.size() == 3);
  CHECK(named[1].first == "first.w");
  CHECK(named[1].second.value().item() == 5.0);
}

TEST_CASE("module cycles are refused") {
  zkynet::testing::TwoLayer outer;
  zkynet::testing::TwoLayer inner;
  outer.register_module("inner", inner);
  CHECK_THROWS_AS(inner.register_module("outer", outer), UsageError);
  CHECK_THROWS_AS(outer.register_module("self", outer), UsageError);
}
