// Recurrent layers with torch.nn's semantics, parameter names and shapes: RNN (tanh or relu),
// LSTM and GRU, stacked num_layers deep.
//
//   nn::LSTM lstm(10, 64);                          // float32, torch's initialization
//   ModuleGraph out = lstm(x);                      // x (seq, batch, 10) -> (seq, batch, 64)
//   lstm.last_state().h;                            // (num_layers, batch, 64): h_n, a node of that call
//   lstm.last_state().c;                            // c_n (LSTM only)
//   ModuleGraph out2 = lstm(x, h0, c0);             // an explicit initial state, (num_layers, batch, 64) each
//
//   nn::GRU gru(10, 32, {.num_layers = 2, .batch_first = true});   // x (batch, seq, 10)
//   nn::RNN rnn(10, 32, {.nonlinearity = op::RnnActivation::Relu});
//
// Parameters, per layer k (input size I for layer 0, hidden_size H above it; G = 1 for RNN,
// 4 for LSTM, 3 for GRU): weight_ih_l{k} (G H, I_k), weight_hh_l{k} (G H, H), bias_ih_l{k} and
// bias_hh_l{k} (G H) unless bias = false; gate order LSTM (i, f, g, o), GRU (r, z, n); all drawn
// from U(-1/sqrt(H), 1/sqrt(H)) in that order, from options.generator or nn::default_generator().
//
// State. After every call the final state (h_n, and c_n for LSTM, each (num_layers, batch, H),
// batch second even when batch_first, as in torch) is kept as nodes of that call's graph:
// last_state(). Using it in the same graph differentiates through it (e.g. a classifier head on
// h_n inside an enclosing module's call). NOTE: the layer thereby keeps the last call's graph
// alive until the next call or reset_state().
//
// Truncated back-propagation through time: with `stateful` on, each call starts from the
// previous call's final state, carried as a constant (its value only: gradients stop at the
// call boundary); the first call, and the first after reset_state(), starts from zeros. Two
// stateful calls on x[0:k] and x[k:] give the values of one call on x. Without `stateful`
// each call starts from zeros. Either way a call may start from an initial state passed
// explicitly, lstm(x, h0, c0) / gru(x, h0) / rnn(x, h0): values or nodes of an enclosing call
// (then differentiated); a stateful layer then carries that call's final state on as usual.
// carried_state() / set_carried_state() read and replace the carried values; nn::states() and
// nn::load_states() (<zkynet/nn/state.h>) do it for every layer of a model.
//
// Each layer runs as one fused operator over the whole sequence (<zkynet/ops/recurrent.h>).
// Not supported (unlike torch): bidirectional, dropout, proj_size, unbatched 2-d inputs.
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/ops/recurrent.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace zkynet::nn {

struct RecurrentOptions {
  std::int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;  // x and output (batch, seq, feature) instead of (seq, batch, feature)
  bool stateful = false;     // carry the final state into the next call, detached
  op::RnnActivation nonlinearity = op::RnnActivation::Tanh;  // RNN only; LSTM and GRU refuse Relu
  DType dtype = DType::Float32;
  Generator* generator = nullptr;  // default_generator() when null
};

// A recurrent layer's state: h (num_layers, batch, hidden_size) and, for LSTM, c.
struct RecurrentState {
  NodeRef h;
  NodeRef c;  // LSTM only
};

// The same as values: the state a stateful layer carries into its next call.
struct RecurrentStateValues {
  Tensor h;
  Tensor c;  // LSTM only
};

// What RNN, LSTM and GRU share; use those.
class RecurrentBase : public ModuleBase {
 public:
  enum class Kind { RnnTanh, RnnRelu, Lstm, Gru };

  // Calls the layer on x (no explicit initial state).
  ModuleGraph operator()(const NodeRef& x);

  // The final state of the last call (undefined members before the first call and after reset_state()).
  const RecurrentState& last_state() const { return last_; }
  // Forgets the last state and the carried one: the next call starts from zeros.
  void reset_state();
  bool stateful() const { return stateful_; }
  // Turns the carry on or off; turning it off also resets the state.
  void set_stateful(bool on);
  // Stateful: the values the next call starts from (shared, not copies); undefined members
  // before the first call, after reset_state() and while not stateful.
  const RecurrentStateValues& carried_state() const { return carried_; }
  // Makes the next call start from `state` (converted to the layer's dtype and device); an
  // undefined h means zeros, as after reset_state(). last_state() is cleared: it belongs to a
  // call. UsageError unless stateful or when c is given to RNN/GRU or missing for LSTM;
  // ShapeError naming the shapes unless h (and c alike) is (num_layers, batch, hidden_size).
  void set_carried_state(const RecurrentStateValues& state);
  // Throws as set_carried_state would, changing nothing.
  void check_carried_state(const RecurrentStateValues& state) const;

  Kind kind() const { return kind_; }
  std::int64_t input_size() const { return in_; }
  std::int64_t hidden_size() const { return hidden_; }
  std::int64_t num_layers() const { return layers_; }
  bool batch_first() const { return batch_first_; }
  bool has_bias() const { return bias_; }
  // compile() (framework/compile.h) refuses a stateful layer: its carried state is a constant of
  // each call, which a replay would freeze.
  std::string capture_refusal() const override;

 protected:
  RecurrentBase(std::string functional_name, Kind kind, std::int64_t input_size, std::int64_t hidden_size,
                const RecurrentOptions& options);
  // Calls the layer from the explicit initial state (h0, c0); c0 undefined for RNN and GRU.
  ModuleGraph call_with_state(const NodeRef& x, const NodeRef& h0, const NodeRef& c0);
  NodeRef call_nodes(std::span<const NodeRef> inputs) override;

 private:
  std::string describe() const;  // "LSTM(10, 64)"
  NodeRef layer_state(const NodeRef& state, std::int64_t layer, std::int64_t batch) const;

  Kind kind_;
  std::int64_t in_, hidden_, layers_;
  bool bias_, batch_first_, stateful_;
  // Per layer: weight_ih, weight_hh, bias_ih, bias_hh (null without bias).
  std::vector<std::array<Parameter*, 4>> params_by_layer_;
  RecurrentState last_;
  RecurrentStateValues carried_;           // stateful: the values of last_, or as set
  std::array<NodeRef, 2> explicit_state_;  // the next call's explicit initial state
};

// torch.nn.RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu).
class RNN : public RecurrentBase {
 public:
  RNN(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options = {});
  using RecurrentBase::operator();
  ModuleGraph operator()(const NodeRef& x, const NodeRef& h0) { return call_with_state(x, h0, NodeRef()); }
};

// torch.nn.LSTM: gates (i, f, g, o); c' = f c + i g, h' = o tanh(c').
class LSTM : public RecurrentBase {
 public:
  LSTM(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options = {});
  using RecurrentBase::operator();
  ModuleGraph operator()(const NodeRef& x, const NodeRef& h0, const NodeRef& c0) { return call_with_state(x, h0, c0); }
};

// torch.nn.GRU: gates (r, z, n); n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h.
class GRU : public RecurrentBase {
 public:
  GRU(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options = {});
  using RecurrentBase::operator();
  ModuleGraph operator()(const NodeRef& x, const NodeRef& h0) { return call_with_state(x, h0, NodeRef()); }
};

}  // namespace zkynet::nn
