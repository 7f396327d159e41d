// GELU, MultiheadAttention, TransformerEncoderLayer, TransformerEncoder, TransformerDecoderLayer,
// TransformerDecoder and the positional encodings (transformer.h), each written over the operator API as torch.nn's modules are over
// torch.nn.functional (torch/nn/functional.py, multi_head_attention_forward, and
// torch/nn/modules/transformer.py, read for torch 1.13).
#include <zkynet/framework/error.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/transformer.h>
#include <zkynet/ops/attention.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/normalization.h>
#include <zkynet/ops/ops.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace zkynet::nn {

namespace {

Generator& generator_of(Generator* g) { return g ? *g : default_generator(); }

// A torch.nn.MultiheadAttention mask as an additive float mask: int64 (boolean) masks give -inf
// where nonzero (masked out), 0 elsewhere; floating ones convert to `dtype`.
Tensor additive(const Tensor& mask, DType dtype) {
  if (!mask.defined()) return Tensor();
  if (is_floating(mask.dtype())) return mask.cpu().to(dtype);
  const Tensor m = mask.cpu().contiguous();
  Tensor out = Tensor::empty(m.shape(), dtype);
  const std::int64_t* p = m.data<std::int64_t>();
  dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* o = out.data<T>();
    for (std::int64_t i = 0; i < m.numel(); ++i) o[i] = p[i] != 0 ? -std::numeric_limits<T>::infinity() : T(0);
  });
  return out;
}

// The causal mask (L, S) as an additive float mask: -inf above the diagonal.
Tensor causal_additive(std::int64_t L, std::int64_t S, DType dtype) {
  std::vector<std::int64_t> m(static_cast<std::size_t>(L * S));
  for (std::int64_t i = 0; i < L; ++i) {
    for (std::int64_t j = 0; j < S; ++j) m[static_cast<std::size_t>(i * S + j)] = j > i ? 1 : 0;
  }
  return additive(Tensor::from_vector(m, {L, S}), dtype);
}

std::string mha_name(std::int64_t e, std::int64_t h) {
  return "MultiheadAttention(" + std::to_string(e) + ", " + std::to_string(h) + ")";
}

}  // namespace

// ---- GELU --------------------------------------------------------------------------------------

GELU::GELU(std::string approximate) : Module({Variable("x")}), approximate_(std::move(approximate)) {
  if (approximate_ != "none" && approximate_ != "tanh") {
    throw UsageError("GELU: approximate must be 'none' or 'tanh', got '" + approximate_ + "'");
  }
}

NodeRef GELU::call(const NodeRef& x) { return op::gelu(x, approximate_); }

// ---- MultiheadAttention ------------------------------------------------------------------------

MultiheadAttention::MultiheadAttention(std::int64_t embed_dim, std::int64_t num_heads,
                                       MultiheadAttentionOptions options)
    : Module({Variable("query"), Variable("key"), Variable("value")}),
      embed_dim_(embed_dim),
      heads_(num_heads),
      options_(options),
      out_proj_(embed_dim > 0 ? embed_dim : 1, embed_dim > 0 ? embed_dim : 1,
                {.bias = options.bias, .dtype = options.dtype, .generator = options.generator}) {
  const std::string what = mha_name(embed_dim, num_heads);
  if (embed_dim <= 0 || num_heads <= 0) throw ShapeError(what + ": embed_dim and num_heads must be positive");
  if (embed_dim % num_heads != 0) throw ShapeError(what + ": embed_dim must be divisible by num_heads");
  if (!(options.dropout >= 0.0 && options.dropout <= 1.0)) {
    throw UsageError(what + ": dropout must lie in [0, 1], got " + std::to_string(options.dropout));
  }
  Generator& gen = generator_of(options.generator);
  register_parameter("in_proj_weight", init::xavier_uniform({3 * embed_dim, embed_dim}, gen, 1.0, options.dtype));
  if (options.bias) {
    register_parameter("in_proj_bias", Tensor::zeros({3 * embed_dim}, options.dtype)).is_bias(true);
    Tensor out_bias = out_proj_.param("bias").value();  // shares the parameter's storage
    out_bias.fill_(0.0);
  }
  register_module("out_proj", out_proj_);
}

