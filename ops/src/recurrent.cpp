// Fused recurrent operators (rnn, lstm, gru): forward and back-propagation through time, the
// loops in kernels/recurrent.cpp and kernels/cuda/recurrent.cu. Each operator's
// definition keeps what its backward needs (kernels::RecurrentSaved), freed with its graph.
#include <zkynet/framework/dot.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/recurrent.h>

#include "kernels/recurrent.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace zkynet::op {
namespace {

using Cell = kernels::RecurrentCell;
using kernels::cell_name;
using kernels::gate_count;

// ---- shapes -------------------------------------------------------------------------------

// in: x, h0, c0 (lstm only, else null), w_ih, w_hh, b_ih, b_hh.
void check_operands(Cell cell, const std::array<const Tensor*, 7>& in) {
  const std::string name(cell_name(cell));
  const Tensor& x = *in[0];
  const Tensor& w_ih = *in[3];
  const Tensor& w_hh = *in[4];
  static constexpr std::array<const char*, 7> names{"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"};
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (!in[i]) continue;
    if (!is_floating(in[i]->dtype())) {
      throw TypeError(name + ": " + names[i] + " must be floating point, got " +
                      std::string(dtype_name(in[i]->dtype())));
    }
    if (in[i]->dtype() != x.dtype()) {
      throw TypeError(name + ": " + names[i] + " is " + std::string(dtype_name(in[i]->dtype())) + " but x is " +
                      std::string(dtype_name(x.dtype())));
    }
  }
  if (x.dim() != 3 || x.size(0) == 0 || x.size(1) == 0) {
    throw ShapeError(name + ": x " + shape_str(x.shape()) +
                     " must be (seq_len, batch, input_size) with seq_len and batch at least 1");
  }
  const std::int64_t g = gate_count(cell);
  if (w_hh.dim() != 2 || w_hh.size(1) == 0 || w_hh.size(0) != g * w_hh.size(1)) {
    throw ShapeError(name + ": w_hh " + shape_str(w_hh.shape()) + " must be (" + std::to_string(g) +
                     " hidden_size, hidden_size)");
  }
  const std::int64_t hidden = w_hh.size(1);
  if (w_ih.dim() != 2 || w_ih.size(0) != g * hidden || w_ih.size(1) != x.size(2)) {
    throw ShapeError(name + ": w_ih " + shape_str(w_ih.shape()) + " must be (" + std::to_string(g * hidden) + ", " +
                     std::to_string(x.size(2)) + ") for x " + shape_str(x.shape()) + " and w_hh " +
                     shape_str(w_hh.shape()));
  }
  for (std::size_t i : {std::size_t{5}, std::size_t{6}}) {
    if (in[i]->shape() != Shape{g * hidden}) {
      throw ShapeError(name + ": " + names[i] + " " + shape_str(in[i]->shape()) + " must be (" +
                       std::to_string(g * hidden) + ",) for w_hh " + shape_str(w_hh.shape()));
    }
  }
  const Shape state{x.size(1), hidden};
  for (std::size_t i : {std::size_t{1}, std::size_t{2}}) {
    if (in[i] && in[i]->shape() != state) {
      throw ShapeError(name + ": " + names[i] + " " + shape_str(in[i]->shape()) + " must be (batch, hidden_size) = " +
                       shape_str(state) + " for x " + shape_str(x.shape()) + " and w_hh " + shape_str(w_hh.shape()));
    }
  }
}

// ---- forward and VJP ----------------------------------------------------------------------

Tensor recurrent_forward(Cell cell, const std::array<const Tensor*, 7>& in, kernels::RecurrentSaved& s) {
  check_operands(cell, in);
  return kernels::recurrent_forward(cell, *in[0], *in[1], in[2] ? *in[2] : Tensor(), *in[3], *in[4], *in[5], *in[6], s);
}

template <std::size_t K>
std::array<Tensor, K> recurrent_vjp(Cell cell, const VjpContext<K>& c, const kernels::RecurrentSaved& s) {
  // K == 7 (lstm: x h0 c0 w_ih w_hh b_ih b_hh) or 6 (no c0).
  std::array<bool, 7> needs{};
  for (std::size_t i = 0, k = 0; i < 7; ++i) {
    if (K == 6 && i == 2) continue;
    needs[i] = c.needs[k];
    ++k;
  }
  const std::size_t w = K == 7 ? 3 : 2;  // w_ih's position among the inputs
  std::array<Tensor, 7> g = kernels::recurrent_backward(cell, c.grad, c.in(w), c.in(w + 1), needs, s);
  std::array<Tensor, K> out;
  for (std::size_t i = 0, k = 0; i < 7; ++i) {
    if (K == 6 && i == 2) continue;
    out[k++] = std::move(g[i]);
  }
  return out;
}

