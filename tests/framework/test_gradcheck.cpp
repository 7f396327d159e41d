// gradcheck itself: it passes right derivatives, catches wrong ones, prints its real error, and
// explains the float64 conversion when a function holds float32 parameters.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

using namespace zkynet;
using Catch::Matchers::Contains;

namespace {

// y = x * w with a float32 weight, as layers hold.
class Scale32 : public Module<Scale32> {
 public:
  Scale32() : Module({Variable("x")}, {Parameter("w", Tensor{1.5, -0.5}.to(DType::Float32))}) {}
  NodeRef call(const NodeRef& x) { return op::mult(x, param("w")); }
};

// exp with a VJP that is off by a factor 2.
struct WrongExpDef {
  static constexpr std::string_view name = "wrong_exp";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return op::exp(x).value(); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {op::mult(op::mult(c.grad, op::exp(c.in(0))), 2.0).value()};
  }
};

}  // namespace

TEST_CASE("gradcheck reports the size of its largest error, not a rounded zero") {
  Generator gen(4);
  const GradcheckResult r =
      gradcheck([](std::span<const NodeRef> x) { return op::exp(x[0]); }, {Tensor::randn({4}, gen)});
  CHECK(r.ok);
  CHECK(r.max_error > 0);
  CHECK_THAT(r.message, Contains("max error") && Contains("e-") && !Contains("0.000000"));
}

TEST_CASE("gradcheck catches a wrong derivative and names input, element and both values") {
  const GradcheckResult r =
      gradcheck([](std::span<const NodeRef> x) { return apply(WrongExpDef{}, x[0]); }, {Tensor{0.0, 1.0}});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.message, Contains("input 0 element 0") && Contains("analytic 2") && Contains("numeric 1") &&
                            Contains("allowed"));
  CHECK(r.max_error > 1.0);
}

TEST_CASE("gradcheck of a function with float32 parameters explains the float64 conversion") {
  Scale32 m;
  const auto f = [&m](std::span<const NodeRef> x) -> NodeRef { return m(x[0]); };
  CHECK_THROWS_AS(gradcheck(f, {Tensor{1.0, 2.0}}), TypeError);
  CHECK_THROWS_WITH(gradcheck(f, {Tensor{1.0, 2.0}}),
                    Contains("gradcheck") && Contains("float64") && Contains("module.to(DType::Float64)") &&
                        Contains("DType::Float32"));
}

TEST_CASE("gradcheck passes a float32 module converted to float64, or checked in float32") {
  Scale32 m;
  const auto f = [&m](std::span<const NodeRef> x) -> NodeRef { return m(x[0]); };
  const GradcheckResult in32 = gradcheck(f, {Tensor{1.0, 2.0}}, {.eps = 1e-3, .rtol = 1e-2, .atol = 1e-3, .dtype = DType::Float32});
  CHECK(in32.ok);
  CHECK_THAT(in32.message, Contains("float32"));
  m.to(DType::Float64);
  CHECK(m.param("w").value().dtype() == DType::Float64);
  CHECK(gradcheck(f, {Tensor{1.0, 2.0}}).ok);
}

TEST_CASE("a module converts to float32 and back, int64 buffers untouched") {
  Scale32 m;
  m.to(DType::Float64);
  m.to(DType::Float32);
  CHECK(m.param("w").value().dtype() == DType::Float32);
  CHECK_THROWS_AS(m.to(DType::Int64), TypeError);
}

TEST_CASE("gradcheck leaves the parameters' accumulated gradients alone") {
  Scale32 m;
  m.to(DType::Float64);
  const auto f = [&m](std::span<const NodeRef> x) -> NodeRef { return m(x[0]); };
  REQUIRE(gradcheck(f, {Tensor{1.0, 2.0}}).ok);
  CHECK_FALSE(m.param("w").grad().defined());
}