MhaOutput MultiheadAttention::forward(const NodeRef& query, const NodeRef& key, const NodeRef& value,
                                      const MhaCall& call) {
  pending_ = call;
  last_weights_ = NodeRef();
  struct Clear {
    MultiheadAttention& m;
    ~Clear() {
      m.pending_ = {};
      m.last_weights_ = NodeRef();
    }
  } clear{*this};
  const std::array<NodeRef, 3> args{query, key, value};
  ModuleGraph out = invoke(args);
  return {std::move(out), last_weights_};
}

NodeRef MultiheadAttention::call(const NodeRef& query, const NodeRef& key, const NodeRef& value) {
  const std::string what = mha_name(embed_dim_, heads_);
  const std::int64_t E = embed_dim_, H = heads_, D = E / H;
  for (const NodeRef* x : {&query, &key, &value}) {
    if (x->shape().size() != 3 || x->shape()[2] != E) {
      throw ShapeError(what + ": query, key and value must be " + (options_.batch_first ? "(N, L, " : "(L, N, ") +
                       std::to_string(E) + "), got " + shape_str(x->shape()));
    }
  }
  auto batch_major = [&](const NodeRef& x) { return options_.batch_first ? x : op::transpose(x, 0, 1); };
  const NodeRef q = batch_major(query), k = batch_major(key), v = batch_major(value);
  const std::int64_t N = q.shape()[0], L = q.shape()[1], S = k.shape()[1];
  if (k.shape()[0] != N || v.shape()[0] != N || v.shape()[1] != S) {
    throw ShapeError(what + ": query " + shape_str(query.shape()) + ", key " + shape_str(key.shape()) + " and value " +
                     shape_str(value.shape()) + " disagree in batch or source length");
  }
  const DType dtype = q.value().dtype();

  // In-projections: rows [0, E), [E, 2E), [2E, 3E) of in_proj_weight, then (N, H, len, D).
  const NodeRef w = param("in_proj_weight");
  auto project = [&](const NodeRef& x, std::int64_t part, std::int64_t len) {
    const NodeRef wp = op::slice(w, 0, part * E, (part + 1) * E);
    const NodeRef y = options_.bias ? op::linear(x, wp, op::slice(param("in_proj_bias"), 0, part * E, (part + 1) * E))
                                    : op::linear(x, wp);
    return op::transpose(op::reshape(y, {N, len, H, D}), 1, 2);
  };
  // Self-attention (one node given as query, key and value) takes the packed path below.
  const bool self = query.in_graph() && query.node() == key.node() && key.node() == value.node();

  // One additive mask broadcasting to (N, H, L, S), or none (and then maybe causal).
  Tensor mask;
  const MhaCall& c = pending_;
  if (c.attn_mask.defined()) {
    const Shape& s = c.attn_mask.shape();
    if (s.size() == 2 && s[0] == L && s[1] == S) {
      mask = additive(c.attn_mask, dtype);
    } else if (s.size() == 3 && s[0] == N * H && s[1] == L && s[2] == S) {
      mask = additive(c.attn_mask, dtype).reshape({N, H, L, S});
    } else {
      throw ShapeError(what + ": attn_mask " + shape_str(s) + " must be (L, S) = " + shape_str({L, S}) +
                       " or (N * num_heads, L, S) = " + shape_str({N * H, L, S}));
    }
  }
  bool causal = false;
  if (c.is_causal && !mask.defined()) {
    if (c.key_padding_mask.defined() || c.need_weights) {
      mask = causal_additive(L, S, dtype);
    } else {
      causal = true;
    }
  }
  if (c.key_padding_mask.defined()) {
    const Shape& s = c.key_padding_mask.shape();
    if (s.size() != 2 || s[0] != N || s[1] != S) {
      throw ShapeError(what + ": key_padding_mask " + shape_str(s) + " must be (N, S) = " + shape_str({N, S}));
    }
    const Tensor kpm = additive(c.key_padding_mask, dtype).reshape({N, 1, 1, S});
    mask = mask.defined() ? kernels::add(mask, kpm) : kpm;
  }

  const double p = is_training() ? options_.dropout : 0.0;
  Generator& gen = generator_of(options_.generator);
  NodeRef o;
  if (self && !c.need_weights) {
    // One GEMM for the three projections, the heads read from it in place (op::packed_self_attention).
    const NodeRef qkv = options_.bias ? op::linear(q, w, param("in_proj_bias")) : op::linear(q, w);
    const NodeRef out = out_proj_(op::packed_self_attention(qkv, H, mask, p, causal, &gen));
    return options_.batch_first ? out : op::transpose(out, 0, 1);
  }
  const NodeRef qh = project(q, 0, L), kh = project(k, 1, S), vh = project(v, 2, S);
  if (c.need_weights) {
    NodeRef scores = op::mult(op::matmul(qh, op::transpose(kh)), 1.0 / std::sqrt(static_cast<double>(D)));
    if (mask.defined()) scores = op::add(scores, mask);
    NodeRef probs = op::softmax(scores, -1);
    if (p > 0.0) probs = op::dropout(probs, p, true, gen);
    o = op::matmul(probs, vh);
    last_weights_ = c.average_attn_weights ? op::mean(probs, {1}) : probs;
  } else {
    o = op::scaled_dot_product_attention(qh, kh, vh, mask, p, causal, std::nullopt, &gen);
  }
  const NodeRef merged = op::reshape(op::transpose(o, 1, 2), {N, L, E});
  const NodeRef out = out_proj_(merged);
  return options_.batch_first ? out : op::transpose(out, 0, 1);
}