// ---- operator definitions -----------------------------------------------------------------

// Value: (T + 1, B, H), h_1 ... h_T then c_T.
struct LstmDef {
  static constexpr std::string_view name = "lstm";
  static constexpr std::array<std::string_view, 7> inputs{"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"};
  mutable kernels::RecurrentSaved saved;

  Tensor forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                 const Tensor& b_ih, const Tensor& b_hh) const {
    return recurrent_forward(Cell::Lstm, {&x, &h0, &c0, &w_ih, &w_hh, &b_ih, &b_hh}, saved);
  }
  std::array<Tensor, 7> vjp(const VjpContext<7>& c) const { return recurrent_vjp(Cell::Lstm, c, saved); }
};

// Value: (T, B, H), h_1 ... h_T.
template <Cell C>
struct SimpleRecurrentDef {
  static constexpr std::string_view name = C == Cell::Gru ? "gru" : C == Cell::RnnRelu ? "rnn_relu" : "rnn_tanh";
  static constexpr std::array<std::string_view, 6> inputs{"x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"};
  mutable kernels::RecurrentSaved saved;

  Tensor forward(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                 const Tensor& b_hh) const {
    return recurrent_forward(C, {&x, &h0, nullptr, &w_ih, &w_hh, &b_ih, &b_hh}, saved);
  }
  std::array<Tensor, 6> vjp(const VjpContext<6>& c) const { return recurrent_vjp(C, c, saved); }
};

// ---- wrappers -----------------------------------------------------------------------------

// The operand, or zeros of `shape` (a constant, on `device`) when it is undefined.
NodeRef or_zeros(const NodeRef& v, const Shape& shape, DType dtype, Device device) {
  return v.defined() ? v : NodeRef(Tensor::zeros(shape, dtype, device));
}

struct Prepared {
  NodeRef h0, c0, b_ih, b_hh;
};

Prepared prepare(Cell cell, const NodeRef& x, const NodeRef& h0, const NodeRef& c0, const NodeRef& w_ih,
                 const NodeRef& w_hh, const NodeRef& b_ih, const NodeRef& b_hh) {
  const std::string name(cell_name(cell));
  if (!x.defined() || !w_ih.defined() || !w_hh.defined()) {
    throw UsageError(name + ": x, w_ih and w_hh must be given");
  }
  const Tensor& xv = x.value();
  const Tensor& whh = w_hh.value();
  const DType dt = xv.dtype();
  const Device device = xv.device();
  const std::int64_t rows = whh.dim() == 2 ? whh.size(0) : 0;
  const std::int64_t hidden = whh.dim() == 2 ? whh.size(1) : 0;
  const std::int64_t batch = xv.dim() == 3 ? xv.size(1) : 0;
  Prepared p;
  p.h0 = or_zeros(h0, {batch, hidden}, dt, device);
  if (cell == Cell::Lstm) p.c0 = or_zeros(c0, {batch, hidden}, dt, device);
  p.b_ih = or_zeros(b_ih, {rows}, dt, device);
  p.b_hh = or_zeros(b_hh, {rows}, dt, device);
  return p;
}

// Names for graph pictures (dot.h): a constant initial state is "h0" / "c0" (zeros unless
// given); the last states, the slice and reshape that take them out of the fused result,
// carry one name ("h_n", "c_n"; a cell's "h'" and "c'"), so that a picture draws each as one
// named node; so does LSTM's hidden state of every step, "h_1..h_T" (RNN's and GRU's is the
// operator's output itself).
struct StateNames {
  const char* h;
  const char* c;
};
constexpr StateNames kSequenceNames{"h_n", "c_n"};
constexpr StateNames kCellNames{"h'", "c'"};

void name_initial_state(const NodeRef& fused, std::size_t operand, const char* name) {
  if (!fused.in_graph()) return;
  const Node& p = *static_cast<const OperatorNode*>(fused.node())->parents()[operand];
  if (p.kind() == NodeKind::Constant && fused.tape()->display_name(p).empty()) fused.tape()->set_display_name(p, name);
}

NodeRef every_step(const NodeRef& seq, std::int64_t T) {
  return named(slice(seq, 0, 0, T), T == 1 ? "h_1" : "h_1..h_" + std::to_string(T));
}

// Step `t` of seq (T', B, H) as a (B, H) state.
NodeRef step_state(const NodeRef& seq, std::int64_t t, const Shape& state, const char* name) {
  return named(reshape(named(slice(seq, 0, t, t + 1), name), state), name);
}

