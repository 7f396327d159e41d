// scaled_dot_product_attention and gelu: forward and VJP side by side, the loops in
// kernels/attention.cpp. The attention operator hands the kernels each operand as it is when it
// has one or two batch axes and unit-stride rows (so MultiheadAttention's head split and merge
// are views, not copies), else with its (broadcast) leading axes flattened into one batch axis B
// as a contiguous (B, rows, cols); its VJP sums each gradient back over the axes its operand was
// broadcast along.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/attention.h>
#include <zkynet/ops/kernels.h>

#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace zkynet::op {

namespace {

constexpr std::string_view kSdpa = "scaled_dot_product_attention";

std::string describe(const Tensor& t) { return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())); }

Shape leading(const Shape& s) { return Shape(s.begin(), s.end() - 2); }

Shape with_last2(Shape s, std::int64_t a, std::int64_t b) {
  s.push_back(a);
  s.push_back(b);
  return s;
}

// t as the kernels take it (kernels/attention.h): as it is when it has one or two batch axes, no
// broadcasting and rows BLAS can step through (unit stride along the last axis: the heads of a
// projection seen through a transpose qualify); else expanded to batch + its last two axes as a
// contiguous (B, rows, cols) tensor.
Tensor operand(const Tensor& t, const Shape& batch) {
  const std::int64_t rows = t.shape()[t.dim() - 2], cols = t.shape()[t.dim() - 1];
  const Shape full = with_last2(batch, rows, cols);
  const Shape& st = t.strides();
  if ((t.dim() == 3 || t.dim() == 4) && t.shape() == full && st[st.size() - 1] == 1 &&
      st[st.size() - 2] >= std::max<std::int64_t>(cols, 1)) {
    return t;
  }
  const Tensor e = t.shape() == full ? t : t.expand(full);
  return e.contiguous().reshape({shape_numel(batch), rows, cols});
}

// A kernel result with the axes `full` (a reshape only when the kernel saw a flattened operand).
Tensor unflat(const Tensor& t, const Shape& full) { return t.shape() == full ? t : t.reshape(full); }

struct SdpaDef {
  static constexpr std::string_view name = kSdpa;
  static constexpr std::array<std::string_view, 3> inputs{"query", "key", "value"};
  Shape batch;  // the broadcast leading axes
  kernels::AttentionArgs args;
  mutable Tensor lse;  // (B, L), kept by forward for the VJP

  Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v) const {
    kernels::AttentionForward f =
        kernels::attention_forward(operand(q, batch), operand(k, batch), operand(v, batch), args);
    lse = std::move(f.lse);
    return unflat(f.out, with_last2(batch, q.shape()[q.dim() - 2], v.shape()[v.dim() - 1]));
  }

  // Recomputes the probabilities block by block from q, k and lse (kernels/attention.h).
  std::array<Tensor, 3> vjp(const VjpContext<3>& c) const {
    const Tensor& q = c.in(0);
    const Tensor& k = c.in(1);
    const Tensor& v = c.in(2);
    kernels::AttentionGrads g = kernels::attention_backward(
        operand(c.grad, batch), operand(q, batch), operand(k, batch), operand(v, batch), operand(c.output, batch),
        lse, args, {c.needs[0], c.needs[1], c.needs[2]});
    auto back = [&](const Tensor& grad, const Tensor& in) {
      if (!grad.defined()) return Tensor();
      const Tensor full = unflat(grad, with_last2(batch, in.shape()[in.dim() - 2], in.shape()[in.dim() - 1]));
      return full.shape() == in.shape() ? full : kernels::sum_to(full, in.shape());
    };
    return {back(g.query, q), back(g.key, k), back(g.value, v)};
  }
};