// ---- TransformerEncoderLayer -------------------------------------------------------------------

namespace {
MultiheadAttentionOptions attention_options(const TransformerEncoderLayerOptions& o) {
  return {.dropout = o.dropout, .bias = o.bias, .batch_first = o.batch_first, .dtype = o.dtype,
          .generator = o.generator};
}
LinearOptions linear_options(const TransformerEncoderLayerOptions& o) {
  return {.bias = o.bias, .dtype = o.dtype, .generator = o.generator};
}
LayerNormOptions norm_options(const TransformerEncoderLayerOptions& o) {
  return {.eps = o.layer_norm_eps, .elementwise_affine = true, .dtype = o.dtype};
}
}  // namespace

TransformerEncoderLayer::TransformerEncoderLayer(std::int64_t d_model, std::int64_t nhead,
                                                 TransformerEncoderLayerOptions options)
    : Module({Variable("src")}),
      options_([&] {
        options.d_model = d_model;
        options.nhead = nhead;
        return options;
      }()),
      self_attn_(d_model, nhead, attention_options(options_)),
      linear1_(d_model, options_.dim_feedforward, linear_options(options_)),
      linear2_(options_.dim_feedforward, d_model, linear_options(options_)),
      dropout_(options_.dropout, options_.generator),
      dropout1_(options_.dropout, options_.generator),
      dropout2_(options_.dropout, options_.generator),
      norm1_(d_model, norm_options(options_)),
      norm2_(d_model, norm_options(options_)) {
  if (options_.activation != "relu" && options_.activation != "gelu") {
    throw UsageError("TransformerEncoderLayer: activation must be 'relu' or 'gelu', got '" + options_.activation + "'");
  }
  // torch's registration order: self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2.
  register_module("self_attn", self_attn_);
  register_module("linear1", linear1_);
  register_module("dropout", dropout_);
  register_module("linear2", linear2_);
  register_module("norm1", norm1_);
  register_module("norm2", norm2_);
  register_module("dropout1", dropout1_);
  register_module("dropout2", dropout2_);
}

