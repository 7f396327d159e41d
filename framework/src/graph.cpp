#include <zkynet/framework/error.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/effects.h>
#include <zkynet/framework/session.h>

#include "step_capture.h"

#include <algorithm>
#include <atomic>

namespace zkynet {

// ---- nodes and tapes ----------------------------------------------------------------------

Node::Node(Tape& tape, Tensor value, NodeKind kind, bool requires_grad)
    : value_(std::move(value)), recorded_version_(value_.version()), tape_(&tape), kind_(kind),
      requires_grad_(requires_grad) {}

std::uint64_t Node::call_id() const { return tape_->call_id(); }

InputNode::InputNode(Tape& tape, Tensor value, NodeKind kind, std::shared_ptr<InputData> input, bool requires_grad)
    : Node(tape, std::move(value), kind, requires_grad && kind != NodeKind::Constant), input_(std::move(input)) {}

std::string InputNode::label() const { return input_ ? input_->name : "const"; }

namespace {
bool any_differentiable_requires_grad(const std::vector<Node*>& parents, std::uint64_t nondiff) {
  for (std::size_t i = 0; i < parents.size(); ++i) {
    const bool differentiable = i >= 64 || ((nondiff >> i) & 1U) == 0;
    if (differentiable && parents[i]->requires_grad()) return true;
  }
  return false;
}
}  // namespace

OperatorNode::OperatorNode(Tape& tape, Tensor value, std::vector<Node*> parents, bool communicates,
                           std::uint64_t nondiff)
    : Node(tape, std::move(value), NodeKind::Operator,
           communicates || any_differentiable_requires_grad(parents, nondiff)),
      parents_(std::move(parents)),
      nondiff_(nondiff) {}

std::uint64_t nondiff_mask(std::string_view op, std::span<const std::size_t> arguments, std::size_t arity) {
  std::uint64_t mask = 0;
  for (std::size_t a : arguments) {
    if (a >= arity || a >= 64) {
      throw UsageError(std::string(op) + ": non-differentiable argument " + std::to_string(a) + " out of range for " +
                       std::to_string(arity) + " argument(s)" + (a >= 64 ? " (at most 64 are supported)" : ""));
    }
    mask |= std::uint64_t{1} << a;
  }
  return mask;
}

void Tape::adopt(std::unique_ptr<Node> node) {
  node->index_ = nodes_.size();
  node->invocation_ = current_invocation_;
  nodes_.push_back(std::move(node));
}

void Tape::set_value(Node& node, Tensor value) {
  node.value_ = std::move(value);
  node.recorded_version_ = node.value_.version();
}

Node* Tape::bound(const InputData& input) const {
  auto it = bindings_.find(input.uid);
  return it == bindings_.end() ? nullptr : it->second;
}

void Tape::bind(const InputData& input, Node* node) { bindings_[input.uid] = node; }

int Tape::open_invocation(std::string name, std::string functional_name) {
  const int previous = current_invocation_;
  invocations_.push_back({std::move(name), std::move(functional_name), previous});
  current_invocation_ = static_cast<int>(invocations_.size()) - 1;
  return previous;
}

// ---- node references ----------------------------------------------------------------------

NodeRef::NodeRef(Tensor constant) : constant_(std::move(constant)) {}
NodeRef::NodeRef(double constant) : constant_(Tensor::scalar(constant)) {}

NodeRef::NodeRef(const Input& input) {
  const auto& data = input.data();
  const auto& tape = CallSessionManager::current().active_tape();
  if (tape) {
    if (Node* node = tape->bound(*data)) {
      tape_ = tape;
      node_ = node;
      return;
    }
    if (input.is_parameter()) {
      node_ = tape->make<InputNode>(data->value, NodeKind::Parameter, data, data->requires_grad);
      tape->bind(*data, node_);
      tape_ = tape;
      return;
    }
  }
  if (input.is_parameter()) {
    constant_ = data->value;  // outside a recorded call a parameter is just its value
    return;
  }
  throw UsageError("input '" + input.functional_name() + "' is not bound in " +
                   (tape ? "call #" + std::to_string(tape->call_id()) : std::string("any active call")) +
                   ": pass its value when calling the module");
}

const Tensor& NodeRef::value() const {
  if (node_) return node_->value();
  if (!constant_.defined()) throw UsageError("NodeRef: value of an undefined node");
  return constant_;
}

namespace detail {

std::shared_ptr<Tape> common_tape(std::span<const NodeRef* const> operands, std::string_view op_name) {
  std::shared_ptr<Tape> tape;
  for (const NodeRef* ref : operands) {
    if (!ref->in_graph()) continue;
    if (tape && ref->tape() != tape) {
      throw UsageError(std::string(op_name) + ": operands belong to different graphs (calls #" +
                       std::to_string(tape->call_id()) + " and #" + std::to_string(ref->tape()->call_id()) +
                       "); compute them in one module call");
    }
    tape = ref->tape();
  }
  const auto& active = CallSessionManager::current().active_tape();
  if (tape && active && tape != active) {
    throw UsageError(std::string(op_name) + ": an operand belongs to graph #" + std::to_string(tape->call_id()) +
                     ", not to the current call #" + std::to_string(active->call_id()));
  }
  return tape ? tape : active;
}

Node* node_on(Tape& tape, const NodeRef& operand) {
  if (operand.in_graph()) return operand.node();
  return tape.make<InputNode>(operand.value(), NodeKind::Constant, nullptr, false);
}

namespace {

class DynamicNode final : public OperatorNode {
 public:
  DynamicNode(Tape& tape, Tensor value, std::vector<Node*> parents, std::shared_ptr<const DynamicOperator> op)
      : OperatorNode(tape, std::move(value), std::move(parents), false, nondiff_mask(op->name, op->nondiff, op->arity)),
        op_(std::move(op)) {}

