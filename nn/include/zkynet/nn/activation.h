// Activations as modules, for Sequential models (torch.nn names).
//
//   nn::Sequential mlp;  mlp.add<nn::Linear>(64, 32);  mlp.add<nn::ReLU>();
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/select.h>

#include <optional>

namespace zkynet::nn {

class ReLU : public Module<ReLU> {
 public:
  ReLU() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) { return op::relu(x); }
};

class Tanh : public Module<Tanh> {
 public:
  Tanh() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) { return op::tanh(x); }
};

class Sigmoid : public Module<Sigmoid> {
 public:
  Sigmoid() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) { return op::sigmoid(x); }
};

// torch.nn.LeakyReLU: x where x > 0, negative_slope * x elsewhere (gradient negative_slope at 0,
// as in torch), written as relu(x) + negative_slope * min(x, 0).
class LeakyReLU : public Module<LeakyReLU> {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Module({Variable("x")}), slope_(negative_slope) {}
  NodeRef call(const NodeRef& x) {
    return op::add(op::relu(x), op::mult(op::clamp(x, std::nullopt, 0.0), slope_));
  }
  double negative_slope() const { return slope_; }

 private:
  double slope_;
};

}  // namespace zkynet::nn
