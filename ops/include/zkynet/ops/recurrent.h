// Recurrent operators: a whole sequence of an Elman RNN (tanh or relu), an LSTM or a GRU layer
// as ONE graph node, with torch's equations, weight layouts and gate orders.
//
//   op::RecurrentResult r = op::lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh);
//   r.output;   // (T, B, H): h_1 ... h_T          x is (T, B, I), time-major
//   r.h_n;      // (B, H): h_T
//   r.c_n;      // (B, H): c_T (LSTM only)
//   auto [h1, c1] = op::lstm_cell(x_t, h, c, w_ih, w_hh, b_ih, b_hh);   // one step, x_t (B, I)
//
// Shapes (G = 1 for rnn, 4 for lstm, 3 for gru): w_ih (G H, I), w_hh (G H, H), b_ih and b_hh
// (G H) or an undefined NodeRef() for none; h0 and c0 (B, H) or NodeRef() for zeros.
// Gate order as in torch: LSTM (i, f, g, o), GRU (r, z, n), where
//   LSTM: i, f, o = sigmoid(.), g = tanh(W_i x + b_i + W_h h + b_h); c' = f c + i g; h' = o tanh(c')
//   GRU:  r, z = sigmoid(W_i x + b_i + W_h h + b_h); n = tanh(W_in x + b_in + r (W_hn h + b_hn));
//         h' = (1 - z) n + z h
//   RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh)
//
// Each step is one GEMM, [x_t | h_{t-1}] times the packed [W_ih | W_hh]^T, and fused elementwise
// gate code (float32: a vectorized exp/tanh, about 1 ulp); the forward keeps the gate
// activations and states for the backward, hand-coded back-propagation through time: per step
// one GEMM for the gradients of x_t and h_{t-1} and one accumulating the weight gradients. With
// two threads in zkynet's pool (OMP_NUM_THREADS) the weight-gradient GEMMs run on the second
// thread, overlapping the recurrence (same order of summation, same bits). float32 and float64.
// Not supported (unlike torch): bidirectional, dropout, proj_size, packed sequences.
#pragma once

#include <zkynet/framework/node.h>

#include <utility>

namespace zkynet::op {

enum class RnnActivation { Tanh, Relu };

struct RecurrentResult {
  NodeRef output;  // (T, B, H): the hidden state after every step
  NodeRef h_n;     // (B, H): the last hidden state
  NodeRef c_n;     // (B, H): the last cell state (LSTM only; undefined otherwise)
};

// torch.nn.RNN's recurrence (one layer, one direction) over x (T, B, I).
RecurrentResult rnn(const NodeRef& x, const NodeRef& h0, const NodeRef& w_ih, const NodeRef& w_hh,
                    const NodeRef& b_ih = NodeRef(), const NodeRef& b_hh = NodeRef(),
                    RnnActivation activation = RnnActivation::Tanh);
// torch.nn.LSTM's recurrence (one layer, one direction) over x (T, B, I).
RecurrentResult lstm(const NodeRef& x, const NodeRef& h0, const NodeRef& c0, const NodeRef& w_ih,
                     const NodeRef& w_hh, const NodeRef& b_ih = NodeRef(), const NodeRef& b_hh = NodeRef());
// torch.nn.GRU's recurrence (one layer, one direction) over x (T, B, I).
RecurrentResult gru(const NodeRef& x, const NodeRef& h0, const NodeRef& w_ih, const NodeRef& w_hh,
                    const NodeRef& b_ih = NodeRef(), const NodeRef& b_hh = NodeRef());

// One step, as torch.nn.RNNCell / LSTMCell / GRUCell: x (B, I), h and c (B, H). The same
// fused operators with T = 1. lstm_cell returns (h', c').
NodeRef rnn_cell(const NodeRef& x, const NodeRef& h, const NodeRef& w_ih, const NodeRef& w_hh,
                 const NodeRef& b_ih = NodeRef(), const NodeRef& b_hh = NodeRef(),
                 RnnActivation activation = RnnActivation::Tanh);
std::pair<NodeRef, NodeRef> lstm_cell(const NodeRef& x, const NodeRef& h, const NodeRef& c, const NodeRef& w_ih,
                                      const NodeRef& w_hh, const NodeRef& b_ih = NodeRef(),
                                      const NodeRef& b_hh = NodeRef());
NodeRef gru_cell(const NodeRef& x, const NodeRef& h, const NodeRef& w_ih, const NodeRef& w_hh,
                 const NodeRef& b_ih = NodeRef(), const NodeRef& b_hh = NodeRef());

}  // namespace zkynet::op
