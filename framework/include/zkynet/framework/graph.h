// ModuleGraph: the grounded graph of one call, and reverse-mode differentiation over it.
//
//   SimpleModel m;                       // f(x) = (x + w) * x^2
//   ModuleGraph g = m(3.0);
//   g.value();                           // 36
//   g.back();                            // scalar root: ordinary gradients
//   g.grad(m.param("w"));                // 9
//   g.grad(m.input("x"));                // 33
//
// Without a seed, a non-scalar root gives full Jacobians shaped output.shape + input.shape
// (one reverse pass per output element), refused with a message when they would hold more than
// jacobian_limit() elements in all; back(seed) gives the vector-Jacobian product, shaped like
// each input.
// Each back() recomputes this graph's gradients and adds them once more into the
// Parameters' accumulated gradients (as PyTorch does with retain_graph=True).
#pragma once

#include <zkynet/framework/function.h>
#include <zkynet/framework/node.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace zkynet {

class ModuleGraph {
 public:
  explicit ModuleGraph(NodeRef root);

  const Tensor& value() const { return root_.value(); }
  const NodeRef& root() const { return root_; }
  operator NodeRef() const { return root_; }  // NOLINT: loss(model(x), y) is one graph
  std::uint64_t call_id() const;
  // Nodes of the call up to the root, in creation (topological) order.
  std::span<const std::unique_ptr<Node>> nodes() const;

  void back();
  void back(const Tensor& seed);
  // back(seed) for grad() to read, without adding into Parameters' accumulated gradients
  // (torch.autograd.grad's semantics; the functional transforms use it).
  void vjp(const Tensor& seed);
  bool has_gradients() const { return grads_ != nullptr; }

  // Gradient (or Jacobian) of the root with respect to an input, parameter or node.
  Tensor grad(const Input& input) const;
  Tensor grad(const NodeRef& node) const;

  friend bool operator==(const ModuleGraph& a, const ModuleGraph& b) { return a.root_ == b.root_; }

 private:
  const Tape& tape() const;
  Tensor grad_of(const Node& node, const std::string& what) const;

  NodeRef root_;
  std::shared_ptr<std::vector<Tensor>> grads_;  // by node index
  bool jacobian_mode_ = false;                  // grads_ hold Jacobians (unseeded non-scalar root)
};

// The most elements back() without a seed may store as Jacobians over a graph's nodes
// (default 2^26: 512 MiB in float64); 0 lifts the limit.
std::int64_t jacobian_limit();
void set_jacobian_limit(std::int64_t elements);

// Reverse mode over the tape's nodes up to `root`, seeded with `seed` (root-shaped).
// Returns one gradient per node index (undefined where none flowed). Exposed for tools
// that drive backward themselves (gradcheck, distributed).
std::vector<Tensor> backward_pass(const Tape& tape, const Node& root, const Tensor& seed);

}  // namespace zkynet
