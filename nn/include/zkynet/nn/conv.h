// Conv2d: PyTorch's nn.Conv2d over NCHW batches (weight (out, in / groups, kH, kW), bias (out)).
//
//   nn::Conv2d c1(1, 16, 3);                                   // float32, PyTorch's default initialization
//   ModuleGraph h = c1(x);                                     // x (N, 1, 28, 28) -> (N, 16, 26, 26)
//   nn::Conv2d c2(16, 32, {3, 5}, {.stride = 2, .padding = {1, 2}, .bias = false});
//   nn::Conv2d depthwise(32, 32, 3, {.padding = 1, .groups = 32, .dtype = DType::Float64});
//
// Default initialization as torch's reset_parameters(): weight and bias both drawn from
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in / groups * kH * kW (the weight by
// kaiming_uniform with a = sqrt(5)), the weight first. Not supported (unlike torch):
// padding="same"/"valid", padding modes other than zeros, unbatched 3-d inputs.
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/ops/conv.h>

#include <array>
#include <cstdint>

namespace zkynet::nn {

// A size for both spatial axes, written as one number (`3`, both axes) or a pair (`{3, 5}`:
// height then width), as torch's int-or-tuple arguments.
struct IntPair {
  std::int64_t h = 0;
  std::int64_t w = 0;
  IntPair(std::int64_t both) : h(both), w(both) {}  // NOLINT: implicit by design, `.stride = 2`
  IntPair(std::int64_t h_, std::int64_t w_) : h(h_), w(w_) {}
  std::array<std::int64_t, 2> array() const { return {h, w}; }
  friend bool operator==(const IntPair&, const IntPair&) = default;
};

struct Conv2dOptions {
  IntPair stride = 1;
  IntPair padding = 0;  // zeros on both sides of each spatial axis
  IntPair dilation = 1;
  std::int64_t groups = 1;
  bool bias = true;
  DType dtype = DType::Float32;
  Generator* generator = nullptr;  // default_generator() when null
};

class Conv2d : public Module<Conv2d> {
 public:
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, IntPair kernel_size, Conv2dOptions options = {});
  NodeRef call(const NodeRef& x);

  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_; }
  IntPair kernel_size() const { return kernel_; }
  const op::Conv2dOptions& conv_options() const { return conv_; }  // stride, padding, dilation, groups
  bool has_bias() const { return bias_; }

 private:
  std::int64_t in_;
  std::int64_t out_;
  IntPair kernel_;
  op::Conv2dOptions conv_;
  bool bias_;
};

}  // namespace zkynet::nn
