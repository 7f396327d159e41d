// Normalization layers: torch.nn.LayerNorm, BatchNorm1d and BatchNorm2d, with torch's
// argument names and defaults (float32 parameters unless asked otherwise).
//
//   nn::LayerNorm ln({64});                                  // weight ones, bias zeros, shape (64)
//   nn::LayerNorm plain({4, 4}, {.eps = 1e-6, .elementwise_affine = false});
//   nn::BatchNorm1d bn(128);                                 // x (N, 128) or (N, 128, L)
//   nn::BatchNorm2d bn2(16, {.momentum = std::nullopt});     // cumulative average; x (N, 16, H, W)
//   bn.eval();                                               // normalize with the running statistics
//
// BatchNorm keeps running_mean (zeros), running_var (ones) and num_batches_tracked (int64 0-d)
// as buffers (named_buffers(), nn::state_dict), updated in place by each training-mode call:
// num_batches_tracked counts the batches, and the running statistics blend in each batch's
// mean and unbiased variance with factor `momentum`, or 1 / num_batches_tracked when momentum
// is std::nullopt (a cumulative moving average), as in torch. In training mode (train(), the
// default) a call normalizes with the batch's statistics, in evaluation mode (eval()) with the
// running ones. Without track_running_stats there are no buffers and every call, in either
// mode, uses the batch's statistics. With affine, weight (ones) and bias (zeros) have shape (C).
#pragma once

#include <zkynet/framework/module.h>

#include <cstdint>
#include <optional>
#include <string>

namespace zkynet::nn {

struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;  // a learnable weight (ones) and bias (zeros) of normalized_shape
  DType dtype = DType::Float32;
};

// torch.nn.LayerNorm: normalizes over the trailing normalized_shape dimensions of its input.
class LayerNorm : public Module<LayerNorm> {
 public:
  explicit LayerNorm(Shape normalized_shape, LayerNormOptions options = {});
  explicit LayerNorm(std::int64_t normalized_size, LayerNormOptions options = {})
      : LayerNorm(Shape{normalized_size}, options) {}
  NodeRef call(const NodeRef& x);

  const Shape& normalized_shape() const { return shape_; }
  double eps() const { return eps_; }
  bool elementwise_affine() const { return affine_; }

 private:
  Shape shape_;
  double eps_;
  bool affine_;
};

struct BatchNormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // std::nullopt: cumulative moving average
  bool affine = true;                    // a learnable weight (ones) and bias (zeros), shape (C)
  bool track_running_stats = true;       // keep running_mean / running_var / num_batches_tracked
  DType dtype = DType::Float32;          // of the parameters and running statistics
};

namespace detail {

// What BatchNorm1d and BatchNorm2d share: buffers, parameters and the call itself.
class BatchNormBase {
 protected:
  BatchNormBase(ModuleBase& self, std::string layer, std::int64_t num_features, const BatchNormOptions& options);
  // Checks x's rank (one of `ranks`, described by `expected`) and channel count, then normalizes.
  NodeRef forward(ModuleBase& self, const NodeRef& x, std::int64_t min_rank, std::int64_t max_rank,
                  const char* expected);

  // compile() (framework/compile.h): the cumulative average (momentum = nullopt) in training
  // mode reads its factor 1 / num_batches_tracked from a buffer at each call, which a replay
  // would freeze. NOTE: with a fixed momentum replays update the running statistics as calls
  // do, but num_batches_tracked stays where the capture left it.
  std::string cumulative_refusal(bool training) const;

  std::string layer_;  // "BatchNorm1d(3)", for messages
  std::int64_t num_features_;
  BatchNormOptions options_;
};

}  // namespace detail

// torch.nn.BatchNorm1d over (N, C) or (N, C, L) inputs, C = num_features.
class BatchNorm1d : public Module<BatchNorm1d>, detail::BatchNormBase {
 public:
  explicit BatchNorm1d(std::int64_t num_features, BatchNormOptions options = {});
  NodeRef call(const NodeRef& x);
  std::string capture_refusal() const override { return cumulative_refusal(is_training()); }

  std::int64_t num_features() const { return num_features_; }
  const BatchNormOptions& options() const { return options_; }
};

// torch.nn.BatchNorm2d over (N, C, H, W) inputs, C = num_features.
class BatchNorm2d : public Module<BatchNorm2d>, detail::BatchNormBase {
 public:
  explicit BatchNorm2d(std::int64_t num_features, BatchNormOptions options = {});
  NodeRef call(const NodeRef& x);
  std::string capture_refusal() const override { return cumulative_refusal(is_training()); }

  std::int64_t num_features() const { return num_features_; }
  const BatchNormOptions& options() const { return options_; }
};

}  // namespace zkynet::nn
