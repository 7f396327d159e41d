// Functions and their named inputs.
//
// A Function (a Module or an Operator) maps named Inputs to an output. Variables are the
// values a caller grounds; Parameters are values the function owns, with an accumulated
// gradient for optimizers. Each Function and Input has a `name` (the entity) and a
// `functional_name` (its role in the function's definition, e.g. "SimpleModel.w").
//
//   Variable x("x");
//   Parameter w("w", 1.0);      // a scalar float64 parameter
//   w.grad();                   // undefined until a backward pass reaches it
#pragma once

#include <zkynet/framework/node.h>
#include <zkynet/framework/tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zkynet {

// The shared state behind an Input handle; graphs keep it alive after its function is gone.
struct InputData {
  std::uint64_t uid = 0;
  std::string name;
  std::string owner;  // functional name of the declaring function, "" until declared
  // Parameters: the dotted path the outermost module that registers it gives it, as that
  // module's named_parameters() would ("model.l1.weight"); the name until then. Graph
  // pictures label the parameter with it. Set when a module is registered: a submodule
  // added to a module that is already registered elsewhere keeps the shorter path.
  std::string path;
  NodeKind kind = NodeKind::Variable;
  bool requires_grad = true;
  // Parameters: a bias (an additive offset), marked by the layer that creates it (Linear,
  // Conv2d, the recurrent layers' bias_ih/bias_hh, the norms' bias); nn::weights leaves it out.
  bool is_bias = false;
  Tensor value;  // parameters only
  Tensor grad;   // parameters only: accumulated over backward passes
};

// Adds `grad` into the input's accumulated gradient (keeping its buffer once allocated).
void accumulate_grad(InputData& input, const Tensor& grad);

class Input {
 public:
  const std::string& name() const { return data_->name; }
  std::string functional_name() const;
  std::uint64_t uid() const { return data_->uid; }
  bool is_parameter() const { return data_->kind == NodeKind::Parameter; }
  const std::shared_ptr<InputData>& data() const { return data_; }

 protected:
  Input(std::string name, NodeKind kind);
  std::shared_ptr<InputData> data_;
};

// A placeholder grounded by the caller's value at each call.
class Variable : public Input {
 public:
  explicit Variable(std::string name) : Input(std::move(name), NodeKind::Variable) {}
  // Marks the variable as not differentiated (no gradient, no Jacobian).
  Variable& requires_grad(bool on);
};

// A value owned by a function; copies of a Parameter share it (weight sharing).
class Parameter : public Input {
 public:
  Parameter(std::string name, Tensor value);

  const Tensor& value() const { return data_->value; }
  // Replaces the value (shape and dtype may change between training runs).
  void set_value(Tensor value) { data_->value = std::move(value); }
  const Tensor& grad() const { return data_->grad; }
  bool requires_grad() const { return data_->requires_grad; }
  Parameter& requires_grad(bool on);
  // A bias (see InputData::is_bias); a user's Parameter is a weight unless marked.
  bool is_bias() const { return data_->is_bias; }
  Parameter& is_bias(bool on) {
    data_->is_bias = on;
    return *this;
  }
  // Fills the gradient with zeros, keeping its buffer for the next step.
  void zero_grad();
  void accumulate_grad(const Tensor& grad);
};

// What Modules and Operators share: names and declared inputs.
class Function {
 public:
  Function(std::string functional_name, std::vector<Variable> inputs, std::vector<Parameter> params);
  virtual ~Function() = default;
  Function(const Function&) = delete;
  Function& operator=(const Function&) = delete;

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  const std::string& functional_name() const { return functional_name_; }

  // Declared inputs and parameters, looked up by name (IndexError when unknown).
  Variable& input(std::string_view name);
  const Variable& input(std::string_view name) const;
  Parameter& param(std::string_view name);
  const Parameter& param(std::string_view name) const;
  const std::vector<Variable>& inputs() const { return inputs_; }

 protected:
  std::vector<Variable> inputs_;
  std::vector<Parameter> params_;  // declared and registered, in order

 private:
  std::string functional_name_;
  std::string name_;
};

// "SimpleModel" for a type zkynet::examples::SimpleModel; used as the default functional name.
std::string readable_type_name(const char* mangled);

}  // namespace zkynet