ModuleGraph TransformerEncoderLayer::forward(const NodeRef& src, const Tensor& src_mask,
                                             const Tensor& src_key_padding_mask, bool is_causal) {
  src_mask_ = src_mask;
  key_padding_mask_ = src_key_padding_mask;
  is_causal_ = is_causal;
  struct Clear {
    TransformerEncoderLayer& l;
    ~Clear() {
      l.src_mask_ = Tensor();
      l.key_padding_mask_ = Tensor();
      l.is_causal_ = false;
    }
  } clear{*this};
  const std::array<NodeRef, 1> args{src};
  return invoke(args);
}

NodeRef TransformerEncoderLayer::self_attention_block(const NodeRef& x) {
  MhaCall c;
  c.need_weights = false;
  c.attn_mask = src_mask_;
  c.key_padding_mask = key_padding_mask_;
  c.is_causal = is_causal_;
  return dropout1_(self_attn_.forward(x, x, x, c).output);
}

NodeRef TransformerEncoderLayer::feed_forward_block(const NodeRef& x) {
  const NodeRef h = linear1_(x);
  const NodeRef a = options_.activation == "gelu" ? op::gelu(h) : op::relu(h);
  return dropout2_(linear2_(dropout_(a)));
}

NodeRef TransformerEncoderLayer::call(const NodeRef& src) {
  NodeRef x = src;
  if (options_.norm_first) {
    x = op::add(x, self_attention_block(norm1_(x)));
    x = op::add(x, feed_forward_block(norm2_(x)));
  } else {
    x = norm1_(op::add(x, self_attention_block(x)));
    x = norm2_(op::add(x, feed_forward_block(x)));
  }
  return x;
}

// ---- TransformerEncoder ------------------------------------------------------------------------

TransformerEncoder::TransformerEncoder(const TransformerEncoderLayerOptions& layer, std::int64_t num_layers,
                                       bool final_norm)
    : Module({Variable("src")}) {
  if (num_layers < 0) throw ShapeError("TransformerEncoder: num_layers must not be negative");
  for (std::int64_t i = 0; i < num_layers; ++i) layer_list_.push_back(&layers_.add<TransformerEncoderLayer>(layer));
  register_module("layers", layers_);
  if (final_norm) {
    norm_ = std::make_unique<LayerNorm>(layer.d_model, norm_options(layer));
    register_module("norm", *norm_);
  }
}

ModuleGraph TransformerEncoder::forward(const NodeRef& src, const Tensor& mask, const Tensor& src_key_padding_mask,
                                        bool is_causal) {
  mask_ = mask;
  key_padding_mask_ = src_key_padding_mask;
  is_causal_ = is_causal;
  struct Clear {
    TransformerEncoder& e;
    ~Clear() {
      e.mask_ = Tensor();
      e.key_padding_mask_ = Tensor();
      e.is_causal_ = false;
    }
  } clear{*this};
  const std::array<NodeRef, 1> args{src};
  return invoke(args);
}

NodeRef TransformerEncoder::call(const NodeRef& src) {
  NodeRef x = src;
  for (auto* layer : layer_list_) x = layer->forward(x, mask_, key_padding_mask_, is_causal_);
  return norm_ ? NodeRef((*norm_)(x)) : x;
}

// ---- TransformerDecoderLayer -------------------------------------------------------------------

