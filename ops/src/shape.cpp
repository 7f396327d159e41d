// Shape operators: views forward, the inverse view backward.
#include <zkynet/framework/operator.h>
#include <zkynet/ops/ops.h>

namespace zkynet::op {

namespace {

struct ReshapeDef {
  static constexpr std::string_view name = "reshape";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape shape;
  Tensor forward(const Tensor& x) const { return x.reshape(shape); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {c.grad.reshape(c.in(0).shape())}; }
};

struct TransposeDef {
  static constexpr std::string_view name = "transpose";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis0;
  std::int64_t axis1;
  Tensor forward(const Tensor& x) const {
    if (x.dim() < 2) return x;  // as in numpy, a vector's transpose is itself
    return x.transpose(axis0, axis1);
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {c.in(0).dim() < 2 ? c.grad : c.grad.transpose(axis0, axis1)};
  }
};

// The identity whose argument is non-differentiable: the node stays in the graph (and in its
// picture) but no gradient passes it. Its value shares x's storage, as torch's detach() does.
struct StopGradientDef {
  static constexpr std::string_view name = "stop_gradient";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  static constexpr std::array<bool, 1> nondiff{true};
  Tensor forward(const Tensor& x) const { return x; }
  std::array<Tensor, 1> vjp(const VjpContext<1>&) const { return {Tensor()}; }
};

}  // namespace

NodeRef stop_gradient(const NodeRef& x) { return apply(StopGradientDef{}, x); }
NodeRef detach(const NodeRef& x) { return stop_gradient(x); }

NodeRef reshape(const NodeRef& x, const Shape& shape) { return apply(ReshapeDef{shape}, x); }
NodeRef transpose(const NodeRef& x, std::int64_t axis0, std::int64_t axis1) {
  return apply(TransposeDef{axis0, axis1}, x);
}

}  // namespace zkynet::op
