#include <zkynet/framework/error.h>
#include <zkynet/nn/embedding.h>
#include <zkynet/nn/init.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>

#include <string>

namespace zkynet::nn {

Embedding::Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, EmbeddingOptions options)
    : Module({Variable("indices").requires_grad(false)}), num_(num_embeddings), dim_(embedding_dim) {
  const std::string what = "Embedding(" + std::to_string(num_embeddings) + ", " + std::to_string(embedding_dim) + ")";
  if (num_embeddings <= 0 || embedding_dim <= 0) throw ShapeError(what + ": sizes must be positive");
  if (!is_floating(options.dtype)) throw TypeError(what + ": the weight must be float32 or float64");
  checked_nbytes({num_embeddings, embedding_dim}, options.dtype, what);  // before any allocation
  Generator& gen = options.generator ? *options.generator : default_generator();
  if (options.padding_idx) {
    const std::int64_t p = *options.padding_idx;
    if (p >= num_embeddings || p < -num_embeddings) {
      throw ShapeError(what + ": padding_idx " + std::to_string(p) + " must lie within num_embeddings");
    }
    padding_idx_ = p < 0 ? p + num_embeddings : p;
  }
  Tensor w = init::normal({num_embeddings, embedding_dim}, 0.0, 1.0, gen, options.dtype);
  if (padding_idx_) w.slice(0, *padding_idx_, *padding_idx_ + 1).fill_(0.0);
  register_parameter("weight", w);
}

// With padding_idx: where(indices == padding_idx, stop_gradient(rows), rows): the same values,
// no gradient into that row.
NodeRef Embedding::call(const NodeRef& indices) {
  const NodeRef rows = op::embedding(indices, param("weight"));
  if (!padding_idx_) return rows;
  const Tensor& idx = indices.value();
  Tensor pad = Tensor::empty(idx.shape(), DType::Int64);
  const Tensor src = idx.cpu().contiguous();
  for (std::int64_t i = 0; i < src.numel(); ++i) pad.data<std::int64_t>()[i] = src.data<std::int64_t>()[i] == *padding_idx_;
  Shape s = idx.shape();
  s.push_back(1);
  return op::where(pad.reshape(s).to(idx.device()), op::stop_gradient(rows), rows);
}

}  // namespace zkynet::nn
