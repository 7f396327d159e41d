// Linear: y = x W^T + b, PyTorch's nn.Linear (weight (out, in), bias (out)).
//
//   nn::Linear l1(784, 512);                 // float32, PyTorch's default initialization
//   ModuleGraph h = l1(x);                   // x (batch, 784) -> (batch, 512)
//   nn::Linear head(512, 10, {.bias = false, .dtype = DType::Float64});
#pragma once

#include <zkynet/framework/module.h>

#include <cstdint>

namespace zkynet::nn {

struct LinearOptions {
  bool bias = true;
  DType dtype = DType::Float32;
  Generator* generator = nullptr;  // default_generator() when null
};

class Linear : public Module<Linear> {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, LinearOptions options = {});
  NodeRef call(const NodeRef& x);

  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  bool has_bias() const { return bias_; }

 private:
  std::int64_t in_;
  std::int64_t out_;
  bool bias_;
};

}  // namespace zkynet::nn
