#include <zkynet/framework/error.h>
#include <zkynet/nn/embedding.h>
#include <zkynet/nn/init.h>
#include <zkynet/ops/indexing.h>

#include <string>

namespace zkynet::nn {

Embedding::Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, EmbeddingOptions options)
    : Module({Variable("indices").requires_grad(false)}), num_(num_embeddings), dim_(embedding_dim) {
  const std::string what = "Embedding(" + std::to_string(num_embeddings) + ", " + std::to_string(embedding_dim) + ")";
  if (num_embeddings <= 0 || embedding_dim <= 0) throw ShapeError(what + ": sizes must be positive");
  if (!is_floating(options.dtype)) throw TypeError(what + ": the weight must be float32 or float64");
  checked_nbytes({num_embeddings, embedding_dim}, options.dtype, what);  // before any allocation
  Generator& gen = options.generator ? *options.generator : default_generator();
  register_parameter("weight", init::normal({num_embeddings, embedding_dim}, 0.0, 1.0, gen, options.dtype));
}

NodeRef Embedding::call(const NodeRef& indices) { return op::embedding(indices, param("weight")); }

}  // namespace zkynet::nn