  std::string_view op_name() const override { return op_->name; }

  Tensor recompute() override {
    const auto ps = parents();
    std::vector<Tensor> values;
    values.reserve(ps.size());
    for (const Node* p : ps) values.push_back(p->value());
    Tensor out = op_->forward(values);
    if (!out.defined()) throw UsageError(op_->name + ": forward returned no value");
    return out;
  }

  void backward(const Tensor& grad_out, std::span<Tensor> grad_in) const override {
    const auto ps = parents();
    std::vector<Tensor> inputs;
    const auto needs = std::make_unique<bool[]>(ps.size());  // NOTE: std::vector<bool> has no span
    for (std::size_t i = 0; i < ps.size(); ++i) {
      inputs.push_back(ps[i]->value());
      needs[i] = needs_grad(i);
    }
    auto grads = op_->vjp(grad_out, value(), inputs, std::span<const bool>(needs.get(), ps.size()));
    if (grads.size() != ps.size()) {
      throw UsageError(op_->name + ": backward returned " + std::to_string(grads.size()) + " gradients for " +
                       std::to_string(ps.size()) + " inputs");
    }
    for (std::size_t i = 0; i < ps.size(); ++i) {
      if (!needs[i] || !grads[i].defined()) continue;
      if (grads[i].shape() != inputs[i].shape()) throw_vjp_shape(op_->name, i, grads[i].shape(), inputs[i].shape());
      grad_in[i] = std::move(grads[i]);
    }
  }

