#include <zkynet/framework/dot.h>
#include <zkynet/framework/error.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>

#include <cmath>
#include <utility>

namespace zkynet::nn {

namespace {

std::int64_t gates_of(RecurrentBase::Kind kind) {
  switch (kind) {
    case RecurrentBase::Kind::Lstm: return 4;
    case RecurrentBase::Kind::Gru: return 3;
    default: return 1;
  }
}

}  // namespace

RecurrentBase::RecurrentBase(std::string functional_name, Kind kind, std::int64_t input_size,
                             std::int64_t hidden_size, const RecurrentOptions& options)
    : ModuleBase(std::move(functional_name), {Variable("x")}, {}),
      kind_(kind),
      in_(input_size),
      hidden_(hidden_size),
      layers_(options.num_layers),
      bias_(options.bias),
      batch_first_(options.batch_first),
      stateful_(options.stateful) {
  if (input_size <= 0 || hidden_size <= 0 || options.num_layers <= 0) {
    throw ShapeError(describe() + ": input_size, hidden_size and num_layers must be positive (num_layers " +
                     std::to_string(options.num_layers) + ")");
  }
  if (!is_floating(options.dtype)) throw TypeError(describe() + ": dtype must be floating point");
  Generator& gen = options.generator ? *options.generator : default_generator();
  const std::int64_t rows = gates_of(kind) * hidden_size;
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  for (std::int64_t k = 0; k < layers_; ++k) {
    const std::string l = "_l" + std::to_string(k);
    std::array<Parameter*, 4> p{};
    p[0] = &register_parameter("weight_ih" + l, init::uniform({rows, k == 0 ? input_size : hidden_size}, bound, gen,
                                                              options.dtype));
    p[1] = &register_parameter("weight_hh" + l, init::uniform({rows, hidden_size}, bound, gen, options.dtype));
    if (bias_) {
      p[2] = &register_parameter("bias_ih" + l, init::uniform({rows}, bound, gen, options.dtype));
      p[3] = &register_parameter("bias_hh" + l, init::uniform({rows}, bound, gen, options.dtype));
      p[2]->is_bias(true);
      p[3]->is_bias(true);
    }
    params_by_layer_.push_back(p);
  }
}

std::string RecurrentBase::describe() const {
  return functional_name() + "(" + std::to_string(in_) + ", " + std::to_string(hidden_) + ")";
}

ModuleGraph RecurrentBase::operator()(const NodeRef& x) {
  const std::array<NodeRef, 1> args{x};
  return invoke(args);
}

ModuleGraph RecurrentBase::call_with_state(const NodeRef& x, const NodeRef& h0, const NodeRef& c0) {
  if (!h0.defined() || (kind_ == Kind::Lstm && !c0.defined())) {
    throw UsageError(describe() + ": the initial state is undefined");
  }
  explicit_state_ = {h0, c0};
  struct Clear {
    std::array<NodeRef, 2>& s;
    ~Clear() { s = {}; }
  } clear{explicit_state_};
  const std::array<NodeRef, 1> args{x};
  return invoke(args);
}

void RecurrentBase::reset_state() {
  last_ = {};
  carried_ = {};
  explicit_state_ = {};
}

void RecurrentBase::set_stateful(bool on) {
  if (stateful_ != on) touch();  // compile(): capture again (and refuse while stateful)
  stateful_ = on;
  if (!on) reset_state();
}

std::string RecurrentBase::capture_refusal() const {
  if (!stateful_) return {};
  return describe() + " is stateful: each call starts from the state the previous call left, a constant that a "
                      "replay would freeze (set_stateful(false), or pass the state as an input)";
}

void RecurrentBase::check_carried_state(const RecurrentStateValues& state) const {
  if (!stateful_) throw UsageError(describe() + ": only a stateful layer carries a state");
  const bool lstm = kind_ == Kind::Lstm;
  if (!state.h.defined()) {
    if (state.c.defined()) throw UsageError(describe() + ": a carried c without h");
    return;
  }
  if (lstm != state.c.defined()) {
    throw UsageError(describe() + (lstm ? ": an LSTM's carried state needs c as well as h"
                                        : ": only an LSTM carries c; give h only"));
  }
  const Shape& hs = state.h.shape();
  const std::int64_t batch = hs.size() == 3 ? hs[1] : 0;
  const Shape expected{layers_, batch, hidden_};
  if (hs.size() != 3 || batch < 1 || hs != expected) {
    throw ShapeError(describe() + ": carried h " + shape_str(hs) + " must be (num_layers, batch, hidden_size) = (" +
                     std::to_string(layers_) + ",batch," + std::to_string(hidden_) + ")");
  }
  if (lstm && state.c.shape() != expected) {
    throw ShapeError(describe() + ": carried c " + shape_str(state.c.shape()) + " must have h's shape " +
                     shape_str(expected));
  }
}

void RecurrentBase::set_carried_state(const RecurrentStateValues& state) {
  check_carried_state(state);
  if (!state.h.defined()) {
    reset_state();
    return;
  }
  // The layer's own dtype and device, so that the next call computes as it would have.
  const Tensor& like = params_by_layer_[0][1]->value();
  const auto adopt = [&](const Tensor& t) { return t.to(like.dtype()).to(like.device()).clone(); };
  last_ = {};
  carried_ = {adopt(state.h), state.c.defined() ? adopt(state.c) : Tensor()};
}

// Layer `layer`'s (batch, H) part of a (num_layers, batch, H) state; undefined stays undefined.
NodeRef RecurrentBase::layer_state(const NodeRef& state, std::int64_t layer, std::int64_t batch) const {
  if (!state.defined()) return NodeRef();
  // A named state (dot.h) keeps its name through the slice and reshape: drawn as one node.
  const std::string name = display_name(state);
  const auto keep_name = [&](const NodeRef& r) { return name.empty() ? r : named(r, name); };
  const NodeRef part = layers_ == 1 ? state : keep_name(op::slice(state, 0, layer, layer + 1));
  return keep_name(op::reshape(part, {batch, hidden_}));
}

NodeRef RecurrentBase::call_nodes(std::span<const NodeRef> inputs) {
  const NodeRef& x = inputs[0];
  const Shape& xs = x.shape();
  const char* layout = batch_first_ ? "(batch, seq_len, " : "(seq_len, batch, ";
  if (xs.size() != 3 || xs[2] != in_ || xs[0] == 0 || xs[1] == 0) {
    throw ShapeError(describe() + ": input " + shape_str(xs) + " must be " + layout + std::to_string(in_) +
                     ") with seq_len and batch at least 1");
  }
  const std::int64_t batch = batch_first_ ? xs[0] : xs[1];
  const Shape state_shape{layers_, batch, hidden_};
  const bool lstm = kind_ == Kind::Lstm;

  // The initial state: explicit, carried, or zeros (undefined).
  // In pictures (dot.h) a constant initial state is named "h0" / "c0", the carried one
  // "h0 (carried)" / "c0 (carried)".
  std::array<NodeRef, 2> init{};
  if (explicit_state_[0].defined()) {
    init = explicit_state_;
    for (std::size_t i = 0; i < (lstm ? 2u : 1u); ++i) {
      if (init[i].shape() != state_shape) {
        throw ShapeError(describe() + ": initial " + (i == 0 ? "h0 " : "c0 ") + shape_str(init[i].shape()) +
                         " must be (num_layers, batch, hidden_size) = " + shape_str(state_shape) + " for input " +
                         shape_str(xs));
      }
      if (!init[i].in_graph()) init[i] = named(init[i], i == 0 ? "h0" : "c0");
    }
  } else if (stateful_ && carried_.h.defined()) {
    // A layer moved or converted (Module::to) since its last call takes its carried state along.
    const Tensor& like = params_by_layer_[0][1]->value();
    if (carried_.h.device() != like.device() || carried_.h.dtype() != like.dtype()) {
      const auto adopt = [&](const Tensor& t) { return t.defined() ? t.to(like.dtype()).to(like.device()) : t; };
      carried_ = {adopt(carried_.h), adopt(carried_.c)};
    }
    if (carried_.h.shape() != state_shape) {
      throw ShapeError(describe() + ": the carried state " + shape_str(carried_.h.shape()) + " does not fit input " +
                       shape_str(xs) + " (state " + shape_str(state_shape) +
                       " needed); call reset_state() before changing the batch size");
    }
    init = {named(NodeRef(carried_.h), "h0 (carried)"), lstm ? named(NodeRef(carried_.c), "c0 (carried)") : NodeRef()};
  }

  NodeRef seq = batch_first_ ? op::transpose(x, 0, 1) : x;
  std::vector<NodeRef> hs, cs;
  for (std::int64_t k = 0; k < layers_; ++k) {
    const auto& p = params_by_layer_[static_cast<std::size_t>(k)];
    const NodeRef w_ih(*p[0]);
    const NodeRef w_hh(*p[1]);
    const NodeRef b_ih = p[2] ? NodeRef(*p[2]) : NodeRef();
    const NodeRef b_hh = p[3] ? NodeRef(*p[3]) : NodeRef();
    const NodeRef h0 = layer_state(init[0], k, batch);
    op::RecurrentResult r;
    switch (kind_) {
      case Kind::Lstm:
        r = op::lstm(seq, h0, layer_state(init[1], k, batch), w_ih, w_hh, b_ih, b_hh);
        break;
      case Kind::Gru:
        r = op::gru(seq, h0, w_ih, w_hh, b_ih, b_hh);
        break;
      case Kind::RnnTanh:
      case Kind::RnnRelu:
        r = op::rnn(seq, h0, w_ih, w_hh, b_ih, b_hh,
                    kind_ == Kind::RnnRelu ? op::RnnActivation::Relu : op::RnnActivation::Tanh);
        break;
    }
    seq = r.output;
    hs.push_back(r.h_n);
    if (lstm) cs.push_back(r.c_n);
  }

  // The last states keep the operators' names ("h_n", "c_n") in pictures.
  const auto same_name = [](const NodeRef& r, const NodeRef& like) {
    const std::string name = display_name(like);
    return name.empty() ? r : named(r, name);
  };
  auto stacked = [&](const std::vector<NodeRef>& parts) {
    return layers_ == 1 ? same_name(op::reshape(parts[0], state_shape), parts[0])
                        : same_name(op::stack(parts, 0), parts[0]);
  };
  last_ = {stacked(hs), lstm ? stacked(cs) : NodeRef()};
  if (stateful_) carried_ = {last_.h.value(), lstm ? last_.c.value() : Tensor()};
  // The output is the invocation's last node (nn::print_summary reads a layer's output shape
  // there): a transpose, or else a view of the same shape.
  return same_name(batch_first_ ? op::transpose(seq, 0, 1) : op::reshape(seq, seq.shape()), seq);
}

RNN::RNN(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options)
    : RecurrentBase("RNN", options.nonlinearity == op::RnnActivation::Relu ? Kind::RnnRelu : Kind::RnnTanh,
                    input_size, hidden_size, options) {}

namespace {
const RecurrentOptions& tanh_only(const RecurrentOptions& options, const char* layer) {
  if (options.nonlinearity != op::RnnActivation::Tanh) {
    throw UsageError(std::string(layer) + ": nonlinearity applies to RNN only");
  }
  return options;
}
}  // namespace

LSTM::LSTM(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options)
    : RecurrentBase("LSTM", Kind::Lstm, input_size, hidden_size, tanh_only(options, "LSTM")) {}

GRU::GRU(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options)
    : RecurrentBase("GRU", Kind::Gru, input_size, hidden_size, tanh_only(options, "GRU")) {}

}  // namespace zkynet::nn
