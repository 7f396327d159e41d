#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/distributed/pipeline.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/indexing.h>

#include <algorithm>
#include <unordered_map>

namespace zkynet::dist {
namespace {

// Tags: a result delivered by predict() on tags 0 (its shape) and 1; gathered gradients on
// tag 2; micro-batch m's activations on tag 2m + 4, their shapes on tag 2m + 3.
constexpr int kResultShapeTag = 0, kResultTag = 1, kGradientTag = 2;
int shape_tag(int m) { return 2 * m + 3; }
int activation_tag(int m) { return 2 * m + 4; }

// A tensor's shape and dtype, sent before its data to a rank that cannot know them:
// [ndim, dims..., 0 padding, dtype].
constexpr std::int64_t kHeader = 18;

Tensor header_of(const Tensor& t) {
  if (t.dim() > kHeader - 2) {
    throw ShapeError("Pipeline: a " + std::to_string(t.dim()) + "-d tensor cannot travel between stages (at most " +
                     std::to_string(kHeader - 2) + " dimensions)");
  }
  std::vector<std::int64_t> header(t.shape().begin(), t.shape().end());
  header.insert(header.begin(), t.dim());
  header.resize(kHeader, 0);
  header[kHeader - 1] = static_cast<std::int64_t>(t.dtype());
  return Tensor::from_vector(header, {kHeader});
}

Tensor empty_header() { return Tensor::zeros({kHeader}, DType::Int64); }

// An uninitialized tensor of the shape and dtype a header describes (a buffer to receive into;
// recv returns the message on the buffer's device).
Tensor empty_like_header(const Tensor& header, Device device = {}) {
  const std::int64_t* h = header.data<std::int64_t>();
  return Tensor::empty(Shape(h + 1, h + 1 + h[0]), static_cast<DType>(h[kHeader - 1]), device);
}

// Plain-tensor messages, outside any graph.
void send_tensor(const Tensor& t, int dest, int tag, const Communicator& comm) {
  NoGradGuard no_graph;
  send(NodeRef(t), dest, tag, comm);
}

Tensor recv_tensor(const Tensor& buffer, int source, int tag, const Communicator& comm) {
  NoGradGuard no_graph;
  return recv(NodeRef(buffer), source, tag, comm).value();
}

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
  stage_starts_ = starts;
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

void Pipeline::send_shape(const Tensor& activation, int micro_batch) {
  send_tensor(header_of(activation), stage() + 1, shape_tag(micro_batch), comm_);
}

// Activations arrive on the device of the stage's first parameter (the CPU without one).
NodeRef Pipeline::receive_activation(int micro_batch) {
  const Tensor header = recv_tensor(empty_header(), stage() - 1, shape_tag(micro_batch), comm_);
  const std::vector<Parameter> params = parameters();
  const Device device = params.empty() ? Device::cpu() : params.front().value().device();
  return recv(empty_like_header(header, device), stage() - 1, activation_tag(micro_batch), comm_);
}

double Pipeline::train_step(const Tensor& x, const Tensor& y, const Loss& loss) {
  const std::int64_t rows = is_first() ? x.size(0) : is_last() ? y.size(0) : 0;
  const std::int64_t parts = options_.micro_batches;
  const bool keep_input_grad = is_first() && options_.input_requires_grad;
  std::vector<NodeRef> micro_inputs;  // x's rows of each micro-batch, when keep_input_grad
  input_grad_ = Tensor();
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
                     if (keep_input_grad) micro_inputs.push_back(in[0]);
                     const NodeRef h = run_stage(is_first() ? in[0] : receive_activation(m));
                     if (is_last()) return h;
                     send_shape(h.value(), m);
                     return send(h, stage() + 1, activation_tag(m), comm_);
                   },
                   "MicroBatch");
      micro.set_name("micro-batch " + std::to_string(m));
      NodeRef out;
      if (is_first()) {
        micro.input("x").requires_grad(keep_input_grad);
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
  if (keep_input_grad) input_grad_ = join_input_grads(x, micro_inputs);
  Tensor value = Tensor::scalar(is_last() ? graph_->value().item() : 0.0);
  bcast_(value, stages() - 1, comm_);
  return value.item();
}

// The micro-batches' input gradients, each written into its rows of one tensor shaped as x.
Tensor Pipeline::join_input_grads(const Tensor& x, const std::vector<NodeRef>& micro_inputs) const {
  Tensor joined = Tensor::empty(x.shape(), x.dtype(), x.device());
  for (std::size_t m = 0; m < micro_inputs.size(); ++m) {
    const auto [b, e] = micro_batch_rows(x.size(0), options_.micro_batches, static_cast<std::int64_t>(m));
    if (e > b) joined.slice(0, b, e).copy_(graph_->grad(micro_inputs[m]));
  }
  return joined;
}

Tensor Pipeline::input_grad() const {
  if (!options_.input_requires_grad) {
    throw UsageError("Pipeline.input_grad: the input's gradient was not kept; build the Pipeline with "
                     "input_requires_grad = true");
  }
  if (!graph_) throw UsageError("Pipeline.input_grad: no train_step has run yet");
  return input_grad_;
}

int Pipeline::delivery_rank(int deliver_to, const char* method, const char* argument) const {
  if (deliver_to == kLastStage) return stages() - 1;
  if (deliver_to == kAllRanks || (deliver_to >= 0 && deliver_to < stages())) return deliver_to;
  throw UsageError("Pipeline." + std::string(method) + ": " + argument + " " + std::to_string(deliver_to) +
                   " is not a rank of " + comm_.name() + " (" + std::to_string(stages()) +
                   " ranks), nor kAllRanks (-1) or kLastStage (-2)");
}

// The last stage's output moved to rank `to`, or to every rank with kAllRanks.
Tensor Pipeline::deliver(const Tensor& output, int to) {
  const int last = stages() - 1;
  if (to == last) return output;
  if (to == kAllRanks) {
    Tensor header = is_last() ? header_of(output) : empty_header();
    bcast_(header, last, comm_);
    Tensor everywhere = is_last() ? output.contiguous() : empty_like_header(header);
    bcast_(everywhere, last, comm_);
    return everywhere;
  }
  if (is_last()) {
    send_tensor(header_of(output), to, kResultShapeTag, comm_);
    send_tensor(output, to, kResultTag, comm_);
  } else if (stage() == to) {
    const Tensor header = recv_tensor(empty_header(), last, kResultShapeTag, comm_);
    return recv_tensor(empty_like_header(header), last, kResultTag, comm_);
  }
  return Tensor();
}

Tensor Pipeline::predict(const Tensor& x, int deliver_to) {
  const int to = delivery_rank(deliver_to, "predict", "deliver_to");
  Tensor output;
  {
    NoGradGuard no_graph;
    NodeRef h = is_first() ? NodeRef(x) : receive_activation(0);
    h = run_stage(h);
    if (is_last()) {
      output = h.value();
    } else {
      send_shape(h.value(), 0);
      send(h, stage() + 1, activation_tag(0), comm_);
    }
  }
  return deliver(output, to);
}

namespace {

// The parameters one stage holds, of one dtype: they travel as one flat buffer.
struct GradientGroup {
  int owner = 0;
  DType dtype = DType::Float64;
  std::vector<std::size_t> indices;  // into named_parameters()
  std::int64_t numel = 0;
};

// Parameters in named_parameters() order, grouped by (stage, dtype) in order of first
// appearance. Every rank builds the same model, so every rank plans the same groups.
std::vector<GradientGroup> plan_gradient_groups(const std::vector<std::pair<std::string, Parameter>>& named,
                                                const std::vector<int>& owners) {
  std::vector<GradientGroup> groups;
  for (std::size_t i = 0; i < named.size(); ++i) {
    const Tensor& value = named[i].second.value();
    auto it = std::find_if(groups.begin(), groups.end(), [&](const GradientGroup& g) {
      return g.owner == owners[i] && g.dtype == value.dtype();
    });
    if (it == groups.end()) it = groups.insert(groups.end(), GradientGroup{owners[i], value.dtype(), {}, 0});
    it->indices.push_back(i);
    it->numel += value.numel();
  }
  return groups;
}

// The group's gradients in one flat buffer; a missing gradient counts as zeros.
Tensor pack_gradients(const GradientGroup& group, const std::vector<std::pair<std::string, Parameter>>& named) {
  Tensor flat = Tensor::empty({group.numel}, group.dtype);
  std::int64_t at = 0;
  for (std::size_t i : group.indices) {
    const Parameter& p = named[i].second;
    const std::int64_t n = p.value().numel();
    Tensor part = flat.slice(0, at, at + n).reshape(p.value().shape());
    if (p.grad().defined()) {
      part.copy_(p.grad());
    } else {
      part.fill_(0.0);
    }
    at += n;
  }
  return flat;
}

}  // namespace

// For each of named_parameters(), the stage whose layers hold it (the first, if shared).
std::vector<int> Pipeline::owner_stages(const std::vector<std::pair<std::string, Parameter>>& named) const {
  std::unordered_map<std::uint64_t, int> owner_of;
  for (std::size_t s = 0; s + 1 < stage_starts_.size(); ++s) {
    for (std::size_t layer = stage_starts_[s]; layer < stage_starts_[s + 1]; ++layer) {
      for (const Parameter& p : model_[layer].parameters()) owner_of.try_emplace(p.uid(), static_cast<int>(s));
    }
  }
  std::vector<int> owners;
  for (const auto& [name, p] : named) {
    const auto it = owner_of.find(p.uid());
    if (it == owner_of.end()) {
      throw UsageError("Pipeline.gradients: parameter '" + name + "' belongs to no layer of the Sequential");
    }
    owners.push_back(it->second);
  }
  return owners;
}

std::optional<Pipeline::NamedGradients> Pipeline::gradients(int root) {
  const int to = delivery_rank(root, "gradients", "root");
  const bool receives = to == kAllRanks || to == stage();
  const auto named = model_.named_parameters();
  NamedGradients gathered(named.size());
  for (const GradientGroup& group : plan_gradient_groups(named, owner_stages(named))) {
    const bool owns = group.owner == stage();
    if (!owns && !receives) continue;
    Tensor flat = owns ? pack_gradients(group, named) : Tensor::empty({group.numel}, group.dtype);
    if (to == kAllRanks) {
      bcast_(flat, group.owner, comm_);
    } else if (to != group.owner) {
      if (owns) {
        send_tensor(flat, to, kGradientTag, comm_);
      } else {
        flat = recv_tensor(flat, group.owner, kGradientTag, comm_);
      }
    }
    if (!receives) continue;
    std::int64_t at = 0;
    for (std::size_t i : group.indices) {
      const Tensor& value = named[i].second.value();
      gathered[i] = {named[i].first, flat.slice(0, at, at + value.numel()).reshape(value.shape())};
      at += value.numel();
    }
  }
  if (!receives) return std::nullopt;
  return gathered;
}

}  // namespace zkynet::dist
