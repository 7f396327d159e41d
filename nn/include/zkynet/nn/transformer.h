// Transformer layers with torch.nn's names, arguments, parameter names and results, so that a
// PyTorch state_dict loads through nn::load_state_dict: GELU, MultiheadAttention,
// TransformerEncoderLayer, TransformerEncoder, TransformerDecoderLayer, TransformerDecoder, and the
// positional encodings.
//
//   nn::MultiheadAttention mha(64, 4, {.batch_first = true});
//   nn::MhaOutput r = mha.forward(x, x, x, {.need_weights = false, .is_causal = true});  // r.output (N, L, 64)
//
//   nn::TransformerEncoderLayer layer(64, 4, {.dim_feedforward = 256, .dropout = 0.0, .batch_first = true});
//   nn::TransformerEncoder encoder(layer.options(), 2, /*final_norm=*/true);   // layers.0., layers.1., norm.
//   ModuleGraph h = encoder(x);                                   // x (N, L, 64), or encoder.forward(x, mask)
//
// Masks are Tensors (constants), with torch.nn.MultiheadAttention's meanings, which are the
// opposite of scaled_dot_product_attention's: an int64 mask (a numpy bool array from Python) is
// boolean with nonzero = NOT allowed to attend (True = masked out, as torch); a floating mask is
// added to the scores. attn_mask is (L, S) or (N * num_heads, L, S); key_padding_mask is (N, S).
// Without need_weights, attention runs in the fused op::scaled_dot_product_attention (memory
// linear in the sequence length); with it, in the unfused matmul/softmax path, and the weights
// (after dropout, as torch) are returned averaged over the heads (N, L, S) or per head
// (N, num_heads, L, S). is_causal without attn_mask applies the causal mask.
// Not supported (unlike torch): kdim/vdim different from embed_dim, add_bias_kv, add_zero_attn,
// unbatched (2-d) inputs, gradients through floating masks, CUDA (scaled_dot_product_attention
// has no CUDA kernel yet).
#pragma once

#include <zkynet/framework/module.h>
#include <zkynet/nn/dropout.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/normalization.h>
#include <zkynet/nn/sequential.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zkynet::nn {

// torch.nn.GELU: approximate "none" (erf) or "tanh".
class GELU : public Module<GELU> {
 public:
  explicit GELU(std::string approximate = "none");
  NodeRef call(const NodeRef& x);
  const std::string& approximate() const { return approximate_; }

 private:
  std::string approximate_;
};

struct MultiheadAttentionOptions {
  double dropout = 0.0;  // on the attention probabilities, in training mode
  bool bias = true;      // in_proj_bias and out_proj.bias
  bool batch_first = false;
  DType dtype = DType::Float32;
  Generator* generator = nullptr;  // initialization and dropout; default_generator() when null
};

struct MhaCall {
  Tensor key_padding_mask = Tensor();  // (N, S), or undefined
  bool need_weights = true;   // torch's default
  Tensor attn_mask = Tensor();         // (L, S) or (N * num_heads, L, S), or undefined
  bool average_attn_weights = true;
  bool is_causal = false;
};

struct MhaOutput {
  ModuleGraph output;  // (N, L, E) batch_first, else (L, N, E)
  NodeRef weights;     // undefined unless need_weights
};

// torch.nn.MultiheadAttention: in_proj_weight (3E, E) (xavier_uniform), in_proj_bias (3E)
// (zeros), out_proj.weight (E, E), out_proj.bias (E) (zeros).
class MultiheadAttention : public Module<MultiheadAttention> {
 public:
  MultiheadAttention(std::int64_t embed_dim, std::int64_t num_heads, MultiheadAttentionOptions options = {});
  // A call with masks and flags; operator()(q, k, v) is forward(q, k, v, {}) and returns the output.
  MhaOutput forward(const NodeRef& query, const NodeRef& key, const NodeRef& value, const MhaCall& call = {});
  NodeRef call(const NodeRef& query, const NodeRef& key, const NodeRef& value);

