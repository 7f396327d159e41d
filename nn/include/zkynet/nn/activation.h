// Activations as modules, for Sequential models (torch.nn names).
//
//   nn::Sequential mlp;  mlp.add<nn::Linear>(64, 32);  mlp.add<nn::ReLU>();
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/ops/ops.h>

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

}  // namespace zkynet::nn
