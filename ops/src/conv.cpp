// conv2d, max_pool2d and avg_pool2d: forward and VJP side by side (kernels in kernels/conv.cpp).
// Each definition saves what its backward needs in a member filled by forward: conv2d the
// unfolded input (the weight gradient's operand), max_pool2d the argmax of every window.
#include <zkynet/framework/operator.h>
#include <zkynet/ops/conv.h>

namespace zkynet::op {

namespace {

// Where conv2d's forward keeps the unfolded input: in the definition while gradients are
// recorded, nowhere otherwise (the kernel then unfolds image by image into a small buffer).
Tensor* columns_slot(Tensor& columns) { return CallSessionManager::current().grad_enabled() ? &columns : nullptr; }

struct Conv2dDef {
  static constexpr std::string_view name = "conv2d";
  static constexpr std::array<std::string_view, 3> inputs{"input", "weight", "bias"};
  Conv2dOptions options;
  mutable Tensor columns;  // the unfolded input, with a row of ones for the bias

  Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b) const {
    return kernels::conv2d(x, w, b, options, columns_slot(columns));
  }
  std::array<Tensor, 3> vjp(const VjpContext<3>& c) const {
    auto g = kernels::conv2d_backward(c.grad, c.in(0), c.in(1), true, columns, options,
                                      {c.needs[0], c.needs[1], c.needs[2]});
    return {g.input, g.weight, g.bias};
  }
};

struct Conv2dNoBiasDef {
  static constexpr std::string_view name = "conv2d";
  static constexpr std::array<std::string_view, 2> inputs{"input", "weight"};
  Conv2dOptions options;
  mutable Tensor columns;  // the unfolded input

  Tensor forward(const Tensor& x, const Tensor& w) const {
    return kernels::conv2d(x, w, Tensor(), options, columns_slot(columns));
  }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    auto g = kernels::conv2d_backward(c.grad, c.in(0), c.in(1), false, columns, options,
                                      {c.needs[0], c.needs[1], false});
    return {g.input, g.weight};
  }
};

struct MaxPool2dDef {
  static constexpr std::string_view name = "max_pool2d";
  static constexpr std::array<std::string_view, 1> inputs{"input"};
  std::array<std::int64_t, 2> kernel_size;
  MaxPool2dOptions options;
  mutable Tensor indices;  // each output's argmax in its input plane

  Tensor forward(const Tensor& x) const { return kernels::max_pool2d(x, kernel_size, options, &indices); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {kernels::max_pool2d_backward(c.grad, c.in(0).shape(), indices)};
  }
};

struct AvgPool2dDef {
  static constexpr std::string_view name = "avg_pool2d";
  static constexpr std::array<std::string_view, 1> inputs{"input"};
  std::array<std::int64_t, 2> kernel_size;
  AvgPool2dOptions options;

  Tensor forward(const Tensor& x) const { return kernels::avg_pool2d(x, kernel_size, options); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {kernels::avg_pool2d_backward(c.grad, c.in(0).shape(), kernel_size, options)};
  }
};

}  // namespace

NodeRef conv2d(const NodeRef& input, const NodeRef& weight, const NodeRef& bias, const Conv2dOptions& options) {
  if (!bias.defined()) return apply(Conv2dNoBiasDef{options, {}}, input, weight);
  return apply(Conv2dDef{options, {}}, input, weight, bias);
}

NodeRef max_pool2d(const NodeRef& input, std::array<std::int64_t, 2> kernel_size, const MaxPool2dOptions& options) {
  return apply(MaxPool2dDef{kernel_size, options, {}}, input);
}

NodeRef avg_pool2d(const NodeRef& input, std::array<std::int64_t, 2> kernel_size, const AvgPool2dOptions& options) {
  return apply(AvgPool2dDef{kernel_size, options}, input);
}

}  // namespace zkynet::op
