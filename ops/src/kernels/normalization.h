// The kernels of layer_norm and batch_norm (ops/src/normalization.cpp calls them), on the CPU
// or, for CUDA data, in cuda/normalization.cu (the statistics then live on that device too).
// Shapes and dtypes are checked by the operators; these take them as given, and refuse operands
// on different devices (DeviceError).
//
//   const kernels::NormGroups l{1, rows, features};          // layer_norm over the last axis
//   const kernels::Moments m = kernels::moments(x, l, "layer_norm");
//   const Tensor rstd = kernels::inverse_std(m.var, 1e-5, "layer_norm");
//   const Tensor y = kernels::normalize(x, w, b, l, kernels::AffineAxis::Inner, m.mean, rstd, "layer_norm");
//
// Both norms see their input as groups of elements sharing one mean and variance: element
// (n, g, s) lies at (n * groups + g) * inner + s, and group g holds outer * inner elements.
//   layer_norm: outer = 1, groups = the rows, inner = prod(normalized_shape); weight indexed by s
//   batch_norm: outer = N, groups = C, inner = H * W ...;                     weight indexed by g
// Statistics are float64 tensors of one value per group, summed in double: sequentially on the
// CPU, in per-thread runs and then pairwise on CUDA (equal to rounding).
#pragma once

#include <zkynet/framework/tensor.h>

#include <array>
#include <cstdint>
#include <string_view>

namespace zkynet::kernels {

struct NormGroups {
  std::int64_t outer = 1;
  std::int64_t groups = 1;
  std::int64_t inner = 1;
  std::int64_t count() const { return outer * inner; }  // elements per group
};

// Which index a weight / bias entry follows: s (layer_norm) or g (batch_norm).
enum class AffineAxis { Inner, Group };

struct Moments {
  Tensor mean;  // float64 (groups,)
  Tensor var;   // biased, float64 (groups,)
};

// The mean and biased variance of every group (two passes, in double).
Moments moments(const Tensor& x, const NormGroups& l, std::string_view op);
// 1 / sqrt(var + eps), float64.
Tensor inverse_std(const Tensor& var, double eps, std::string_view op);
// y = (x - mean) * rstd * weight + bias; weight and bias may be undefined.
Tensor normalize(const Tensor& x, const Tensor& weight, const Tensor& bias, const NormGroups& l, AffineAxis axis,
                 const Tensor& mean, const Tensor& rstd, std::string_view op);

struct NormGrads {
  Tensor input, weight, bias;  // undefined where not asked for; weight and bias 1-d
};

// The gradients of normalize() given its output's gradient; `batch_stats`: whether mean and
// rstd were the input's own statistics (so that they depend on it) or fixed ones. With
// xhat = (x - mean) * rstd and dxhat = grad * weight:
//   dx = rstd * (dxhat - mean_group(dxhat) - xhat * mean_group(dxhat * xhat))   (batch_stats)
//   dx = rstd * dxhat                                                            (fixed)
// dweight = sum grad * xhat, dbias = sum grad, over everything a weight entry touches.
NormGrads normalize_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, const NormGroups& l,
                             AffineAxis axis, const Tensor& mean, const Tensor& rstd, bool batch_stats,
                             std::array<bool, 3> needs, std::string_view op);

// batch_norm's running statistics, in place (1-d, any stride):
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var n / (n - 1)   (n = count)
void update_running_stats(const Tensor& running_mean, const Tensor& running_var, const Moments& batch,
                          std::int64_t count, double momentum, std::string_view op);

}  // namespace zkynet::kernels
