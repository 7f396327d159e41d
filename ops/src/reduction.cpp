// Reductions: the VJP broadcasts the gradient back over the reduced axes.
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/ops.h>

namespace zkynet::op {

namespace {

// The reduced gradient, reshaped with the reduced axes kept as 1 and broadcast to `shape`.
Tensor unreduce(const Tensor& grad, const Shape& shape, const Shape& axes) {
  // A full reduction's gradient is one number: a fill, not a strided copy of a broadcast view.
  if (grad.numel() == 1 && grad.device().is_cpu()) return Tensor::full(shape, grad.item(), grad.dtype());
  Shape kept = shape;
  for (auto a : axes) kept[static_cast<std::size_t>(a)] = 1;
  return grad.reshape(kept).expand(shape).contiguous();
}

struct SumDef {
  static constexpr std::string_view name = "sum";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool keepdim = false;
  Tensor forward(const Tensor& x) const { return kernels::sum(x, axes, keepdim); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {unreduce(c.grad, c.in(0).shape(), kernels::reduction_axes(axes, c.in(0).dim(), name))};
  }
};

struct MeanDef {
  static constexpr std::string_view name = "mean";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool keepdim = false;
  Tensor forward(const Tensor& x) const { return kernels::mean(x, axes, keepdim); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Shape& shape = c.in(0).shape();
    const Shape reduced = kernels::reduction_axes(axes, c.in(0).dim(), name);
    std::int64_t count = 1;
    for (auto a : reduced) count *= shape[static_cast<std::size_t>(a)];
    return {kernels::scale(unreduce(c.grad, shape, reduced), count ? 1.0 / static_cast<double>(count) : 0.0)};
  }
};

}  // namespace

NodeRef sum(const NodeRef& x, const Shape& axes, bool keepdim) { return apply(SumDef{axes, keepdim}, x); }
NodeRef mean(const NodeRef& x, const Shape& axes, bool keepdim) { return apply(MeanDef{axes, keepdim}, x); }

}  // namespace zkynet::op
