// Arithmetic operators: forward and VJP side by side.
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/ops.h>

namespace zkynet::op {

using kernels::sum_to;

namespace {

struct AddDef {
  static constexpr std::string_view name = "add";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Tensor forward(const Tensor& a, const Tensor& b) const { return kernels::add(a, b); }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    return {c.needs[0] ? sum_to(c.grad, c.in(0).shape()) : Tensor(),
            c.needs[1] ? sum_to(c.grad, c.in(1).shape()) : Tensor()};
  }
};

struct SubDef {
  static constexpr std::string_view name = "sub";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Tensor forward(const Tensor& a, const Tensor& b) const { return kernels::sub(a, b); }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    return {c.needs[0] ? sum_to(c.grad, c.in(0).shape()) : Tensor(),
            c.needs[1] ? sum_to(kernels::neg(c.grad), c.in(1).shape()) : Tensor()};
  }
};

struct MultDef {
  static constexpr std::string_view name = "mult";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Tensor forward(const Tensor& a, const Tensor& b) const { return kernels::mul(a, b); }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    return {c.needs[0] ? sum_to(kernels::mul(c.grad, c.in(1)), c.in(0).shape()) : Tensor(),
            c.needs[1] ? sum_to(kernels::mul(c.grad, c.in(0)), c.in(1).shape()) : Tensor()};
  }
};

struct DivDef {
  static constexpr std::string_view name = "div";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Tensor forward(const Tensor& a, const Tensor& b) const { return kernels::div(a, b); }
  // d(a/b)/da = 1/b;  d(a/b)/db = -(a/b)/b, read from the saved output.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    return {c.needs[0] ? sum_to(kernels::div(c.grad, c.in(1)), c.in(0).shape()) : Tensor(),
            c.needs[1] ? sum_to(kernels::neg(kernels::div(kernels::mul(c.grad, c.output), c.in(1))), c.in(1).shape())
                       : Tensor()};
  }
};

struct NegDef {
  static constexpr std::string_view name = "neg";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::neg(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {kernels::neg(c.grad)}; }
};

struct SquareDef {
  static constexpr std::string_view name = "square";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return kernels::square(x); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {kernels::mul(c.grad, kernels::scale(c.in(0), 2.0))};
  }
};

}  // namespace

NodeRef add(const NodeRef& a, const NodeRef& b) { return apply(AddDef{}, a, b); }
NodeRef sub(const NodeRef& a, const NodeRef& b) { return apply(SubDef{}, a, b); }
NodeRef mult(const NodeRef& a, const NodeRef& b) { return apply(MultDef{}, a, b); }
NodeRef div(const NodeRef& a, const NodeRef& b) { return apply(DivDef{}, a, b); }
NodeRef neg(const NodeRef& x) { return apply(NegDef{}, x); }
NodeRef square(const NodeRef& x) { return apply(SquareDef{}, x); }

}  // namespace zkynet::op