RecurrentResult simple(Cell cell, const NodeRef& x, const NodeRef& h0, const NodeRef& w_ih, const NodeRef& w_hh,
                       const NodeRef& b_ih, const NodeRef& b_hh, StateNames names = kSequenceNames) {
  const Prepared p = prepare(cell, x, h0, NodeRef(), w_ih, w_hh, b_ih, b_hh);
  NodeRef out;
  if (cell == Cell::Gru) {
    out = apply(SimpleRecurrentDef<Cell::Gru>{}, x, p.h0, w_ih, w_hh, p.b_ih, p.b_hh);
  } else if (cell == Cell::RnnRelu) {
    out = apply(SimpleRecurrentDef<Cell::RnnRelu>{}, x, p.h0, w_ih, w_hh, p.b_ih, p.b_hh);
  } else {
    out = apply(SimpleRecurrentDef<Cell::RnnTanh>{}, x, p.h0, w_ih, w_hh, p.b_ih, p.b_hh);
  }
  name_initial_state(out, 1, "h0");
  const Shape& s = out.shape();
  const std::int64_t T = s[0];
  return {out, step_state(out, T - 1, {s[1], s[2]}, names.h), NodeRef()};
}

RecurrentResult lstm_named(const NodeRef& x, const NodeRef& h0, const NodeRef& c0, const NodeRef& w_ih,
                           const NodeRef& w_hh, const NodeRef& b_ih, const NodeRef& b_hh, StateNames names) {
  const Prepared p = prepare(Cell::Lstm, x, h0, c0, w_ih, w_hh, b_ih, b_hh);
  const NodeRef packed = apply(LstmDef{}, x, p.h0, p.c0, w_ih, w_hh, p.b_ih, p.b_hh);
  name_initial_state(packed, 1, "h0");
  name_initial_state(packed, 2, "c0");
  const Shape& s = packed.shape();
  const std::int64_t T = s[0] - 1;  // h_1 ... h_T, then c_T
  const Shape state{s[1], s[2]};
  return {every_step(packed, T), step_state(packed, T - 1, state, names.h), step_state(packed, T, state, names.c)};
}

}  // namespace

RecurrentResult rnn(const NodeRef& x, const NodeRef& h0, const NodeRef& w_ih, const NodeRef& w_hh,
                    const NodeRef& b_ih, const NodeRef& b_hh, RnnActivation activation) {
  return simple(activation == RnnActivation::Relu ? Cell::RnnRelu : Cell::RnnTanh, x, h0, w_ih, w_hh, b_ih, b_hh);
}

RecurrentResult gru(const NodeRef& x, const NodeRef& h0, const NodeRef& w_ih, const NodeRef& w_hh,
                    const NodeRef& b_ih, const NodeRef& b_hh) {
  return simple(Cell::Gru, x, h0, w_ih, w_hh, b_ih, b_hh);
}

RecurrentResult lstm(const NodeRef& x, const NodeRef& h0, const NodeRef& c0, const NodeRef& w_ih,
                     const NodeRef& w_hh, const NodeRef& b_ih, const NodeRef& b_hh) {
  return lstm_named(x, h0, c0, w_ih, w_hh, b_ih, b_hh, kSequenceNames);
}

namespace {
// x (B, I) as a one-step sequence (1, B, I); other shapes pass through for the operator to refuse.
NodeRef as_step(const NodeRef& x, std::string_view name) {
  if (!x.defined()) throw UsageError(std::string(name) + ": x must be given");
  if (x.value().dim() != 2) {
    throw ShapeError(std::string(name) + ": x " + shape_str(x.shape()) + " must be (batch, input_size)");
  }
  return reshape(x, {1, x.shape()[0], x.shape()[1]});
}
}  // namespace

NodeRef rnn_cell(const NodeRef& x, const NodeRef& h, const NodeRef& w_ih, const NodeRef& w_hh, const NodeRef& b_ih,
                 const NodeRef& b_hh, RnnActivation activation) {
  return simple(activation == RnnActivation::Relu ? Cell::RnnRelu : Cell::RnnTanh, as_step(x, "rnn_cell"), h, w_ih,
                w_hh, b_ih, b_hh, kCellNames)
      .h_n;
}

std::pair<NodeRef, NodeRef> lstm_cell(const NodeRef& x, const NodeRef& h, const NodeRef& c, const NodeRef& w_ih,
                                      const NodeRef& w_hh, const NodeRef& b_ih, const NodeRef& b_hh) {
  RecurrentResult r = lstm_named(as_step(x, "lstm_cell"), h, c, w_ih, w_hh, b_ih, b_hh, kCellNames);
  return {r.h_n, r.c_n};
}

NodeRef gru_cell(const NodeRef& x, const NodeRef& h, const NodeRef& w_ih, const NodeRef& w_hh, const NodeRef& b_ih,
                 const NodeRef& b_hh) {
  return simple(Cell::Gru, as_step(x, "gru_cell"), h, w_ih, w_hh, b_ih, b_hh, kCellNames).h_n;
}

}  // namespace zkynet::op
