// Dropout: torch.nn.Dropout (inverted dropout). In training mode (the default) each element is
// zeroed with probability p and the others are scaled by 1 / (1 - p), the mask drawn from the
// layer's generator (nn::default_generator() unless one is given, so nn::manual_seed makes
// masks reproducible); in evaluation mode (eval()) the input passes through unchanged.
//
//   nn::Sequential mlp;  mlp.add<nn::Linear>(64, 64);  mlp.add<nn::ReLU>();  mlp.add<nn::Dropout>(0.2);
//   mlp.eval();                       // inference: Dropout is the identity
#pragma once

#include <zkynet/framework/module.h>

namespace zkynet::nn {

class Dropout : public Module<Dropout> {
 public:
  // p in [0, 1] (UsageError otherwise); `generator` (not owned) must outlive the layer.
  explicit Dropout(double p = 0.5, Generator* generator = nullptr);
  NodeRef call(const NodeRef& x);

  double p() const { return p_; }

 private:
  double p_;
  Generator* generator_;  // null: default_generator()
};

}  // namespace zkynet::nn