 private:
  std::shared_ptr<const DynamicOperator> op_;
};

}  // namespace

void throw_vjp_shape(std::string_view op_name, std::size_t input, const Shape& got, const Shape& want) {
  throw ShapeError(std::string(op_name) + ": backward produced a gradient of shape " + shape_str(got) +
                   " for input " + std::to_string(input) + " of shape " + shape_str(want) + " (operator bug)");
}

void check_devices(std::string_view op_name, std::span<const Tensor* const> values) {
  const Tensor* first = nullptr;
  for (const Tensor* v : values) {
    if (v->device().is_cpu() && v->dim() == 0) continue;  // a number
    if (first == nullptr) {
      first = v;
    } else if (v->device() != first->device()) {
      throw DeviceError(std::string(op_name) + ": operands on two devices, " + shape_str(first->shape()) + " on " +
                        first->device().str() + " and " + shape_str(v->shape()) + " on " + v->device().str() +
                        " (move one with .to(device); zkynet never copies between devices silently)");
    }
  }
}

void rethrow_device_error(std::string_view op_name, const DeviceError& error) {
  throw DeviceError(std::string(op_name) + " has no CUDA implementation yet: " + error.what());
}

}  // namespace detail

NodeRef apply_dynamic(const std::shared_ptr<const DynamicOperator>& op, std::span<const NodeRef> operands) {
  if (operands.size() != op->arity) {
    throw UsageError(op->name + ": expected " + std::to_string(op->arity) + " operand(s), got " +
                     std::to_string(operands.size()));
  }
  std::vector<Tensor> values;
  values.reserve(operands.size());
  for (const auto& operand : operands) values.push_back(operand.value());
  Tensor out = op->forward(values);
  if (!out.defined()) throw UsageError(op->name + ": forward returned no value");
  if (!CallSessionManager::current().grad_enabled()) return NodeRef(std::move(out));
  std::vector<const NodeRef*> refs;
  for (const auto& operand : operands) refs.push_back(&operand);
  std::shared_ptr<Tape> tape = detail::common_tape(refs, op->name);
  if (!tape) return NodeRef(std::move(out));
  std::vector<Node*> parents;
  for (const auto& operand : operands) parents.push_back(detail::node_on(*tape, operand));
  Node* node = tape->make<detail::DynamicNode>(std::move(out), std::move(parents), op);
  return NodeRef(std::move(tape), node);
}

// ---- reverse mode -------------------------------------------------------------------------

namespace {

std::string invocation_path(const Tape& tape, int invocation) {
  std::string path;
  for (int i = invocation; i >= 0; i = tape.invocations()[static_cast<std::size_t>(i)].parent) {
    path = tape.invocations()[static_cast<std::size_t>(i)].name + (path.empty() ? "" : "." + path);
  }
  return path;
}

// PyTorch's check: a value an operator's backward may read is still the one its forward saw.
void check_not_modified(const Tape& tape, const OperatorNode& op) {
  const auto stale = [](const Node& n) { return n.value().version() != n.recorded_version(); };
  const auto describe = [](const Node& n) {
    return "'" + n.label() + "' (" + shape_str(n.value().shape()) + " " + std::string(dtype_name(n.value().dtype())) +
           ") is at version " + std::to_string(n.value().version()) + "; expected version " +
           std::to_string(n.recorded_version());
  };
  std::string what;
  if (stale(op)) what = "its output " + describe(op);
  const auto parents = op.parents();
  for (std::size_t j = 0; j < parents.size() && what.empty(); ++j) {
    if (stale(*parents[j])) what = "its input " + std::to_string(j) + ", " + describe(*parents[j]);
  }
  if (what.empty()) return;
  const std::string path = invocation_path(tape, op.invocation());
  throw UsageError("back: a value needed for the gradient of operator '" + std::string(op.op_name()) + "'" +
                   (path.empty() ? "" : " in " + path) + " was modified in place after the forward pass: " + what +
                   ". An optimizer step, add_, copy_ or fill_ ran between the call and back(); call back() first, "
                   "or run the forward pass again");
}

}  // namespace

void Tape::replay() {
  for (const auto& n : nodes_) {
    if (n->kind() != NodeKind::Operator) continue;
    auto& op = static_cast<OperatorNode&>(*n);
    try {
      set_value(op, op.recompute());
    } catch (const Error& e) {
      if (e.has_location()) throw;
      const std::string path = invocation_path(*this, op.invocation());
      e.rethrow_at((path.empty() ? std::string() : path + ": ") + "replay of node %" + std::to_string(op.index()) +
                   " (" + std::string(op.op_name()) + ")");
    }
  }
}

std::vector<Tensor> backward_pass(const Tape& tape, const Node& root, const Tensor& seed) {
  const auto nodes = tape.nodes();
  // Communication nodes recorded after the root take part too (with zero gradients): every
  // rank must run the same backward calls, whichever node it chose as its root.
  std::size_t end = root.index() + 1;
  for (std::size_t i = nodes.size(); i > end; --i) {
    const Node& n = *nodes[i - 1];
    if (n.kind() == NodeKind::Operator && static_cast<const OperatorNode&>(n).visit_without_gradient()) {
      end = i;
      break;
    }
  }
  std::vector<Tensor> grads(end);
  std::vector<bool> owned(end, false);  // false: the tensor may be shared with an operator's output
  grads[root.index()] = seed;
  std::vector<Tensor> grad_in;
  for (std::size_t i = end; i-- > 0;) {
    const Node& node = *nodes[i];
    if (node.kind() != NodeKind::Operator) continue;
    const auto& op = static_cast<const OperatorNode&>(node);
    const bool reached = grads[i].defined();
    if (!op.visit_without_gradient() && (!reached || !node.requires_grad())) continue;
    check_not_modified(tape, op);
    const Tensor g = reached ? grads[i] : Tensor::zeros(node.value().shape(), node.value().dtype(), node.value().device());
    const auto parents = op.parents();
    grad_in.assign(parents.size(), Tensor());
    try {
      op.backward(g, grad_in);
    } catch (const DeviceError& e) {
      throw DeviceError("back: the gradient of " + std::string(op.op_name()) + " has no CUDA implementation yet: " +
                        e.what());
    }
    for (std::size_t j = 0; j < parents.size(); ++j) {
      if (!grad_in[j].defined()) continue;
      // A gradient has its value's dtype: 0-d operands of mixed precision may promote a result.
      const DType value_dtype = parents[j]->value().dtype();
      if (grad_in[j].dtype() != value_dtype && is_floating(value_dtype)) grad_in[j] = grad_in[j].to(value_dtype);
      const std::size_t p = parents[j]->index();
      if (!grads[p].defined()) {
        grads[p] = std::move(grad_in[j]);
      } else {
        if (!owned[p]) {
          grads[p] = grads[p].clone();
          owned[p] = true;
        }
        grads[p].add_(grad_in[j]);
      }
    }
  }
  return grads;
}

ModuleGraph::ModuleGraph(NodeRef root) : root_(std::move(root)) {}

std::uint64_t ModuleGraph::call_id() const { return root_.in_graph() ? root_.tape()->call_id() : 0; }

const Tape& ModuleGraph::tape() const {
  if (!root_.in_graph()) {
    throw UsageError("ModuleGraph: this result was computed without recording a graph (no_grad, or no inputs)");
  }
  return *root_.tape();
}

std::span<const std::unique_ptr<Node>> ModuleGraph::nodes() const {
  if (!root_.in_graph()) return {};
  return tape().nodes().first(root_.node()->index() + 1);
}

namespace {

void accumulate_parameter_grads(const Tape& tape, const std::vector<Tensor>& grads) {
  const auto nodes = tape.nodes();
  for (std::size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined() || nodes[i]->kind() != NodeKind::Parameter) continue;
    accumulate_grad(*static_cast<const InputNode&>(*nodes[i]).input(), grads[i]);
  }
}

}  // namespace

