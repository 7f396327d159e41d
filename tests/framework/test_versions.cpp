// In-place writes bump a storage's version; back() refuses values written after the forward pass
// (they would give a gradient at a point the forward pass never saw), as PyTorch does.
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "framework/models.h"
#include "testing/error_message.h"

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

TEST_CASE("in-place writes bump the version shared by views") {
  Tensor t = Tensor::zeros({4});
  const Tensor view = t.slice(0, 1, 3);
  const auto v0 = t.version();
  t.add_(Tensor::ones({4}));
  CHECK(t.version() == v0 + 1);
  CHECK(view.version() == v0 + 1);
  Tensor(view).fill_(2.0);
  CHECK(t.version() == v0 + 2);
  t.copy_(Tensor::zeros({4}));
  CHECK(t.version() == v0 + 3);
}

TEST_CASE("back() refuses a parameter written in place after the forward pass") {
  SimpleModel m;                    // f = (x + w) x^2: grad(w) = x^2 = 9 at x = 3
  ModuleGraph g = m(3.0);
  Tensor w = m.param("w").value();  // shares the parameter's storage
  w.fill_(100.0);
  const std::string message = error_message<UsageError>([&] { g.back(); });
  CHECK_THAT(message, Contains("operator 'add'"));
  CHECK_THAT(message, Contains("'w'"));
  CHECK_THAT(message, Contains("modified in place"));
  CHECK_THAT(message, Contains("SimpleModel"));
}

TEST_CASE("back() refuses an input written in place after the forward pass") {
  SimpleModel m;
  Tensor x{1.0, 2.0};
  ModuleGraph g = m(x);
  x.fill_(5.0);
  const std::string message = error_message<UsageError>([&] { g.back(Tensor{1.0, 1.0}); });
  CHECK_THAT(message, Contains("'x'"));
  CHECK_THAT(message, Contains("version 1"));
}

TEST_CASE("writes before the call or after back() are fine") {
  SimpleModel m;
  Tensor w = m.param("w").value();
  w.fill_(1.0);
  ModuleGraph g = m(3.0);
  g.back();
  CHECK(g.grad(m.param("w")).item() == 9.0);
  w.fill_(2.0);  // an optimizer step after back()
  ModuleGraph g2 = m(3.0);
  g2.back();
  CHECK(g2.value().item() == 45.0);
}
