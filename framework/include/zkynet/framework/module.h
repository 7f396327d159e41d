// Modules: user-defined functions whose calls ground flat graphs.
//
//   class SimpleModel : public zkynet::Module<SimpleModel> {
//    public:
//     SimpleModel(double w0 = 1.0) : Module({Variable("x")}, {Parameter("w", w0)}) {}
//     NodeRef call(const NodeRef& x) {
//       return op::mult(op::add(x, param("w")), op::square(x));
//     }
//   };
//   SimpleModel m;
//   ModuleGraph g = m(3.0);   // a new call: its own call id and graph
//
// Layers register parameters and submodules by name, PyTorch style:
//   weight_ = &register_parameter("weight", Tensor::zeros({out, in}));
//   register_module("l1", l1_);
#pragma once

#include <zkynet/framework/function.h>
#include <zkynet/framework/graph.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

namespace zkynet {

class ModuleBase : public Function {
 public:
  ModuleBase(std::string functional_name, std::vector<Variable> inputs, std::vector<Parameter> params);

  // Registers a parameter by name (PyTorch style); the reference stays valid for the module's life.
  Parameter& register_parameter(std::string name, Tensor value);
  // Registers `child` (owned by the caller, usually a member) under `name`; a second
  // registration under the same name replaces the first.
  ModuleBase& register_module(std::string name, ModuleBase& child);

  // Own parameters first, then each registered submodule's, depth first; shared ones once.
  std::vector<Parameter> parameters() const;
  std::vector<std::pair<std::string, Parameter>> named_parameters() const;
  const std::vector<std::pair<std::string, ModuleBase*>>& children() const { return children_; }
  void zero_grad();

  // Buffers: state that is saved and loaded with the parameters but not trained (running
  // statistics). The tensor is shared: layers update it in place.
  Tensor& register_buffer(std::string name, Tensor value);
  Tensor& buffer(std::string_view name);
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;

  // Moves every parameter (with its gradient) and buffer, here and in the submodules, to
  // `device`; an optimizer's state follows its parameters at its next step.
  void to(Device device);
  // Converts every floating-point parameter (with its gradient) and floating-point buffer,
  // here and in the submodules, to the floating `dtype` (torch's module.double()/.float());
  // int64 buffers stay. Build optimizers after converting.
  void to(DType dtype);

  // Training mode (the default) or evaluation mode, for this module and its submodules.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Calls the module on values or nodes, as operator() does for typed modules.
  ModuleGraph invoke(std::span<const NodeRef> args);

  // A number that changes whenever the structure of this module or of one below it changes:
  // register_parameter, register_module, register_buffer, to(), and train()/eval() when they
  // switch a mode. compile() (compile.h) captures again when it changes. NOTE: plain members
  // a call reads (a C++ field, a Python attribute that is not a module) are not structure.
  std::uint64_t structure_version() const;
  // Why calls of this module cannot be captured and replayed by compile(), "" when they can:
  // a layer that carries state from call to call outside the graph (a stateful recurrent
  // layer) overrides it.
  virtual std::string capture_refusal() const { return {}; }

 protected:
  // The module's forward, on one node per declared input.
  virtual NodeRef call_nodes(std::span<const NodeRef> inputs) = 0;

 protected:
  // Marks a structural change (see structure_version()).
  void touch();

 private:
  bool contains(const ModuleBase& module) const;  // anywhere among the submodules
  void named_parameters_into(const std::string& prefix, std::vector<std::pair<std::string, Parameter>>& out) const;
  std::vector<std::pair<std::string, ModuleBase*>> children_;
  std::deque<Parameter> registered_;  // NOTE: a deque, so references from register_parameter stay valid
  std::deque<std::pair<std::string, Tensor>> buffers_;
  bool training_ = true;
  std::uint64_t stamp_ = 0;  // a process-wide counter's value at the last change
};

namespace detail {
template <class C, class R, class... A>
constexpr std::size_t call_arity(R (C::*)(A...)) { return sizeof...(A); }
template <class C, class R, class... A>
constexpr std::size_t call_arity(R (C::*)(A...) const) { return sizeof...(A); }
}  // namespace detail

// CRTP base for modules written in C++: Derived defines `NodeRef call(const NodeRef&...)`.
template <class Derived>
class Module : public ModuleBase {
 public:
  explicit Module(std::vector<Variable> inputs = {}, std::vector<Parameter> params = {})
      : ModuleBase(readable_type_name(typeid(Derived).name()), std::move(inputs), std::move(params)) {}

  template <class... Args>
  ModuleGraph operator()(Args&&... args) {
    const std::array<NodeRef, sizeof...(Args)> refs{NodeRef(std::forward<Args>(args))...};
    return invoke(refs);
  }

 protected:
  NodeRef call_nodes(std::span<const NodeRef> in) override {
    constexpr std::size_t n = detail::call_arity(&Derived::call);
    return call_with(in, std::make_index_sequence<n>{});
  }

 private:
  template <std::size_t... I>
  NodeRef call_with(std::span<const NodeRef> in, std::index_sequence<I...>) {
    return static_cast<Derived*>(this)->call(in[I]...);
  }
};

// A module from a callable, for quick experiments and tools (gradcheck):
//   Lambda f({"a", "b"}, [](std::span<const NodeRef> x) { return op::mult(x[0], x[1]); });
class Lambda : public ModuleBase {
 public:
  using Body = std::function<NodeRef(std::span<const NodeRef>)>;
  Lambda(std::vector<std::string> input_names, Body body, std::string functional_name = "Lambda");

  template <class... Args>
  ModuleGraph operator()(Args&&... args) {
    const std::array<NodeRef, sizeof...(Args)> refs{NodeRef(std::forward<Args>(args))...};
    return invoke(refs);
  }

 protected:
  NodeRef call_nodes(std::span<const NodeRef> inputs) override { return body_(inputs); }

 private:
  Body body_;
};

}  // namespace zkynet
