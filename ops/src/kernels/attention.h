// The kernels of the Transformer's operators (ops/src/attention.cpp), CPU only for now: gelu, and
// the fused attention behind op::scaled_dot_product_attention. FlashAttention's scheme (Dao et al. 2022; Dao 2023, "FlashAttention-2",
// Algorithms 1 and 2): the score matrix S = scale Q K^T is never held whole. The forward walks
// blocks of Br query rows against blocks of Bc keys, keeping per row a running maximum m and
// sum l of exp(S - m) (the online softmax), and saves only the output O and the per-row
// logsumexp L = m + log l. The backward recomputes each block of P = exp(S - L) from Q, K and L:
//   dV += P~^T dO,  dP~ = dO V^T,  dS = P o (dP~ o Z - D),  D = rowsum(dO o O),
//   dQ += scale dS K,  dK += scale dS^T Q,
// where P~ = P o Z is P after dropout (Z: 0 or 1 / (1 - p) per element). Scratch memory per
// task is O(Br (Bc + Ev)) whatever L and S are.
//
//   AttentionArgs a{.scale = 0.125, .causal = true};
//   AttentionForward f = kernels::attention_forward(q, k, v, a);          // q (B, L, E) ...
//   AttentionGrads g = kernels::attention_backward(grad, q, k, v, f.out, f.lse, a, {true, true, true});
#pragma once

#include <zkynet/framework/tensor.h>

#include <array>
#include <cstdint>
#include <vector>

namespace zkynet::kernels {

struct AttentionArgs {
  // Undefined for none. Else a view kept for its storage: batch element b's (L, S) mask starts
  // mask_offsets[b] elements after mask's first element, its rows and columns mask_strides apart
  // (0 where it broadcasts). int64 masks are boolean (nonzero: attend), floating ones (of the
  // operands' dtype) are added to the scores.
  Tensor mask;
  std::vector<std::int64_t> mask_offsets;
  std::array<std::int64_t, 2> mask_strides{0, 0};
  double scale = 1.0;
  bool causal = false;            // key j attends to query i only when j <= i (top-left aligned)
  double dropout_p = 0.0;         // on the attention probabilities
  std::uint64_t dropout_key = 0;  // the counter_random key (element (b, i, j) is number (b L + i) S + j)
};

struct AttentionForward {
  Tensor out;  // (B, L, Ev) or (B1, B2, L, Ev)
  Tensor lse;  // (B, L): log sum_j exp(S_ij) over the attended keys (-inf for a row with none)
};

struct AttentionGrads {
  Tensor query, key, value;  // undefined where not needed
};

// q (B, L, E), k (B, S, E), v (B, S, Ev), or each (B1, B2, ...) with B = B1 B2 (batch element
// b = b1 B2 + b2): any strides but a unit stride along the last axis, one floating dtype, on the
// CPU. So the heads of a (N, L, H, E) projection seen as (N, H, L, E) (a transpose, no copy) go
// in as they are. Results (out, each gradient) are laid out as the operand they follow (out as q):
// for such a head-split view, as (N, L, H, .) seen through the same transpose, so that merging
// the heads back is a reshape, not a copy.
AttentionForward attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args);
AttentionGrads attention_backward(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const AttentionArgs& args,
                                  std::array<bool, 3> needs);

// attention_backward adding into given gradients (zeroed, laid out as the kernels take operands;
// undefined: not needed), e.g. three views of one packed (N, L, 3E) gradient.
void attention_backward_into(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const AttentionArgs& args, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv);

// gelu (approximate: tanh's formula) and its VJP grad * gelu'(x), elementwise on the CPU.
Tensor gelu(const Tensor& x, bool approximate);
Tensor gelu_backward(const Tensor& grad, const Tensor& x, bool approximate);

// B of an operand of attention_forward: its leading axis, or its two leading axes' product.
std::int64_t attention_batch(const Tensor& t);
// A new (zeroed when `zero`) tensor shaped as `like` with last axis `cols`, laid out as `like`
// (see attention_forward).
Tensor attention_result(const Tensor& like, std::int64_t cols, bool zero);

// The block sizes (Br = Bc) the kernels use for head sizes E and Ev: each block GEMM stays below
// OpenBLAS's single-thread threshold. Exposed for the memory test.
std::int64_t attention_block(std::int64_t e, std::int64_t ev);

}  // namespace zkynet::kernels
