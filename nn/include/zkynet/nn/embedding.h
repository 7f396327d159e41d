// Embedding: PyTorch's nn.Embedding, a lookup table of `num_embeddings` rows of size
// `embedding_dim` (weight (num_embeddings, embedding_dim), initialized N(0, 1) as in torch).
//
//   nn::Embedding emb(1000, 64);                 // float32
//   ModuleGraph e = emb(tokens);                 // tokens (B, T) int64 -> (B, T, 64)
//
// The input is an int64 tensor of indices in [0, num_embeddings) (never differentiated); the
// gradient is scatter-added into the weight's rows. With padding_idx (negative: counted from
// the end, as torch), that row starts as zeros and gets no gradient: positions holding it pass
// its value through a stop_gradient.
//   nn::Embedding tokens(100, 16, {.padding_idx = 0});
// Not supported (unlike torch): max_norm, scale_grad_by_freq, sparse gradients.
#pragma once

#include <zkynet/framework/module.h>

#include <cstdint>
#include <optional>

namespace zkynet::nn {

struct EmbeddingOptions {
  DType dtype = DType::Float32;
  Generator* generator = nullptr;  // default_generator() when null
  std::optional<std::int64_t> padding_idx = std::nullopt;  // a row without gradient, initialized to zeros
};

class Embedding : public Module<Embedding> {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, EmbeddingOptions options = {});
  NodeRef call(const NodeRef& indices);

  std::int64_t num_embeddings() const { return num_; }
  std::int64_t embedding_dim() const { return dim_; }
  std::optional<std::int64_t> padding_idx() const { return padding_idx_; }  // normalized to [0, num)

 private:
  std::int64_t num_;
  std::int64_t dim_;
  std::optional<std::int64_t> padding_idx_;
};

}  // namespace zkynet::nn