void ModuleGraph::back(const Tensor& seed) {
  if (capturing_effects()) detail::record_backward(root_, seed);
  vjp(seed);
  accumulate_parameter_grads(tape(), *grads_);
}

void ModuleGraph::vjp(const Tensor& seed) {
  const Tape& t = tape();
  const Node& root = *root_.node();
  if (seed.shape() != root.value().shape()) {
    throw ShapeError("back: seed of shape " + shape_str(seed.shape()) + " for a root of shape " +
                     shape_str(root.value().shape()));
  }
  // A copy: pass-through VJPs (add, reshape) would otherwise hand out views of the caller's seed.
  auto grads = backward_pass(t, root, seed.to(root.value().device()).to(root.value().dtype()).clone());
  grads_ = std::make_shared<std::vector<Tensor>>(std::move(grads));
  jacobian_mode_ = false;
}

namespace {

std::atomic<std::int64_t> max_jacobian_elements{std::int64_t{1} << 26};

// Refuses full Jacobians that would be larger than the limit, saying how to get either answer.
void check_jacobian_size(const Tape& tape, const Node& root) {
  const std::int64_t limit = max_jacobian_elements.load();
  if (limit <= 0) return;
  const std::int64_t outputs = root.value().numel();
  std::int64_t columns = 0;
  for (std::size_t i = 0; i <= root.index(); ++i) columns += tape.nodes()[i]->value().numel();
  const long double total = static_cast<long double>(outputs) * static_cast<long double>(columns);
  if (total <= static_cast<long double>(limit)) return;
  throw UsageError("back: the root of shape " + shape_str(root.value().shape()) + " is not a scalar, so back() without "
                   "a seed builds full Jacobians: " + std::to_string(outputs) + " reverse passes, storing " +
                   std::to_string(outputs) + " x " + std::to_string(columns) + " elements over the graph's " +
                   std::to_string(root.index() + 1) + " nodes, above the limit of " + std::to_string(limit) +
                   ". For a vector-Jacobian product call back(seed) with a root-shaped seed (back(ones) "
                   "differentiates the sum of the outputs; reduce to a scalar loss for ordinary gradients); "
                   "for the full Jacobian anyway raise the limit with set_jacobian_limit(n) (0: none)");
}

}  // namespace

