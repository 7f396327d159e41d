// Operators: the primitive functions of a graph, each with its forward and its derivative.
//
// A hand-coded operator is one struct, forward and VJP side by side (kernels from
// <zkynet/ops/kernels.h>; README.md's "Writing an operator" compiles and checks one):
//
//   struct MultDef {
//     static constexpr std::string_view name = "mult";
//     static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
//     Tensor forward(const Tensor& a, const Tensor& b) const { return kernels::mul(a, b); }
//     std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
//       return {c.needs[0] ? kernels::sum_to(kernels::mul(c.grad, c.in(1)), c.in(0).shape()) : Tensor(),
//               c.needs[1] ? kernels::sum_to(kernels::mul(c.grad, c.in(0)), c.in(1).shape()) : Tensor()};
//     }
//   };
//   NodeRef mult(const NodeRef& a, const NodeRef& b) { return apply(MultDef{}, a, b); }
//
// Attributes (axes, shapes) are members of the definition, stored in the node apart from
// values, so a recorded graph can be re-run. Operator<Def> makes a definition a Function
// with named inputs that can itself be called to ground a graph: Operator<MultDef>{}(3.0, 4.0).
#pragma once

#include <zkynet/framework/error.h>
#include <zkynet/framework/function.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/node.h>
#include <zkynet/framework/session.h>

#include <array>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace zkynet {

template <std::size_t N>
struct VjpContext {
  const Tensor& grad;    // gradient of the objective with respect to the output
  const Tensor& output;  // the forward result
  std::array<const Tensor*, N> inputs;
  std::array<bool, N> needs;  // whether input i needs a gradient

  const Tensor& in(std::size_t i) const { return *inputs[i]; }
};

namespace detail {

// The tape the operands live on (checking they agree), else the active call's, else null.
std::shared_ptr<Tape> common_tape(std::span<const NodeRef* const> operands, std::string_view op_name);
// The node for an operand on `tape`: its own node, or a new constant node.
Node* node_on(Tape& tape, const NodeRef& operand);
[[noreturn]] void throw_vjp_shape(std::string_view op_name, std::size_t input, const Shape& got, const Shape& want);
// Operands off the CPU: all on one device (0-d CPU numbers may join any device, as in PyTorch),
// else a DeviceError naming the operator and both devices.
void check_devices(std::string_view op_name, std::span<const Tensor* const> values);
// Rethrows a DeviceError raised inside `op_name`'s kernels as "op has no CUDA implementation".
[[noreturn]] void rethrow_device_error(std::string_view op_name, const DeviceError& error);

template <class Def>
constexpr std::size_t arity() {
  return Def::inputs.size();
}

template <class Def>
class DefNode final : public OperatorNode {
 public:
  static constexpr std::size_t N = arity<Def>();

  DefNode(Tape& tape, Tensor value, std::vector<Node*> parents, Def def)
      : OperatorNode(tape, std::move(value), std::move(parents), communicates(), nondiff()), def_(std::move(def)) {}

  std::string_view op_name() const override { return Def::name; }
  const Def& def() const { return def_; }
  // A definition may describe its node further (e.g. a message's peer and tag).
  std::string label() const override {
    if constexpr (requires(const Def& d) { d.label(); }) {
      return def_.label();
    } else {
      return std::string(Def::name);
    }
  }

  static constexpr bool communicates() {
    if constexpr (requires { Def::visit_without_gradient; }) {
      return Def::visit_without_gradient;
    } else {
      return false;
    }
  }
  bool visit_without_gradient() const override { return communicates(); }

  Tensor recompute() override { return recompute_with(std::make_index_sequence<N>{}); }
  // A definition whose forward a replay cannot repeat says why:
  // `static constexpr std::string_view capture_refusal = "...";` (dropout's mask).
  std::string_view capture_refusal() const override {
    if constexpr (requires { Def::capture_refusal; }) {
      return Def::capture_refusal;
    } else {
      return {};
    }
  }

  // A definition whose forward writes state outside its result says when:
  // `bool has_side_effects() const` (batch_norm updating its running statistics).
  bool has_side_effects() const override {
    if constexpr (requires(const Def& d) { { d.has_side_effects() } -> std::convertible_to<bool>; }) {
      return communicates() || def_.has_side_effects();
    } else {
      return communicates();
    }
  }

  // Attribute-free definitions (empty types) and those with operator== compare; a random or
  // communicating one never equals another node.
  bool same_operation(const OperatorNode& other) const override {
    if constexpr (communicates() || requires { Def::capture_refusal; }) {
      return false;
    } else if constexpr (std::is_empty_v<Def>) {
      return typeid(other) == typeid(*this);
    } else if constexpr (requires(const Def& a) { { a == a } -> std::convertible_to<bool>; }) {
      const auto* o = dynamic_cast<const DefNode*>(&other);
      return o != nullptr && o->def_ == def_;
    } else {
      return false;
    }
  }

