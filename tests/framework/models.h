// Models shared by the framework tests: zkynet's SimpleModel and its four composites.
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/ops/ops.h>

namespace zkynet::testing {

// f(x) = (x + w) * x^2
class SimpleModel : public Module<SimpleModel> {
 public:
  explicit SimpleModel(double w0 = 1.0) : Module({Variable("x")}, {Parameter("w", w0)}) {}
  NodeRef call(const NodeRef& x) { return op::mult(op::add(x, param("w")), op::square(x)); }
};

// NO weight sharing, NO input sharing: m1(x1) + m2(x2)
class NoWeightSharingDifferentInputs : public Module<NoWeightSharingDifferentInputs> {
 public:
  NoWeightSharingDifferentInputs() : Module({Variable("x1"), Variable("x2")}) {
    register_module("m1", m1);
    register_module("m2", m2);
  }
  NodeRef call(const NodeRef& x1, const NodeRef& x2) { return op::add(m1(x1), m2(x2)); }
  SimpleModel m1, m2;
};

// YES weight sharing, NO input sharing: m1(x1) + m1(x2), w = 2
class WeightSharingDifferentInputs : public Module<WeightSharingDifferentInputs> {
 public:
  WeightSharingDifferentInputs() : Module({Variable("x1"), Variable("x2")}) { register_module("m1", m1); }
  NodeRef call(const NodeRef& x1, const NodeRef& x2) { return op::add(m1(x1), m1(x2)); }
  SimpleModel m1{2.0};
};

// NO weight sharing, YES input sharing: m1(x1) + m2(x1)
class NoWeightSharingSameInputs : public Module<NoWeightSharingSameInputs> {
 public:
  NoWeightSharingSameInputs() : Module({Variable("x1")}) {
    register_module("m1", m1);
    register_module("m2", m2);
  }
  NodeRef call(const NodeRef& x1) { return op::add(m1(x1), m2(x1)); }
  SimpleModel m1, m2;
};

// YES weight sharing, YES input sharing: m1(x1) + m1(x1)
class WeightSharingSameInputs : public Module<WeightSharingSameInputs> {
 public:
  WeightSharingSameInputs() : Module({Variable("x1")}) { register_module("m1", m1); }
  NodeRef call(const NodeRef& x1) { return op::add(m1(x1), m1(x1)); }
  SimpleModel m1;
};

// A module with its own parameter and two registered submodules: scale * (first(x) + second(x)).
class TwoLayer : public Module<TwoLayer> {
 public:
  TwoLayer() : Module({Variable("x")}) {
    register_parameter("scale", Tensor(0.5));
    register_module("first", first);
    register_module("second", second);
  }
  NodeRef call(const NodeRef& x) { return op::mult(param("scale"), op::add(first(x), second(x))); }
  SimpleModel first{1.0}, second{2.0};
};

}  // namespace zkynet::testing
