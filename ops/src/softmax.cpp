// softmax, log_softmax and logsumexp: forward and VJP side by side, the loops in
// kernels/softmax.cpp (CPU) and kernels/cuda/softmax.cu. Each lane (the elements along the
// reduced axes for one position of the others) is shifted by its maximum before
// exponentiating, as PyTorch does, so large logits neither overflow nor lose precision.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>

#include "kernels/softmax.h"

#include <algorithm>
#include <string>

namespace zkynet::op {

namespace {

void require_floating(const Tensor& x, std::string_view op) {
  if (!is_floating(x.dtype())) {
    throw TypeError(std::string(op) + " " + shape_str(x.shape()) + ": needs a floating-point tensor, got " +
                    std::string(dtype_name(x.dtype())));
  }
}

// `axis` of x normalized (a 0-d tensor is one lane of one element, as in PyTorch).
std::int64_t lane_axis(const Tensor& x, std::int64_t axis, std::string_view op) {
  return kernels::reduction_axes({axis}, std::max<std::int64_t>(x.dim(), 1), op)[0];
}

struct SoftmaxDef {
  static constexpr std::string_view name = "softmax";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis = -1;

  Tensor forward(const Tensor& x) const {
    require_floating(x, name);
    return kernels::softmax(x, lane_axis(x, axis, name));
  }

  // dx = y * (g - sum_lane(g * y)).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {kernels::softmax_backward(c.grad, c.output, lane_axis(c.in(0), axis, name))};
  }
};

struct LogSoftmaxDef {
  static constexpr std::string_view name = "log_softmax";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis = -1;

  // (x - shift) - log(sum exp(x - shift)).
  Tensor forward(const Tensor& x) const {
    require_floating(x, name);
    return kernels::log_softmax(x, lane_axis(x, axis, name));
  }

  // dx = g - softmax(x) * sum_lane(g), with softmax(x) = exp(y).
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {kernels::log_softmax_backward(c.grad, c.output, lane_axis(c.in(0), axis, name))};
  }
};

struct LogsumexpDef {
  static constexpr std::string_view name = "logsumexp";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Shape axes;
  bool keepdim = false;

  // The reduced axes of x (a 0-d x counts as one axis of length 1).
  Shape reduced(const Tensor& x) const {
    return kernels::reduction_axes(axes, std::max<std::int64_t>(x.dim(), 1), name);
  }

  // x's shape with the reduced axes kept as 1.
  Shape kept_shape(const Tensor& x) const {
    Shape s = x.shape();
    if (x.dim() == 0) return s;
    for (auto a : reduced(x)) s[static_cast<std::size_t>(a)] = 1;
    return s;
  }

  // Moves the reduced axes last, so that each output element reads one contiguous lane.
  Tensor forward(const Tensor& x) const {
    require_floating(x, name);
    const Shape ax = reduced(x);
    const Tensor xv = x.dim() == 0 ? x.reshape({1}) : x;
    Shape perm;
    Shape out_shape;
    std::int64_t n = 1;
    std::int64_t outer = 1;
    for (std::int64_t i = 0; i < xv.dim(); ++i) {
      const bool r = std::find(ax.begin(), ax.end(), i) != ax.end();
      const std::int64_t size = xv.shape()[static_cast<std::size_t>(i)];
      if (r) {
        n *= size;
        if (keepdim) out_shape.push_back(1);
      } else {
        perm.push_back(i);
        outer *= size;
        out_shape.push_back(size);
      }
    }
    for (auto a : ax) perm.push_back(a);
    if (x.dim() == 0) out_shape = Shape{};
    const Tensor in = xv.permute(perm).contiguous().reshape({outer, n});
    return kernels::logsumexp_last(in).reshape(out_shape);
  }

  // dx = g * exp(x - out), g and out broadcast back over the reduced axes.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor& x = c.in(0);
    const Shape kept = kept_shape(x);
    const Tensor g = c.grad.reshape(kept);
    const Tensor out = c.output.reshape(kept);
    return {kernels::logsumexp_backward(g, x, out)};
  }
};

}  // namespace

NodeRef softmax(const NodeRef& x, std::int64_t axis) { return apply(SoftmaxDef{axis}, x); }
NodeRef log_softmax(const NodeRef& x, std::int64_t axis) { return apply(LogSoftmaxDef{axis}, x); }
NodeRef logsumexp(const NodeRef& x, const Shape& axes, bool keepdim) {
  return apply(LogsumexpDef{axes, keepdim}, x);
}

}  // namespace zkynet::op