  std::int64_t embed_dim() const { return embed_dim_; }
  std::int64_t num_heads() const { return heads_; }
  const MultiheadAttentionOptions& options() const { return options_; }

 private:
  std::int64_t embed_dim_, heads_;
  MultiheadAttentionOptions options_;
  Linear out_proj_;
  MhaCall pending_;      // the masks and flags of the call in progress
  NodeRef last_weights_;
};

struct TransformerEncoderLayerOptions {
  std::int64_t d_model = 512;
  std::int64_t nhead = 8;
  std::int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  std::string activation = "relu";  // or "gelu"
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;
  bool bias = true;
  DType dtype = DType::Float32;
  Generator* generator = nullptr;
};

// torch.nn.TransformerEncoderLayer: self_attn, linear1, dropout, linear2, norm1, norm2,
// dropout1, dropout2; post-norm (x = norm1(x + sa(x)); x = norm2(x + ff(x))) or, with
// norm_first, pre-norm (x = x + sa(norm1(x)); x = x + ff(norm2(x))).
class TransformerEncoderLayer : public Module<TransformerEncoderLayer> {
 public:
  TransformerEncoderLayer(std::int64_t d_model, std::int64_t nhead, TransformerEncoderLayerOptions options = {});
  explicit TransformerEncoderLayer(const TransformerEncoderLayerOptions& options)
      : TransformerEncoderLayer(options.d_model, options.nhead, options) {}
  // src_mask and src_key_padding_mask as MultiheadAttention's attn_mask and key_padding_mask.
  ModuleGraph forward(const NodeRef& src, const Tensor& src_mask = Tensor(),
                      const Tensor& src_key_padding_mask = Tensor(), bool is_causal = false);
  NodeRef call(const NodeRef& src);

  const TransformerEncoderLayerOptions& options() const { return options_; }
  MultiheadAttention& self_attn() { return self_attn_; }

 private:
  NodeRef self_attention_block(const NodeRef& x);
  NodeRef feed_forward_block(const NodeRef& x);

  TransformerEncoderLayerOptions options_;
  MultiheadAttention self_attn_;
  Linear linear1_, linear2_;
  Dropout dropout_, dropout1_, dropout2_;
  LayerNorm norm1_, norm2_;
  Tensor src_mask_, key_padding_mask_;
  bool is_causal_ = false;
};

// torch.nn.TransformerEncoder: num_layers layers built from `layer` (layers.0, layers.1, ...;
// each initialized afresh, where torch deep-copies one layer) and, with final_norm, a LayerNorm
// (norm) after the last.
class TransformerEncoder : public Module<TransformerEncoder> {
 public:
  TransformerEncoder(const TransformerEncoderLayerOptions& layer, std::int64_t num_layers, bool final_norm = false);
  ModuleGraph forward(const NodeRef& src, const Tensor& mask = Tensor(), const Tensor& src_key_padding_mask = Tensor(),
                      bool is_causal = false);
  NodeRef call(const NodeRef& src);

  std::int64_t num_layers() const { return static_cast<std::int64_t>(layer_list_.size()); }
  TransformerEncoderLayer& layer(std::int64_t i) { return *layer_list_.at(static_cast<std::size_t>(i)); }

 private:
  Sequential layers_;  // the container torch calls layers (a ModuleList): names layers.0, layers.1, ...
  std::vector<TransformerEncoderLayer*> layer_list_;
  std::unique_ptr<LayerNorm> norm_;
  Tensor mask_, key_padding_mask_;
  bool is_causal_ = false;
};