TransformerDecoderLayer::TransformerDecoderLayer(std::int64_t d_model, std::int64_t nhead,
                                                 TransformerEncoderLayerOptions options)
    : Module({Variable("tgt"), Variable("memory")}),
      options_([&] {
        options.d_model = d_model;
        options.nhead = nhead;
        return options;
      }()),
      self_attn_(d_model, nhead, attention_options(options_)),
      multihead_attn_(d_model, nhead, attention_options(options_)),
      linear1_(d_model, options_.dim_feedforward, linear_options(options_)),
      linear2_(options_.dim_feedforward, d_model, linear_options(options_)),
      dropout_(options_.dropout, options_.generator),
      dropout1_(options_.dropout, options_.generator),
      dropout2_(options_.dropout, options_.generator),
      dropout3_(options_.dropout, options_.generator),
      norm1_(d_model, norm_options(options_)),
      norm2_(d_model, norm_options(options_)),
      norm3_(d_model, norm_options(options_)) {
  if (options_.activation != "relu" && options_.activation != "gelu") {
    throw UsageError("TransformerDecoderLayer: activation must be 'relu' or 'gelu', got '" + options_.activation + "'");
  }
  register_module("self_attn", self_attn_);
  register_module("multihead_attn", multihead_attn_);
  register_module("linear1", linear1_);
  register_module("dropout", dropout_);
  register_module("linear2", linear2_);
  register_module("norm1", norm1_);
  register_module("norm2", norm2_);
  register_module("norm3", norm3_);
  register_module("dropout1", dropout1_);
  register_module("dropout2", dropout2_);
  register_module("dropout3", dropout3_);
}

ModuleGraph TransformerDecoderLayer::forward(const NodeRef& tgt, const NodeRef& memory, const DecoderMasks& masks) {
  masks_ = masks;
  struct Clear {
    DecoderMasks& m;
    ~Clear() { m = {}; }
  } clear{masks_};
  const std::array<NodeRef, 2> args{tgt, memory};
  return invoke(args);
}

NodeRef TransformerDecoderLayer::attend(MultiheadAttention& attn, Dropout& drop, const NodeRef& x, const NodeRef& mem,
                                        const Tensor& mask, const Tensor& padding, bool causal) {
  MhaCall c;
  c.need_weights = false;
  c.attn_mask = mask;
  c.key_padding_mask = padding;
  c.is_causal = causal && !mask.defined();
  return drop(attn.forward(x, mem, mem, c).output);
}

NodeRef TransformerDecoderLayer::call(const NodeRef& tgt, const NodeRef& memory) {
  const DecoderMasks& m = masks_;
  auto sa = [&](const NodeRef& x) {
    return attend(self_attn_, dropout1_, x, x, m.tgt_mask, m.tgt_key_padding_mask, m.tgt_is_causal);
  };
  auto mha = [&](const NodeRef& x) {
    return attend(multihead_attn_, dropout2_, x, memory, m.memory_mask, m.memory_key_padding_mask,
                  m.memory_is_causal);
  };
  auto ff = [&](const NodeRef& x) {
    const NodeRef h = linear1_(x);
    const NodeRef a = options_.activation == "gelu" ? op::gelu(h) : op::relu(h);
    return NodeRef(dropout3_(linear2_(dropout_(a))));
  };
  NodeRef x = tgt;
  if (options_.norm_first) {
    x = op::add(x, sa(norm1_(x)));
    x = op::add(x, mha(norm2_(x)));
    x = op::add(x, ff(norm3_(x)));
  } else {
    x = norm1_(op::add(x, sa(x)));
    x = norm2_(op::add(x, mha(x)));
    x = norm3_(op::add(x, ff(x)));
  }
  return x;
}

// ---- TransformerDecoder ------------------------------------------------------------------------

TransformerDecoder::TransformerDecoder(const TransformerEncoderLayerOptions& layer, std::int64_t num_layers,
                                       bool final_norm)
    : Module({Variable("tgt"), Variable("memory")}) {
  if (num_layers < 0) throw ShapeError("TransformerDecoder: num_layers must not be negative");
  for (std::int64_t i = 0; i < num_layers; ++i) layer_list_.push_back(&layers_.add<TransformerDecoderLayer>(layer));
  register_module("layers", layers_);
  if (final_norm) {
    norm_ = std::make_unique<LayerNorm>(layer.d_model, norm_options(layer));
    register_module("norm", *norm_);
  }
}

