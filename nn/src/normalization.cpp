#include <zkynet/framework/error.h>
#include <zkynet/nn/normalization.h>
#include <zkynet/ops/normalization.h>

#include <string>

namespace zkynet::nn {

namespace {

void require_floating(DType dtype, const std::string& what) {
  if (!is_floating(dtype)) throw TypeError(what + ": parameters must be float32 or float64");
}

}  // namespace

// ---- LayerNorm -----------------------------------------------------------------------------

LayerNorm::LayerNorm(Shape normalized_shape, LayerNormOptions options)
    : Module({Variable("x")}),
      shape_(std::move(normalized_shape)),
      eps_(options.eps),
      affine_(options.elementwise_affine) {
  const std::string what = "LayerNorm(" + shape_str(shape_) + ")";
  if (shape_.empty()) throw ShapeError(what + ": normalized_shape must have at least one dimension");
  for (auto d : shape_) {
    if (d <= 0) throw ShapeError(what + ": normalized_shape dimensions must be positive");
  }
  require_floating(options.dtype, what);
  if (affine_) {
    register_parameter("weight", Tensor::ones(shape_, options.dtype));
    register_parameter("bias", Tensor::zeros(shape_, options.dtype)).is_bias(true);  // the scale stays a weight
  }
}

NodeRef LayerNorm::call(const NodeRef& x) {
  if (!affine_) return op::layer_norm(x, shape_, NodeRef(), NodeRef(), eps_);
  return op::layer_norm(x, shape_, param("weight"), param("bias"), eps_);
}

// ---- BatchNorm1d / BatchNorm2d -------------------------------------------------------------

namespace detail {

BatchNormBase::BatchNormBase(ModuleBase& self, std::string layer, std::int64_t num_features,
                             const BatchNormOptions& options)
    : layer_(std::move(layer)), num_features_(num_features), options_(options) {
  if (num_features <= 0) throw ShapeError(layer_ + ": num_features must be positive");
  require_floating(options.dtype, layer_);
  if (options.affine) {
    self.register_parameter("weight", Tensor::ones({num_features}, options.dtype));
    self.register_parameter("bias", Tensor::zeros({num_features}, options.dtype)).is_bias(true);
  }
  if (options.track_running_stats) {
    self.register_buffer("running_mean", Tensor::zeros({num_features}, options.dtype));
    self.register_buffer("running_var", Tensor::ones({num_features}, options.dtype));
    self.register_buffer("num_batches_tracked", Tensor::zeros({}, DType::Int64));
  }
}

std::string BatchNormBase::cumulative_refusal(bool training) const {
  if (!training || !options_.track_running_stats || options_.momentum) return {};
  return layer_ + " with momentum = nullopt (a cumulative average) weighs each batch by 1 / num_batches_tracked, a "
                  "number read from a buffer at each call, which a replay would freeze (give a momentum, or compile "
                  "in evaluation mode)";
}

NodeRef BatchNormBase::forward(ModuleBase& self, const NodeRef& x, std::int64_t min_rank, std::int64_t max_rank,
                               const char* expected) {
  // Errors raised in a call are prefixed with the module's path, so they need not name the layer.
  const Tensor& value = x.value();
  if (value.dim() < min_rank || value.dim() > max_rank) {
    throw ShapeError(std::string("expected ") + expected + " input, got " + std::to_string(value.dim()) + "-d " +
                     shape_str(value.shape()));
  }
  if (value.size(1) != num_features_) {
    throw ShapeError("input " + shape_str(value.shape()) + " has " + std::to_string(value.size(1)) +
                     " channels on axis 1, expected num_features = " + std::to_string(num_features_));
  }
  const NodeRef weight = options_.affine ? NodeRef(self.param("weight")) : NodeRef();
  const NodeRef bias = options_.affine ? NodeRef(self.param("bias")) : NodeRef();
  const bool training = self.is_training();
  if (!options_.track_running_stats) {
    // torch: without running statistics both modes normalize with the batch's own.
    return op::batch_norm(x, Tensor(), Tensor(), weight, bias, true, 0.0, options_.eps);
  }
  const Tensor& running_mean = self.buffer("running_mean");
  const Tensor& running_var = self.buffer("running_var");
  if (!training) {
    return op::batch_norm(x, running_mean, running_var, weight, bias, false, 0.0, options_.eps);
  }
  Tensor& count = self.buffer("num_batches_tracked");
  const double batches = count.item() + 1.0;
  const double factor = options_.momentum ? *options_.momentum : 1.0 / batches;
  NodeRef y = op::batch_norm(x, running_mean, running_var, weight, bias, true, factor, options_.eps);
  count.fill_(batches);  // counted once the batch went through
  return y;
}

}  // namespace detail

BatchNorm1d::BatchNorm1d(std::int64_t num_features, BatchNormOptions options)
    : Module({Variable("x")}),
      BatchNormBase(*this, "BatchNorm1d(" + std::to_string(num_features) + ")", num_features, options) {}

NodeRef BatchNorm1d::call(const NodeRef& x) { return forward(*this, x, 2, 3, "2-d (N, C) or 3-d (N, C, L)"); }

BatchNorm2d::BatchNorm2d(std::int64_t num_features, BatchNormOptions options)
    : Module({Variable("x")}),
      BatchNormBase(*this, "BatchNorm2d(" + std::to_string(num_features) + ")", num_features, options) {}

NodeRef BatchNorm2d::call(const NodeRef& x) { return forward(*this, x, 4, 4, "4-d (N, C, H, W)"); }

}  // namespace zkynet::nn