// torch.nn.TransformerDecoderLayer: self_attn, multihead_attn (over the encoder's memory),
// linear1, dropout, linear2, norm1, norm2, norm3, dropout1, dropout2, dropout3; post-norm
// (x = norm1(x + sa(x)); x = norm2(x + mha(x, memory)); x = norm3(x + ff(x))) or, with
// norm_first, pre-norm (x = x + sa(norm1(x)); x = x + mha(norm2(x), memory); x = x + ff(norm3(x))).
// Options as TransformerEncoderLayer's.
struct DecoderMasks {
  Tensor tgt_mask = Tensor();
  Tensor memory_mask = Tensor();
  Tensor tgt_key_padding_mask = Tensor();
  Tensor memory_key_padding_mask = Tensor();
  bool tgt_is_causal = false;
  bool memory_is_causal = false;
};

class TransformerDecoderLayer : public Module<TransformerDecoderLayer> {
 public:
  TransformerDecoderLayer(std::int64_t d_model, std::int64_t nhead, TransformerEncoderLayerOptions options = {});
  explicit TransformerDecoderLayer(const TransformerEncoderLayerOptions& options)
      : TransformerDecoderLayer(options.d_model, options.nhead, options) {}
  ModuleGraph forward(const NodeRef& tgt, const NodeRef& memory, const DecoderMasks& masks = {});
  NodeRef call(const NodeRef& tgt, const NodeRef& memory);

  const TransformerEncoderLayerOptions& options() const { return options_; }

 private:
  NodeRef attend(MultiheadAttention& attn, Dropout& drop, const NodeRef& x, const NodeRef& mem, const Tensor& mask,
                 const Tensor& padding, bool causal);

  TransformerEncoderLayerOptions options_;
  MultiheadAttention self_attn_, multihead_attn_;
  Linear linear1_, linear2_;
  Dropout dropout_, dropout1_, dropout2_, dropout3_;
  LayerNorm norm1_, norm2_, norm3_;
  DecoderMasks masks_;
};

// torch.nn.TransformerDecoder: num_layers decoder layers (layers.N) and an optional final norm.
class TransformerDecoder : public Module<TransformerDecoder> {
 public:
  TransformerDecoder(const TransformerEncoderLayerOptions& layer, std::int64_t num_layers, bool final_norm = false);
  ModuleGraph forward(const NodeRef& tgt, const NodeRef& memory, const DecoderMasks& masks = {});
  NodeRef call(const NodeRef& tgt, const NodeRef& memory);

  std::int64_t num_layers() const { return static_cast<std::int64_t>(layer_list_.size()); }

 private:
  Sequential layers_;  // as TransformerEncoder's
  std::vector<TransformerDecoderLayer*> layer_list_;
  std::unique_ptr<LayerNorm> norm_;
  DecoderMasks masks_;
};

// The sinusoidal positional encoding of "Attention Is All You Need" (and PyTorch's tutorial):
// pe[t, 2i] = sin(t / 10000^(2i / d_model)), pe[t, 2i + 1] = cos(...), a (max_len, d_model)
// buffer named pe; call(x) returns x + pe[:T] for x (N, T, d_model) (batch_first) or
// (T, N, d_model).
class SinusoidalPositionalEncoding : public Module<SinusoidalPositionalEncoding> {
 public:
  SinusoidalPositionalEncoding(std::int64_t d_model, std::int64_t max_len = 5000, bool batch_first = true,
                               DType dtype = DType::Float32);
  NodeRef call(const NodeRef& x);

 private:
  std::int64_t d_model_, max_len_;
  bool batch_first_;
};

// A learned positional embedding: weight (max_len, d_model), N(0, 1) as nn.Embedding's;
// call(x) returns x + weight[:T], laid out as SinusoidalPositionalEncoding's.
class LearnedPositionalEncoding : public Module<LearnedPositionalEncoding> {
 public:
  LearnedPositionalEncoding(std::int64_t max_len, std::int64_t d_model, bool batch_first = true,
                            DType dtype = DType::Float32, Generator* generator = nullptr);
  NodeRef call(const NodeRef& x);

 private:
  std::int64_t max_len_, d_model_;
  bool batch_first_;
};

}  // namespace zkynet::nn
