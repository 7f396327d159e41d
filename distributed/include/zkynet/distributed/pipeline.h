// Pipeline (model) parallel training: a Sequential cut into stages, one stage per rank,
// micro-batches on a GPipe schedule (all forwards, then all backwards), activations and
// their gradients carried by the differentiable send / recv operators.
//
//   nn::Sequential mlp = ...;                        // built identically on every rank
//   dist::Pipeline pipe(mlp, {.micro_batches = 4});  // stages split evenly over the ranks
//   optim::SGD opt(pipe.parameters(), {.lr = 0.1});  // this rank's stage only
//   opt.zero_grad();
//   double loss = pipe.train_step(x, y, [](const NodeRef& out, const NodeRef& y) { return op::cross_entropy(out, y); });
//   opt.step();
#pragma once

#include <zkynet/distributed/communicator.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace zkynet::nn {
class Sequential;
}

namespace zkynet::dist {

struct PipelineOptions {
  std::int64_t micro_batches = 4;
  // Index of the first layer of each stage after the first; empty: layers split evenly.
  std::vector<std::size_t> stage_starts = {};
};

class Pipeline {
 public:
  using Loss = std::function<NodeRef(const NodeRef& output, const NodeRef& target)>;

  explicit Pipeline(nn::Sequential& model, PipelineOptions options = {}, Communicator comm = world());

  // Forward and backward of one batch on every stage; gradients accumulate into this stage's
  // parameters. x is read on the first stage, y on the last (other ranks may pass empty
  // tensors of any shape). The last stage applies `loss` once, to the micro-batches' outputs
  // joined in order and the whole y: the loss and gradients are the plain model's, whatever
  // the loss's reduction (mean, sum). The loss is returned on every rank.
  double train_step(const Tensor& x, const Tensor& y, const Loss& loss);
  // Forward only (no graph); the last stage's output, returned on the last stage (an
  // undefined tensor elsewhere).
  Tensor predict(const Tensor& x);

  int stage() const { return comm_.rank(); }
  int stages() const { return comm_.size(); }
  bool is_first() const { return stage() == 0; }
  bool is_last() const { return stage() == stages() - 1; }
  // Layers [begin, end) of this rank's stage.
  std::pair<std::size_t, std::size_t> layers() const { return {begin_, end_}; }
  std::vector<Parameter> parameters() const;
  // This rank's graph of the last train_step (for DOT export).
  const std::optional<ModuleGraph>& last_graph() const { return graph_; }

 private:
  NodeRef run_stage(const NodeRef& input);
  NodeRef receive_activation(int micro_batch);
  void send_shape(const Tensor& activation, int micro_batch);

  nn::Sequential& model_;
  PipelineOptions options_;
  Communicator comm_;
  std::size_t begin_ = 0, end_ = 0;
  std::optional<ModuleGraph> graph_;
};

}  // namespace zkynet::dist
