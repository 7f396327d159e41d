#include <zkynet/framework/custom_vjp.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/session.h>

#include <memory>

namespace zkynet {
namespace {

bool recording(std::span<const NodeRef> args) {
  const auto& session = CallSessionManager::current();
  if (!session.grad_enabled()) return false;
  if (session.active_tape()) return true;
  for (const NodeRef& a : args) {
    if (a.in_graph()) return true;
  }
  return false;
}

std::string argument_list(std::size_t arity, const std::string& prefix) {
  std::string out;
  for (std::size_t i = 0; i < arity; ++i) out += (i ? ", " : "") + prefix + std::to_string(i);
  return out;
}

}  // namespace

CustomVjp::CustomVjp(std::string name, std::size_t arity, Function function, std::vector<std::size_t> nondiff_argnums)
    : name_(std::move(name)), arity_(arity), function_(std::move(function)), nondiff_(std::move(nondiff_argnums)) {
  if (!function_) throw UsageError("custom_vjp '" + name_ + "': no function given");
  nondiff_mask(name_, nondiff_, arity_);  // checks the indices now, not at the first call
}

CustomVjp& CustomVjp::defvjp(ForwardRule fwd, BackwardRule bwd) {
  if (!fwd || !bwd) throw UsageError("custom_vjp '" + name_ + "': defvjp needs both fwd and bwd");
  fwd_ = std::move(fwd);
  bwd_ = std::move(bwd);
  return *this;
}

std::string CustomVjp::rule_signature() const {
  return "  fwd: [](std::span<const NodeRef> x) -> CustomVjp::Forward   // x = (" + argument_list(arity_, "x") +
         "): return {output, residuals}\n"
         "  bwd: [](std::span<const Tensor> residuals, const Tensor& grad) -> std::vector<Tensor>   // {" +
         argument_list(arity_, "grad_x") + "}, an undefined Tensor for none";
}

NodeRef CustomVjp::operator()(std::span<const NodeRef> args) const {
  if (args.size() != arity_) {
    throw UsageError("custom_vjp '" + name_ + "': expected " + std::to_string(arity_) + " argument(s), got " +
                     std::to_string(args.size()));
  }
  if (!recording(args)) return function_(args);
  if (!fwd_) {
    throw UsageError("custom_vjp '" + name_ + "' has no derivative rule: call defvjp(fwd, bwd) with\n" +
                     rule_signature());
  }
  auto residuals = std::make_shared<std::vector<Tensor>>();
  auto op = std::make_shared<DynamicOperator>();
  op->name = name_;
  op->arity = arity_;
  op->nondiff = nondiff_;
  op->forward = [fwd = fwd_, residuals](std::span<const Tensor> values) {
    NoGradGuard values_only;
    const std::vector<NodeRef> operands(values.begin(), values.end());
    Forward result = fwd(operands);
    *residuals = std::move(result.residuals);
    return result.output.value();
  };
  op->vjp = [bwd = bwd_, residuals, name = name_, signature = rule_signature()](
                const Tensor& grad, const Tensor&, std::span<const Tensor> inputs, std::span<const bool> needs) {
    NoGradGuard values_only;
    std::vector<Tensor> grads = bwd(*residuals, grad);
    if (grads.size() != inputs.size()) {
      throw UsageError("custom_vjp '" + name + "': bwd returned " + std::to_string(grads.size()) +
                       " gradient(s) for " + std::to_string(inputs.size()) + " argument(s); the rule is\n" + signature);
    }
    for (std::size_t i = 0; i < grads.size(); ++i) {
      if (!needs[i]) grads[i] = Tensor();
    }
    return grads;
  };
  return apply_dynamic(op, args);
}

}  // namespace zkynet
