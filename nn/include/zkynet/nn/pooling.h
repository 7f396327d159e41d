// Pooling layers: PyTorch's nn.MaxPool2d and nn.AvgPool2d over NCHW batches (no parameters).
//
//   nn::MaxPool2d pool(2);                                     // (N, C, 26, 26) -> (N, C, 13, 13)
//   nn::MaxPool2d overlapping(3, {.stride = 2, .padding = 1});
//   nn::AvgPool2d avg({2, 3}, {.count_include_pad = false});
//
// The stride defaults to the kernel size, as in torch; a given stride must be positive.
// Not supported (unlike torch): ceil_mode, return_indices, divisor_override, 3-d inputs.
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/nn/conv.h>  // IntPair
#include <zkynet/ops/conv.h>

#include <optional>

namespace zkynet::nn {

struct MaxPool2dOptions {
  std::optional<IntPair> stride;  // unset: the kernel size
  IntPair padding = 0;  // implicit -inf, at most half the kernel size
  IntPair dilation = 1;
};

class MaxPool2d : public Module<MaxPool2d> {
 public:
  explicit MaxPool2d(IntPair kernel_size, MaxPool2dOptions options = {});
  NodeRef call(const NodeRef& x);

  IntPair kernel_size() const { return kernel_; }
  const op::MaxPool2dOptions& pool_options() const { return options_; }

 private:
  IntPair kernel_;
  op::MaxPool2dOptions options_;
};

struct AvgPool2dOptions {
  std::optional<IntPair> stride;  // unset: the kernel size
  IntPair padding = 0;  // implicit zeros, at most half the kernel size
  bool count_include_pad = true;  // whether padded zeros count in the average
};

class AvgPool2d : public Module<AvgPool2d> {
 public:
  explicit AvgPool2d(IntPair kernel_size, AvgPool2dOptions options = {});
  NodeRef call(const NodeRef& x);

  IntPair kernel_size() const { return kernel_; }
  const op::AvgPool2dOptions& pool_options() const { return options_; }

 private:
  IntPair kernel_;
  op::AvgPool2dOptions options_;
};

}  // namespace zkynet::nn
