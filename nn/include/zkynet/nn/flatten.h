// Flatten: PyTorch's nn.Flatten, axes start_dim..end_dim (inclusive, negative from the end)
// merged into one; by default every axis but the batch axis.
//
//   nn::Flatten flat;                  // (64, 32, 5, 5) -> (64, 800)
//   nn::Flatten all(0);                // (64, 32, 5, 5) -> (51200,)
//   nn::Flatten inner(1, 2);           // (64, 32, 5, 5) -> (64, 160, 5)
#pragma once

#include <zkynet/framework/module.h>

#include <cstdint>

namespace zkynet::nn {

class Flatten : public Module<Flatten> {
 public:
  explicit Flatten(std::int64_t start_dim = 1, std::int64_t end_dim = -1);
  NodeRef call(const NodeRef& x);

  std::int64_t start_dim() const { return start_; }
  std::int64_t end_dim() const { return end_; }

 private:
  std::int64_t start_;
  std::int64_t end_;
};

}  // namespace zkynet::nn
