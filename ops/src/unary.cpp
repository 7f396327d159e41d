// Unary operators: hand-coded (exp, log, sqrt, tanh, relu, sigmoid) and Jacobian-based (pow,
// abs, tanh_dual), whose derivatives come from evaluating the functor on dual numbers.
// Derivatives that can be read from the output are (tanh, sigmoid): those stay finite where
// the function is flat, unlike the derivative of the formula (sigmoid's overflows to NaN).
#include "jacobian_functors.h"

#include <zkynet/framework/operator.h>
#include <zkynet/ops/jacobian.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/ops.h>

#include <cmath>

namespace zkynet::op {

namespace {

struct ExpDef {
  static constexpr std::string_view name = "exp";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::exp(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {kernels::mul(c.grad, c.output)}; }
};

struct LogDef {
  static constexpr std::string_view name = "log";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::log(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {kernels::div(c.grad, c.in(0))}; }
};

struct SqrtDef {
  static constexpr std::string_view name = "sqrt";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::sqrt(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {kernels::div(kernels::scale(c.grad, 0.5), c.output)};
  }
};

struct TanhDef {
  static constexpr std::string_view name = "tanh";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::tanh(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {kernels::tanh_backward(c.grad, c.output)}; }
};

struct SigmoidDef {
  static constexpr std::string_view name = "sigmoid";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::sigmoid(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {kernels::sigmoid_backward(c.grad, c.output)}; }
};

struct ReluDef {
  static constexpr std::string_view name = "relu";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::relu(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {kernels::relu_backward(c.grad, c.in(0))}; }
};

}  // namespace

NodeRef exp(const NodeRef& x) { return apply(ExpDef{}, x); }
NodeRef log(const NodeRef& x) { return apply(LogDef{}, x); }
NodeRef sqrt(const NodeRef& x) { return apply(SqrtDef{}, x); }
NodeRef tanh(const NodeRef& x) { return apply(TanhDef{}, x); }
NodeRef relu(const NodeRef& x) { return apply(ReluDef{}, x); }
NodeRef sigmoid(const NodeRef& x) { return apply(SigmoidDef{}, x); }

NodeRef pow(const NodeRef& base, const NodeRef& exponent) { return elementwise(jacobian_functors::Pow{}, base, exponent); }
NodeRef abs(const NodeRef& x) { return elementwise(jacobian_functors::Abs{}, x); }
NodeRef tanh_dual(const NodeRef& x) { return elementwise(jacobian_functors::TanhDual{}, x); }

}  // namespace zkynet::op
