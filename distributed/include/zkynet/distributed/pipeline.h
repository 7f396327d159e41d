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
//
// As DaggerFlux's pullback, a step can also give the gradient with respect to the batch's
// input, and the pieces spread over the stages can be collected under the plain model's names:
//
//   dist::Pipeline pipe(mlp, {.micro_batches = 4, .input_requires_grad = true});
//   pipe.train_step(x, y, loss);
//   Tensor dx = pipe.input_grad();                               // first stage: d loss / d x
//   auto grads = pipe.gradients(0);            // on rank 0: {{"0.weight", dW}, ...}; nullopt elsewhere
//   Tensor out = pipe.predict(x, dist::Pipeline::kAllRanks);     // the output on every rank
#pragma once

#include <zkynet/distributed/communicator.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace zkynet::nn {
class Sequential;
}

namespace zkynet::dist {

struct PipelineOptions {
  std::int64_t micro_batches = 4;
  // Index of the first layer of each stage after the first; empty: layers split evenly.
  std::vector<std::size_t> stage_starts = {};
  // Keep the gradient with respect to train_step's x (input_grad()); off, x's micro-batches
  // record no gradient and cost nothing more.
  bool input_requires_grad = false;
};

class Pipeline {
 public:
  using Loss = std::function<NodeRef(const NodeRef& output, const NodeRef& target)>;
  using NamedGradients = std::vector<std::pair<std::string, Tensor>>;
  // Where predict() and gradients() deliver their result: a rank of the communicator, or one
  // of these.
  static constexpr int kAllRanks = -1;
  static constexpr int kLastStage = -2;

  explicit Pipeline(nn::Sequential& model, PipelineOptions options = {}, Communicator comm = world());

  // Forward and backward of one batch on every stage; gradients accumulate into this stage's
  // parameters. x is read on the first stage, y on the last (other ranks may pass empty
  // tensors of any shape). The last stage applies `loss` once, to the micro-batches' outputs
  // joined in order and the whole y: the loss and gradients are the plain model's, whatever
  // the loss's reduction (mean, sum). The loss is returned on every rank.
  double train_step(const Tensor& x, const Tensor& y, const Loss& loss);
  // The gradient of the last train_step's loss with respect to its x, the micro-batches'
  // gradients joined in row order: the plain model's graph.grad(x), x's shape. On the first
  // stage; an undefined tensor on the others. A UsageError (on every rank) when the Pipeline
  // was built without input_requires_grad or before the first train_step.
  Tensor input_grad() const;
  // Every parameter's gradient of the whole model, keyed and ordered as the plain model's
  // named_parameters() ("0.weight", "0.bias", "2.weight", ...), copied from the stage that
  // holds it; a parameter without a gradient gives zeros of its shape. Delivered to `root`
  // (nullopt on the other ranks), or to every rank with kAllRanks. Every rank calls it.
  std::optional<NamedGradients> gradients(int root = kAllRanks);
  // Forward only (no graph), the whole batch at once: the model's output, delivered to
  // `deliver_to` (by default the last stage, where it is computed), or to every rank with
  // kAllRanks; an undefined tensor on the ranks it is not delivered to. Every rank calls it.
  Tensor predict(const Tensor& x, int deliver_to = kLastStage);

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
  int delivery_rank(int deliver_to, const char* method, const char* argument) const;
  Tensor deliver(const Tensor& output, int to);
  std::vector<int> owner_stages(const std::vector<std::pair<std::string, Parameter>>& named) const;
  Tensor join_input_grads(const Tensor& x, const std::vector<NodeRef>& micro_inputs) const;

  nn::Sequential& model_;
  PipelineOptions options_;
  Communicator comm_;
  std::vector<std::size_t> stage_starts_;  // first layer of each stage, then the layer count
  std::size_t begin_ = 0, end_ = 0;
  std::optional<ModuleGraph> graph_;
  Tensor input_grad_;  // the first stage's, when input_requires_grad
};

}  // namespace zkynet::dist