// The mask of a call with these batch axes and sizes into args (broadcast view, per-batch offsets).
void set_mask(kernels::AttentionArgs& args, const Tensor& attn_mask, const Shape& batch, std::int64_t L,
              std::int64_t S, DType dtype, const std::string& what) {
  if (!attn_mask.defined()) return;
  Tensor m = attn_mask.cpu();
  if (is_floating(m.dtype()) && m.dtype() != dtype) m = m.to(dtype);
  const Shape full = with_last2(batch, L, S);
  bool fits = m.dim() <= static_cast<std::int64_t>(full.size());
  for (std::int64_t d = 1; fits && d <= m.dim(); ++d) {
    const std::int64_t got = m.shape()[static_cast<std::size_t>(m.dim() - d)];
    fits = got == 1 || got == full[full.size() - static_cast<std::size_t>(d)];
  }
  if (!fits) {
    throw ShapeError(what + ": attn_mask " + shape_str(attn_mask.shape()) + " does not broadcast to " +
                     shape_str(full));
  }
  const Tensor e = m.expand(full);
  const Shape& st = e.strides();
  const std::size_t nb = batch.size();
  args.mask_strides = {st[nb], st[nb + 1]};
  const std::int64_t count = shape_numel(batch);
  args.mask_offsets.resize(static_cast<std::size_t>(count));
  for (std::int64_t b = 0; b < count; ++b) {
    std::int64_t rest = b, off = 0;
    for (std::size_t d = nb; d-- > 0;) {
      off += (rest % batch[d]) * st[d];
      rest /= batch[d];
    }
    args.mask_offsets[static_cast<std::size_t>(b)] = off;
  }
  args.mask = e;
}

void check_dropout(double dropout_p, const Generator* generator, std::string_view op) {
  if (!(dropout_p >= 0.0 && dropout_p <= 1.0)) {
    throw UsageError(std::string(op) + ": dropout_p must lie in [0, 1], got " + std::to_string(dropout_p));
  }
  if (dropout_p > 0.0 && !generator) {
    throw UsageError(std::string(op) + ": dropout_p > 0 needs a generator to draw the dropout mask from");
  }
}

// Head `which` (0: queries, 1: keys, 2: values) of a contiguous packed (N, L, 3 H D) tensor as the
// (N, H, L, D) view the kernels take: rows 3 H D apart, heads D apart.
Tensor packed_part(const Tensor& qkv, std::int64_t heads, std::int64_t which) {
  const std::int64_t n = qkv.shape()[0], l = qkv.shape()[1], d = qkv.shape()[2] / (3 * heads);
  return qkv.reshape({n, l, 3 * heads, d}).slice(2, which * heads, (which + 1) * heads).transpose(1, 2);
}

// Self-attention over one packed projection (op::packed_self_attention): its gradient is one
// packed tensor too, written by the kernel through three views.
struct PackedSelfAttentionDef {
  static constexpr std::string_view name = "packed_self_attention";
  static constexpr std::array<std::string_view, 1> inputs{"qkv"};
  std::int64_t heads;
  kernels::AttentionArgs args;
  mutable Tensor lse;

  Tensor forward(const Tensor& qkv_in) const {
    const Tensor qkv = qkv_in.contiguous();
    kernels::AttentionForward f = kernels::attention_forward(packed_part(qkv, heads, 0), packed_part(qkv, heads, 1),
                                                             packed_part(qkv, heads, 2), args);
    lse = std::move(f.lse);
    // f.out is (N, H, L, D) over an (N, L, H, D) buffer: heads merged without a copy.
    return f.out.transpose(1, 2).reshape({qkv.shape()[0], qkv.shape()[1], qkv.shape()[2] / 3});
  }

  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const Tensor qkv = c.in(0).contiguous();
    const std::int64_t n = qkv.shape()[0], l = qkv.shape()[1], d = qkv.shape()[2] / (3 * heads);
    auto split = [&](const Tensor& t) { return t.contiguous().reshape({n, l, heads, d}).transpose(1, 2); };
    Tensor grad = Tensor::zeros(qkv.shape(), qkv.dtype());
    kernels::attention_backward_into(split(c.grad), packed_part(qkv, heads, 0), packed_part(qkv, heads, 1),
                                     packed_part(qkv, heads, 2), split(c.output), lse, args,
                                     packed_part(grad, heads, 0), packed_part(grad, heads, 1),
                                     packed_part(grad, heads, 2));
    return {grad};
  }
};

// GELU: y = x Phi(x) or its tanh approximation; the VJP from x.
struct GeluDef {
  static constexpr std::string_view name = "gelu";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  bool approximate = false;

