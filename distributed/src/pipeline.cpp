#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/distributed/pipeline.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/indexing.h>

#include <algorithm>

namespace zkynet::dist {
namespace {

// Tags: activations of micro-batch m travel on tag 2m + 1, their shapes on tag 2m.
int shape_tag(int m) { return 2 * m; }
int activation_tag(int m) { return 2 * m + 1; }

std::pair<std::int64_t, std::int64_t> micro_batch_rows(std::int64_t rows, std::int64_t parts, std::int64_t m) {
  const std::int64_t base = rows / parts, extra = rows % parts;
  const std::int64_t begin = m * base + std::min(m, extra);
  return {begin, begin + base + (m < extra ? 1 : 0)};
}

}  // namespace

Pipeline::Pipeline(nn::Sequential& model, PipelineOptions options, Communicator comm)
    : model_(model), options_(std::move(options)), comm_(std::move(comm)) {
  const std::size_t layers = model_.size();
  const auto stages = static_cast<std::size_t>(comm_.size());
  std::vector<std::size_t> starts = options_.stage_starts;
  if (starts.empty()) {
    for (std::size_t s = 1; s < stages; ++s) starts.push_back(s * layers / stages);
  }
  if (starts.size() + 1 != stages) {
    throw UsageError("Pipeline: " + std::to_string(starts.size() + 1) + " stages for " + std::to_string(stages) +
                     " ranks of " + comm_.name() + "; give one stage start per rank after the first");
  }
  starts.insert(starts.begin(), 0);
  starts.push_back(layers);
  for (std::size_t s = 0; s < stages; ++s) {
    if (starts[s] >= starts[s + 1]) {
      throw UsageError("Pipeline: stage " + std::to_string(s) + " would hold no layers (" + std::to_string(layers) +
                       " layers over " + std::to_string(stages) + " ranks)");
    }
  }
  if (options_.micro_batches < 1) throw UsageError("Pipeline: micro_batches must be at least 1");
  begin_ = starts[static_cast<std::size_t>(stage())];
  end_ = starts[static_cast<std::size_t>(stage()) + 1];
}

std::vector<Parameter> Pipeline::parameters() const {
  std::vector<Parameter> out;
  for (std::size_t i = begin_; i < end_; ++i) {
    for (const Parameter& p : model_[i].parameters()) out.push_back(p);
  }
  return out;
}

NodeRef Pipeline::run_stage(const NodeRef& input) {
  NodeRef h = input;
  for (std::size_t i = begin_; i < end_; ++i) {
    const std::array<NodeRef, 1> args{h};
    h = model_[i].invoke(args).root();
  }
  return h;
}

// The next stage learns each activation's shape and dtype from a small message before the
// data: [ndim, dims..., 0 padding, dtype].
constexpr std::int64_t kHeader = 18;

void Pipeline::send_shape(const Tensor& activation, int micro_batch) {
  std::vector<std::int64_t> dims(activation.shape().begin(), activation.shape().end());
  dims.insert(dims.begin(), static_cast<std::int64_t>(dims.size()));
  dims.resize(kHeader, 0);
  dims[kHeader - 1] = static_cast<std::int64_t>(activation.dtype());
  NoGradGuard no_graph;
  send(Tensor::from_vector(dims, {kHeader}), stage() + 1, shape_tag(micro_batch), comm_);
}

NodeRef Pipeline::receive_activation(int micro_batch) {
  Tensor dims;
  {
    NoGradGuard no_graph;
    dims = recv(Tensor::zeros({kHeader}, DType::Int64), stage() - 1, shape_tag(micro_batch), comm_).value();
  }
  const std::int64_t* d = dims.data<std::int64_t>();
  const Shape shape(d + 1, d + 1 + d[0]);
  const auto dtype = static_cast<DType>(d[kHeader - 1]);
  return recv(Tensor::empty(shape, dtype), stage() - 1, activation_tag(micro_batch), comm_);
}

double Pipeline::train_step(const Tensor& x, const Tensor& y, const Loss& loss) {
  const std::int64_t rows = is_first() ? x.size(0) : is_last() ? y.size(0) : 0;
  const std::int64_t parts = options_.micro_batches;
  // The step is one call of a module without inputs ("stage s (Pipeline)"), each micro-batch
  // a call inside it ("micro-batch m (MicroBatch)"), so that the graph's picture shows the
  // stage and its micro-batches, in order, each from its input (x's rows, or the received
  // activation) to its output (the send, or the stage's output).
  Lambda step({}, [&](std::span<const NodeRef>) -> NodeRef {
    std::vector<NodeRef> sends, outputs;
    for (int m = 0; m < parts; ++m) {
      const auto [b, e] = micro_batch_rows(rows, parts, m);
      Lambda micro(is_first() ? std::vector<std::string>{"x"} : std::vector<std::string>{},
                   [&](std::span<const NodeRef> in) -> NodeRef {
                     const NodeRef h = run_stage(is_first() ? in[0] : receive_activation(m));
                     if (is_last()) return h;
                     send_shape(h.value(), m);
                     return send(h, stage() + 1, activation_tag(m), comm_);
                   },
                   "MicroBatch");
      micro.set_name("micro-batch " + std::to_string(m));
      NodeRef out;
      if (is_first()) {
        micro.input("x").requires_grad(false);
        out = micro(x.slice(0, b, e)).root();
      } else {
        out = micro().root();
      }
      if (!is_last()) {
        sends.push_back(out);
      } else if (e > b) {
        outputs.push_back(out);  // fewer rows than micro-batches: an empty one adds nothing
      }
    }
    // One loss over the whole batch, the micro-batches' outputs joined in order: exactly the
    // plain model's loss and gradients whatever the loss's reduction (mean, sum, or other).
    if (is_last() && !outputs.empty()) {
      return loss(outputs.size() == 1 ? outputs[0] : op::concat(outputs, 0), NodeRef(y));
    }
    // No loss here (or only empty micro-batches): a zero root that joins the sends.
    return join_dummies(NodeRef(Tensor::scalar(0.0, DType::Float32)), sends);
  }, "Pipeline");
  step.set_name("stage " + std::to_string(stage()));
  graph_ = step();
  graph_->back();
  Tensor value = Tensor::scalar(is_last() ? graph_->value().item() : 0.0);
  bcast_(value, stages() - 1, comm_);
  return value.item();
}

Tensor Pipeline::predict(const Tensor& x) {
  NoGradGuard no_graph;
  NodeRef h = is_first() ? NodeRef(x) : receive_activation(0);
  h = run_stage(h);
  if (is_last()) return h.value();
  send_shape(h.value(), 0);
  send(h, stage() + 1, activation_tag(0), comm_);
  return Tensor();
}

}  // namespace zkynet::dist