ModuleGraph TransformerDecoder::forward(const NodeRef& tgt, const NodeRef& memory, const DecoderMasks& masks) {
  masks_ = masks;
  struct Clear {
    DecoderMasks& m;
    ~Clear() { m = {}; }
  } clear{masks_};
  const std::array<NodeRef, 2> args{tgt, memory};
  return invoke(args);
}

NodeRef TransformerDecoder::call(const NodeRef& tgt, const NodeRef& memory) {
  NodeRef x = tgt;
  for (auto* layer : layer_list_) x = layer->forward(x, memory, masks_);
  return norm_ ? NodeRef((*norm_)(x)) : x;
}

// ---- positional encodings ----------------------------------------------------------------------

namespace {
void check_positions(const NodeRef& x, std::int64_t d_model, std::int64_t max_len, bool batch_first,
                     const char* layer) {
  const Shape& s = x.shape();
  if (s.size() != 3 || s[2] != d_model || s[batch_first ? 1 : 0] > max_len) {
    throw ShapeError(std::string(layer) + ": input " + shape_str(s) + " must be " +
                     (batch_first ? "(N, T, " : "(T, N, ") + std::to_string(d_model) + ") with T <= max_len " +
                     std::to_string(max_len));
  }
}

// table[:T] shaped to broadcast against x.
NodeRef positions(const NodeRef& table, const NodeRef& x, bool batch_first) {
  const std::int64_t T = x.shape()[batch_first ? 1 : 0];
  const NodeRef rows = op::slice(table, 0, 0, T);
  return batch_first ? rows : op::reshape(rows, {T, 1, table.shape()[1]});
}
}  // namespace

SinusoidalPositionalEncoding::SinusoidalPositionalEncoding(std::int64_t d_model, std::int64_t max_len,
                                                           bool batch_first, DType dtype)
    : Module({Variable("x")}), d_model_(d_model), max_len_(max_len), batch_first_(batch_first) {
  if (d_model <= 0 || max_len <= 0) throw ShapeError("SinusoidalPositionalEncoding: sizes must be positive");
  std::vector<double> pe(static_cast<std::size_t>(max_len * d_model));
  for (std::int64_t t = 0; t < max_len; ++t) {
    for (std::int64_t i = 0; i < d_model; ++i) {
      const double angle =
          static_cast<double>(t) * std::exp(-std::log(10000.0) * static_cast<double>(i - i % 2) / static_cast<double>(d_model));
      pe[static_cast<std::size_t>(t * d_model + i)] = i % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  }
  register_buffer("pe", Tensor::from_vector(pe, {max_len, d_model}).to(dtype));
}

NodeRef SinusoidalPositionalEncoding::call(const NodeRef& x) {
  check_positions(x, d_model_, max_len_, batch_first_, "SinusoidalPositionalEncoding");
  return op::add(x, positions(NodeRef(buffer("pe")), x, batch_first_));
}

LearnedPositionalEncoding::LearnedPositionalEncoding(std::int64_t max_len, std::int64_t d_model, bool batch_first,
                                                     DType dtype, Generator* generator)
    : Module({Variable("x")}), max_len_(max_len), d_model_(d_model), batch_first_(batch_first) {
  if (d_model <= 0 || max_len <= 0) throw ShapeError("LearnedPositionalEncoding: sizes must be positive");
  register_parameter("weight", init::normal({max_len, d_model}, 0.0, 1.0, generator_of(generator), dtype));
}

NodeRef LearnedPositionalEncoding::call(const NodeRef& x) {
  check_positions(x, d_model_, max_len_, batch_first_, "LearnedPositionalEncoding");
  return op::add(x, positions(param("weight"), x, batch_first_));
}

}  // namespace zkynet::nn
