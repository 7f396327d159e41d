// Custom derivative rules for any function: JAX's custom_vjp, the role of PyTorch's
// autograd.Function and Yota's @diffrule. The function is made of zkynet operators; the rule
// says what its vector-Jacobian product is, written with zkynet operators or raw tensors. In a
// graph the function records ONE node, named by the rule, whose backward is the rule.
//
//   // log(1 + e^x): the plain formula overflows at x = 1000 (inf, and a nan gradient inf/inf).
//   const auto stable = [](const NodeRef& x) {   // max(x, 0) + log(1 + e^-|x|)
//     return op::add(op::relu(x), op::log(op::add(op::exp(op::neg(op::abs(x))), 1.0)));
//   };
//   CustomVjp log1pexp("log1pexp", 1, [&](std::span<const NodeRef> x) { return stable(x[0]); });
//   log1pexp.defvjp(
//       [&](std::span<const NodeRef> x) {                       // fwd: output and residuals
//         return CustomVjp::Forward{stable(x[0]), {x[0].value()}};
//       },
//       [](std::span<const Tensor> residuals, const Tensor& grad) {   // bwd: one gradient per argument
//         return std::vector<Tensor>{op::mult(grad, op::sigmoid(residuals[0])).value()};
//       });
//   NodeRef y = log1pexp(x);
//
// fwd and bwd run without recording (their operators compute values only). bwd returns one
// gradient per argument, each of the argument's shape, or an undefined Tensor for none.
// Outside a graph (no call recording, or under NoGradGuard) the function itself runs.
#pragma once

#include <zkynet/framework/node.h>

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace zkynet {

class CustomVjp {
 public:
  using Function = std::function<NodeRef(std::span<const NodeRef>)>;
  struct Forward {
    NodeRef output;
    std::vector<Tensor> residuals;  // what bwd needs, saved by fwd
  };
  using ForwardRule = std::function<Forward(std::span<const NodeRef>)>;
  using BackwardRule = std::function<std::vector<Tensor>(std::span<const Tensor> residuals, const Tensor& grad)>;

  // nondiff_argnums: arguments no gradient flows to (Yota's @nodiff); bwd's entries for them
  // are ignored.
  CustomVjp(std::string name, std::size_t arity, Function function, std::vector<std::size_t> nondiff_argnums = {});

  CustomVjp& defvjp(ForwardRule fwd, BackwardRule bwd);

  NodeRef operator()(std::span<const NodeRef> args) const;
  template <class... Args>
    requires(std::is_constructible_v<NodeRef, const Args&> && ...)
  NodeRef operator()(const Args&... args) const {
    const std::vector<NodeRef> operands{NodeRef(args)...};
    return (*this)(std::span<const NodeRef>(operands));
  }

  const std::string& name() const { return name_; }
  std::size_t arity() const { return arity_; }
  bool has_rule() const { return static_cast<bool>(fwd_); }
  // The rule to write, spelled out for this function's arity (the message of a missing rule).
  std::string rule_signature() const;

 private:
  std::string name_;
  std::size_t arity_;
  Function function_;
  std::vector<std::size_t> nondiff_;
  ForwardRule fwd_;
  BackwardRule bwd_;
};

}  // namespace zkynet