  Tensor forward(const Tensor& x) const { return kernels::gelu(x, approximate); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    return {kernels::gelu_backward(c.grad, c.in(0), approximate)};
  }
};

}  // namespace

NodeRef scaled_dot_product_attention(const NodeRef& query, const NodeRef& key, const NodeRef& value,
                                     const Tensor& attn_mask, double dropout_p, bool is_causal,
                                     std::optional<double> scale, Generator* generator) {
  const Tensor& q = query.value();
  const Tensor& k = key.value();
  const Tensor& v = value.value();
  const std::string what = std::string(kSdpa) + ": query " + describe(q) + ", key " + describe(k) + ", value " +
                           describe(v);
  if (!is_floating(q.dtype()) || k.dtype() != q.dtype() || v.dtype() != q.dtype()) {
    throw TypeError(what + ": query, key and value must share one floating dtype (float32 or float64)");
  }
  if (q.dim() < 2 || k.dim() < 2 || v.dim() < 2) throw ShapeError(what + ": each needs at least 2 axes");
  const std::int64_t L = q.shape()[q.dim() - 2], E = q.shape()[q.dim() - 1];
  const std::int64_t S = k.shape()[k.dim() - 2];
  if (k.shape()[k.dim() - 1] != E) throw ShapeError(what + ": query and key must have the same last axis (E)");
  if (v.shape()[v.dim() - 2] != S) throw ShapeError(what + ": key and value must have the same sequence length (S)");
  check_dropout(dropout_p, generator, kSdpa);
  if (is_causal && attn_mask.defined()) {
    throw UsageError(std::string(kSdpa) + ": give either attn_mask or is_causal, not both (as torch)");
  }
  const Shape batch = kernels::broadcast_shapes(kernels::broadcast_shapes(leading(q.shape()), leading(k.shape()), kSdpa),
                                                leading(v.shape()), kSdpa);
  SdpaDef def;
  def.batch = batch;
  def.args.scale = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(E));
  def.args.causal = is_causal;
  def.args.dropout_p = dropout_p;
  if (dropout_p > 0.0) def.args.dropout_key = generator->engine()();
  set_mask(def.args, attn_mask, batch, L, S, q.dtype(), what);
  return apply(std::move(def), query, key, value);
}

NodeRef packed_self_attention(const NodeRef& qkv, std::int64_t num_heads, const Tensor& attn_mask, double dropout_p,
                              bool is_causal, Generator* generator) {
  const Tensor& t = qkv.value();
  constexpr std::string_view kPacked = "packed_self_attention";
  const std::string what = std::string(kPacked) + ": qkv " + describe(t) + ", " + std::to_string(num_heads) + " heads";
  if (!is_floating(t.dtype())) throw TypeError(what + ": needs a floating dtype (float32 or float64)");
  if (num_heads <= 0 || t.dim() != 3 || t.shape()[2] % (3 * num_heads) != 0) {
    throw ShapeError(what + ": needs qkv (N, L, 3 E) with E divisible by the number of heads");
  }
  check_dropout(dropout_p, generator, kPacked);
  if (is_causal && attn_mask.defined()) throw UsageError(std::string(kPacked) + ": give either attn_mask or is_causal");
  const std::int64_t N = t.shape()[0], L = t.shape()[1], D = t.shape()[2] / (3 * num_heads);
  PackedSelfAttentionDef def{num_heads, {}, {}};
  def.args.scale = 1.0 / std::sqrt(static_cast<double>(D));
  def.args.causal = is_causal;
  def.args.dropout_p = dropout_p;
  if (dropout_p > 0.0) def.args.dropout_key = generator->engine()();
  set_mask(def.args, attn_mask, {N, num_heads}, L, L, t.dtype(), what);
  return apply(std::move(def), qkv);
}

NodeRef gelu(const NodeRef& x, std::string_view approximate) {
  if (approximate != "none" && approximate != "tanh") {
    throw UsageError("gelu: approximate must be 'none' or 'tanh', got '" + std::string(approximate) + "'");
  }
  if (!is_floating(x.value().dtype())) throw TypeError("gelu: needs a floating-point tensor, got " + describe(x.value()));
  return apply(GeluDef{approximate == "tanh"}, x);
}

}  // namespace zkynet::op