std::int64_t jacobian_limit() { return max_jacobian_elements.load(); }
void set_jacobian_limit(std::int64_t elements) { max_jacobian_elements.store(std::max<std::int64_t>(elements, 0)); }

void ModuleGraph::back() {
  const Tape& t = tape();
  const Node& root = *root_.node();
  const Tensor& out = root.value();
  if (out.numel() == 1) {
    back(Tensor::ones(out.shape(), out.dtype(), out.device()));
    return;
  }
  if (capturing_effects()) detail::refuse_jacobians_in_capture();
  check_jacobian_size(t, root);
  // Full Jacobians: one reverse pass per output element, each a row of d(out)/d(node).
  const std::size_t end = root.index() + 1;
  auto jacobians = std::make_shared<std::vector<Tensor>>(end);
  Tensor seed = Tensor::zeros(out.shape(), out.dtype(), out.device());
  Tensor flat_seed = seed.reshape({out.numel()});
  for (std::int64_t k = 0; k < out.numel(); ++k) {
    flat_seed.slice(0, k, k + 1).fill_(1.0);
    const auto grads = backward_pass(t, root, seed);
    // NOTE: gradients may alias the seed (add's VJP passes it through); copy them out before
    // the seed changes.
    for (std::size_t i = 0; i < end; ++i) {
      if (!grads[i].defined()) continue;
      Tensor& jac = (*jacobians)[i];
      const Shape& in_shape = t.nodes()[i]->value().shape();
      if (!jac.defined()) {
        Shape shape = out.shape();
        shape.insert(shape.end(), in_shape.begin(), in_shape.end());
        jac = Tensor::zeros(shape, grads[i].dtype(), grads[i].device());
      }
      jac.reshape({out.numel(), shape_numel(in_shape)}).slice(0, k, k + 1).copy_(grads[i].reshape({1, shape_numel(in_shape)}));
    }
    flat_seed.slice(0, k, k + 1).fill_(0.0);
  }
  grads_ = std::move(jacobians);
  jacobian_mode_ = true;
}

Tensor ModuleGraph::grad_of(const Node& node, const std::string& what) const {
  if (!grads_) throw UsageError("grad(" + what + "): call back() on graph #" + std::to_string(call_id()) + " first");
  if (node.index() >= grads_->size() || &node.tape() != &tape()) {
    throw UsageError("grad(" + what + "): not part of graph #" + std::to_string(call_id()));
  }
  const Tensor& g = (*grads_)[node.index()];
  if (g.defined()) return g;
  // No path from the node to the root: the derivative is zero.
  Shape shape = jacobian_mode_ ? root_.value().shape() : Shape{};
  shape.insert(shape.end(), node.value().shape().begin(), node.value().shape().end());
  return Tensor::zeros(shape, node.value().dtype());
}

Tensor ModuleGraph::grad(const Input& input) const {
  const Node* node = tape().bound(*input.data());
  if (node == nullptr || node->index() > root_.node()->index()) {
    throw UsageError("grad(" + input.functional_name() + "): " + (input.is_parameter() ? "parameter" : "input") +
                     " '" + input.name() + "' is not part of graph #" + std::to_string(call_id()));
  }
  return grad_of(*node, input.functional_name());
}

Tensor ModuleGraph::grad(const NodeRef& node) const {
  if (!node.in_graph()) throw UsageError("grad(node): the value is a constant, not a node of graph #" + std::to_string(call_id()));
  return grad_of(*node.node(), node.node()->label());
}

}  // namespace zkynet
