// Nodes of a grounded computational graph, and NodeRef, the handle user code computes with.
//
// One call of a module records one Tape: a flat list of InputNodes and OperatorNodes in
// creation (hence topological) order. Nodes point at their parents by raw pointer; the
// tape owns them all, and every NodeRef or ModuleGraph keeps its tape alive. Dropping the
// last handle frees the whole graph at once: no reference cycles are possible.
//
//   NodeRef y = op::mult(x, x);   // inside a module's call(): records an OperatorNode
//   y.value();                    // the forward result, computed eagerly
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace zkynet {

class Input;
class Tape;
struct InputData;

enum class NodeKind : std::uint8_t { Variable, Parameter, Constant, Operator };

class Node {
 public:
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const Tensor& value() const { return value_; }
  NodeKind kind() const { return kind_; }
  bool requires_grad() const { return requires_grad_; }
  std::size_t index() const { return index_; }      // creation position in the tape
  int invocation() const { return invocation_; }    // module invocation that created it, -1: none
  Tape& tape() const { return *tape_; }
  std::uint64_t call_id() const;
  virtual std::string label() const = 0;  // an input's name or an operator's name
  // The value's storage version when the node was recorded; back() refuses a value written
  // in place since (it would differentiate at a point the forward pass never saw).
  std::uint64_t recorded_version() const { return recorded_version_; }

 protected:
  Node(Tape& tape, Tensor value, NodeKind kind, bool requires_grad);

 private:
  friend class Tape;
  Tensor value_;
  std::uint64_t recorded_version_;
  Tape* tape_;
  std::size_t index_ = 0;
  int invocation_ = -1;
  NodeKind kind_;
  bool requires_grad_;
};

// A leaf: the grounding of a Variable or Parameter in one call, or a constant operand.
class InputNode final : public Node {
 public:
  InputNode(Tape& tape, Tensor value, NodeKind kind, std::shared_ptr<InputData> input, bool requires_grad);
  std::string label() const override;
  // The Input this node grounds; null for constants.
  const std::shared_ptr<InputData>& input() const { return input_; }

 private:
  std::shared_ptr<InputData> input_;
};

// Gradients of an operator's inputs, given the gradient of its output.
class OperatorNode : public Node {
 public:
  std::span<Node* const> parents() const { return parents_; }
  std::string label() const override { return std::string(op_name()); }
  virtual std::string_view op_name() const = 0;
  // Writes d(objective)/d(parent i) into grad_in[i] for each parent that requires a gradient;
  // others may stay undefined. grad_out has this node's shape and dtype.
  virtual void backward(const Tensor& grad_out, std::span<Tensor> grad_in) const = 0;
  // Communication operators answer true: backward visits them even when no gradient
  // reached them (with zeros), so that every rank runs the same collectives.
  virtual bool visit_without_gradient() const { return false; }
  // Capture and replay (compile.h): the operator's forward run again on its parents' current
  // values, with the attributes it was recorded with. Tape::replay() stores the result.
  virtual Tensor recompute() = 0;
  // Why a replay of this node would not compute what a new call computes (dropout's random
  // mask, drawn once per call), "" when it would: compile() refuses to capture such a graph.
  virtual std::string_view capture_refusal() const { return {}; }
  // True when the forward changes state besides its result (batch_norm's running statistics in
  // training mode, a collective): dead-node elimination (compile.h) replays such a node even
  // when nothing reads its value.
  virtual bool has_side_effects() const { return visit_without_gradient(); }
  // Common subexpressions (compile.h): true when `other` is the same operator with equal
  // attributes, so that on the same parents it computes the same value. False unless known.
  virtual bool same_operation(const OperatorNode& other) const {
    (void)other;
    return false;
  }
  // False for an argument declared non-differentiable (Yota's @nodiff, JAX's nondiff_argnums):
  // no gradient flows to it, and it alone does not make the output require one.
  bool differentiable(std::size_t parent) const { return parent >= 64 || ((nondiff_ >> parent) & 1U) == 0; }
  // Whether backward must produce parent i's gradient.
  bool needs_grad(std::size_t parent) const { return differentiable(parent) && parents_[parent]->requires_grad(); }

 protected:
  // communicates: a communication operator. Its output may depend on other ranks'
  // parameters, so it requires a gradient even when its local inputs do not.
  // nondiff: bit i set when argument i is not differentiable (arguments 0..63).
  OperatorNode(Tape& tape, Tensor value, std::vector<Node*> parents, bool communicates = false,
               std::uint64_t nondiff = 0);

 private:
  std::vector<Node*> parents_;
  std::uint64_t nondiff_;
};

// The nondiff bits of OperatorNode for a list of argument indices; UsageError (naming `op`)
// for an index >= 64 or >= arity.
std::uint64_t nondiff_mask(std::string_view op, std::span<const std::size_t> arguments, std::size_t arity);

// One record per module invocation in a call; DOT export draws each as a cluster.
struct Invocation {
  std::string name;             // the module's name (its attribute name when registered)
  std::string functional_name;  // the module's type
  int parent = -1;              // the invocation that made this call, -1 at top level
};

// The flat node list of one call (a ModuleGraph is a root in it).
class Tape {
 public:
  explicit Tape(std::uint64_t call_id) : call_id_(call_id) {}
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  std::uint64_t call_id() const { return call_id_; }
  std::span<const std::unique_ptr<Node>> nodes() const { return nodes_; }
  const std::vector<Invocation>& invocations() const { return invocations_; }
  int current_invocation() const { return current_invocation_; }

  template <class N, class... Args>
  N* make(Args&&... args) {
    auto node = std::make_unique<N>(*this, std::forward<Args>(args)...);
    N* raw = node.get();
    adopt(std::move(node));
    return raw;
  }

  // The node an Input is bound to in this call, or null.
  Node* bound(const InputData& input) const;
  void bind(const InputData& input, Node* node);

  // Capture and replay (compile.h). set_value gives a leaf (an input, parameter or constant)
  // the value a replay runs with; replay() then recomputes every operator node from its
  // parents' values in tape order. Each stored value's storage version is recorded anew, so
  // back()'s check for in-place writes judges against the replay. Node objects are reused:
  // values of the previous run (and every NodeRef/ModuleGraph on this tape) are overwritten.
  void set_value(Node& node, Tensor value);
  void replay();

  int open_invocation(std::string name, std::string functional_name);
  void close_invocation(int previous) { current_invocation_ = previous; }

  // A node's name in graph pictures (to_dot), e.g. a recurrent layer's "h_n"; "" when it has
  // none. Set through zkynet::named() (dot.h).
  const std::string& display_name(const Node& node) const {
    static const std::string none;
    auto it = display_names_.find(node.index());
    return it == display_names_.end() ? none : it->second;
  }
  void set_display_name(const Node& node, std::string name) { display_names_[node.index()] = std::move(name); }

 private:
  void adopt(std::unique_ptr<Node> node);

  std::uint64_t call_id_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::uint64_t, Node*> bindings_;  // Input uid -> node
  std::vector<Invocation> invocations_;
  int current_invocation_ = -1;
  std::unordered_map<std::size_t, std::string> display_names_;  // node index -> name, for pictures
};

// A value in a computation: a node of some call's graph, or a constant outside any graph.
class NodeRef {
 public:
  NodeRef() = default;
  NodeRef(Tensor constant);  // NOLINT: constants mix freely with nodes: op::add(x, 2.0)
  NodeRef(double constant);  // NOLINT
  NodeRef(const Input& input);  // NOLINT: the input's node in the active call
  NodeRef(std::shared_ptr<Tape> tape, Node* node) : tape_(std::move(tape)), node_(node) {}

  bool defined() const { return node_ != nullptr || constant_.defined(); }
  const Tensor& value() const;
  const Shape& shape() const { return value().shape(); }
  DType dtype() const { return value().dtype(); }
  Node* node() const { return node_; }
  const std::shared_ptr<Tape>& tape() const { return tape_; }
  bool in_graph() const { return node_ != nullptr; }

  friend bool operator==(const NodeRef& a, const NodeRef& b) {
    return a.node_ == b.node_ && (a.node_ != nullptr || a.constant_.shares_storage_with(b.constant_));
  }

 private:
  std::shared_ptr<Tape> tape_;
  Node* node_ = nullptr;
  Tensor constant_;
};

}  // namespace zkynet