  // A definition may declare arguments non-differentiable: `static constexpr std::array<bool, N>
  // nondiff` (true: no gradient flows to that argument).
  static constexpr std::uint64_t nondiff() {
    if constexpr (requires { Def::nondiff; }) {
      static_assert(Def::nondiff.size() == N && N <= 64, "Def::nondiff: one flag per input (at most 64)");
      std::uint64_t mask = 0;
      for (std::size_t i = 0; i < N; ++i) mask |= Def::nondiff[i] ? std::uint64_t{1} << i : 0;
      return mask;
    } else {
      return 0;
    }
  }

  void backward(const Tensor& grad_out, std::span<Tensor> grad_in) const override {
    const auto ps = parents();
    std::array<const Tensor*, N> in{};
    std::array<bool, N> needs{};
    for (std::size_t i = 0; i < N; ++i) {
      in[i] = &ps[i]->value();
      needs[i] = needs_grad(i);
    }
    const VjpContext<N> ctx{grad_out, value(), in, needs};
    std::array<Tensor, N> grads = def_.vjp(ctx);
    for (std::size_t i = 0; i < N; ++i) {
      if (!needs[i] || !grads[i].defined()) continue;
      if (grads[i].shape() != in[i]->shape()) throw_vjp_shape(Def::name, i, grads[i].shape(), in[i]->shape());
      grad_in[i] = std::move(grads[i]);
    }
  }

 private:
  template <std::size_t... I>
  Tensor recompute_with(std::index_sequence<I...>) {
    const auto ps = parents();
    return def_.forward(ps[I]->value()...);
  }

  Def def_;
};

}  // namespace detail

// Runs `def` on the operands' values and, when gradients are recorded, adds its node to
// their graph. Operands outside any graph give a constant result.
template <class Def, class... Operands>
NodeRef apply(Def def, const Operands&... operands) {
  static_assert(sizeof...(Operands) == detail::arity<Def>(), "operand count differs from Def::inputs");
  const std::array<const NodeRef*, sizeof...(Operands)> refs{&operands...};
  Tensor out;
  if ((operands.value().device().is_cpu() && ...)) {
    out = def.forward(operands.value()...);
  } else {
    const std::array<const Tensor*, sizeof...(Operands)> values{&operands.value()...};
    detail::check_devices(Def::name, values);
    try {
      out = def.forward(operands.value()...);
    } catch (const DeviceError& e) {
      detail::rethrow_device_error(Def::name, e);
    }
  }
  auto& session = CallSessionManager::current();
  if (!session.grad_enabled()) return NodeRef(std::move(out));
  std::shared_ptr<Tape> tape = detail::common_tape(refs, Def::name);
  if (!tape) return NodeRef(std::move(out));
  std::vector<Node*> parents{detail::node_on(*tape, operands)...};
  Node* node = tape->make<detail::DefNode<Def>>(std::move(out), std::move(parents), std::move(def));
  return NodeRef(std::move(tape), node);
}

// An operator defined at run time, e.g. from Python: forward and VJP as callables.
struct DynamicOperator {
  using Forward = std::function<Tensor(std::span<const Tensor>)>;
  // Returns one gradient per input (undefined where needs[i] is false).
  using Vjp = std::function<std::vector<Tensor>(const Tensor& grad, const Tensor& output,
                                                std::span<const Tensor> inputs, std::span<const bool> needs)>;
  std::string name;
  std::size_t arity = 0;
  Forward forward;
  Vjp vjp;
  std::vector<std::size_t> nondiff;  // arguments no gradient flows to (Yota's @nodiff)
};

// apply() for a DynamicOperator: same recording rules, arity checked at run time.
NodeRef apply_dynamic(const std::shared_ptr<const DynamicOperator>& op, std::span<const NodeRef> operands);

// An operator definition as a Function with named inputs, callable like a module:
//   Operator<MultDef> mult_op;  ModuleGraph g = mult_op(2.0, 3.0);  g.back();  g.grad(mult_op.input("a"));  // 3
template <class Def>
class Operator : public Function {
 public:
  explicit Operator(Def def = {})
      : Function(std::string(Def::name), variables(), {}), def_(std::move(def)) {}

  template <class... Args>
  ModuleGraph operator()(Args&&... args) {
    static_assert(sizeof...(Args) == detail::arity<Def>(), "wrong number of operands");
    return ground({NodeRef(std::forward<Args>(args))...}, std::make_index_sequence<sizeof...(Args)>{});
  }

 private:
  static std::vector<Variable> variables() {
    std::vector<Variable> vars;
    for (auto name : Def::inputs) vars.emplace_back(std::string(name));
    return vars;
  }

  template <std::size_t... I>
  ModuleGraph ground(std::array<NodeRef, sizeof...(I)> args, std::index_sequence<I...>);

  Def def_;
};

namespace detail {
// Grounds one call of a Function: binds each declared input to an argument, runs `body`.
ModuleGraph ground_call(Function& function, std::span<const NodeRef> args,
                        const std::function<NodeRef(std::span<const NodeRef>)>& body);
}  // namespace detail

template <class Def>
template <std::size_t... I>
ModuleGraph Operator<Def>::ground(std::array<NodeRef, sizeof...(I)> args, std::index_sequence<I...>) {
  return detail::ground_call(*this, args, [this](std::span<const NodeRef> in) { return apply(def_, in[I]...); });
}

}  // namespace zkynet
