// The kernels of the fused recurrent operators rnn, lstm and gru (ops/src/recurrent.cpp calls
// them): a whole sequence forward, and back-propagation through time, on the CPU (recurrent.cpp)
// or on CUDA (cuda/recurrent.cu), chosen by the operands' device (all on one, or DeviceError).
// Shapes and dtypes are checked by the operators; these take them as given.
//
//   kernels::RecurrentSaved saved;                        // kept by the operator for its VJP
//   const Tensor y = kernels::recurrent_forward(RecurrentCell::Lstm, x, h0, c0, w_ih, w_hh, b_ih, b_hh, saved);
//   const auto grads = kernels::recurrent_backward(RecurrentCell::Lstm, grad, w_ih, w_hh, needs, saved);
//
// Operands as torch's: x (T, B, I), h0 and c0 (B, H), w_ih (G H, I), w_hh (G H, H), b_ih and
// b_hh (G H), G gates (lstm i f g o, gru r z n, rnn one). The value is h_1 ... h_T, (T, B, H),
// with c_T appended for the lstm, (T + 1, B, H).
#pragma once

#include <zkynet/framework/tensor.h>

#include <array>
#include <cstdint>
#include <string_view>

namespace zkynet::kernels {

enum class RecurrentCell { RnnTanh, RnnRelu, Lstm, Gru };

constexpr std::int64_t gate_count(RecurrentCell cell) {
  return cell == RecurrentCell::Lstm ? 4 : cell == RecurrentCell::Gru ? 3 : 1;
}

// The operator's name: rnn_tanh, rnn_relu, lstm or gru.
std::string_view cell_name(RecurrentCell cell);

// What the backward needs, kept by the forward (time-major: row t B + b is step t of sequence b).
struct RecurrentSaved {
  Tensor out;    // the node's value: h_1 ... h_T [, c_T], (T [+ 1], B, H)
  Tensor xh;     // (N, K): row t B + b is [x_t | h_{t-1}] of sequence b
  Tensor gates;  // (N, W): lstm i f g o; gru r z n (W_hn h + b_hn); unused for rnn
  Tensor h0, c0;
  Tensor cs;     // lstm: c_1 ... c_T, (T, B, H)
  Tensor tc;     // lstm: tanh(c_1) ... tanh(c_T), (N, H)
};

// The forward over the whole sequence; c0 is undefined except for the lstm.
Tensor recurrent_forward(RecurrentCell cell, const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                         const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, RecurrentSaved& saved);

// Gradients in the order x, h0, c0, w_ih, w_hh, b_ih, b_hh (undefined where not needed), from
// the gradient of the forward's value.
std::array<Tensor, 7> recurrent_backward(RecurrentCell cell, const Tensor& grad, const Tensor& w_ih,
                                         const Tensor& w_hh, const std::array<bool, 7>& needs,
                                         const RecurrentSaved& saved);

}  // namespace zkynet::kernels
