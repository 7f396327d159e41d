// Normalization and dropout, named and defined as in torch.nn.functional. Each is hand-coded
// (forward and VJP side by side), for float32 and float64 inputs.
//
//   NodeRef y = op::layer_norm(x, {64}, param("weight"), param("bias"));     // x (..., 64)
//   NodeRef h = op::batch_norm(x, running_mean, running_var, param("weight"), param("bias"),
//                              /*training=*/true);                          // x (N, C) or (N, C, H, W)
//   NodeRef d = op::dropout(h, 0.5, /*training=*/true, gen);                // inverted dropout
//
// layer_norm normalizes over the trailing `normalized_shape` dimensions, batch_norm over every
// axis but the channel axis 1; both use the biased variance and 1 / sqrt(var + eps), and their
// weight and bias (optional: an undefined NodeRef() for none) have the normalized shape, or
// (C,) for batch_norm. Statistics are accumulated in double.
//
// batch_norm in training mode normalizes with the batch's statistics and, when running_mean and
// running_var are given (defined (C,) tensors, updated IN PLACE), blends them in as torch does:
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var * n / (n - 1)   (unbiased, n = N H W)
// In evaluation mode it normalizes with the running statistics, which it then needs. The running
// statistics are never differentiated; the values used by an evaluation-mode call are copied,
// so later updates do not change its gradients.
#pragma once

#include <zkynet/framework/node.h>
#include <zkynet/framework/tensor.h>

namespace zkynet::op {

// torch.nn.functional.layer_norm: (x - mean) / sqrt(var + eps) * weight + bias, the statistics
// taken over the last normalized_shape.size() axes of x, which must equal normalized_shape.
NodeRef layer_norm(const NodeRef& x, const Shape& normalized_shape, const NodeRef& weight = NodeRef(),
                   const NodeRef& bias = NodeRef(), double eps = 1e-5);

// torch.nn.functional.batch_norm over x (N, C, ...) (at least 2-d; channels on axis 1).
// running_mean / running_var: (C,) floating tensors, or both undefined (Tensor()) for none
// (training mode only). weight / bias: (C,) or undefined.
NodeRef batch_norm(const NodeRef& x, const Tensor& running_mean, const Tensor& running_var,
                   const NodeRef& weight = NodeRef(), const NodeRef& bias = NodeRef(), bool training = false,
                   double momentum = 0.1, double eps = 1e-5);

// torch.nn.functional.dropout (inverted): in training mode each element is zeroed with
// probability p, the others scaled by 1 / (1 - p). The mask is keyed by one draw from `gen`
// and is a counter-based function of that key and each element's index, so a generator with
// the same seed gives the same mask, on the CPU and on CUDA alike. p = 1 zeroes everything.
// In evaluation mode, or with p = 0, x is returned as it is (no node is recorded).
// p outside [0, 1] is a UsageError.
NodeRef dropout(const NodeRef& x, double p, bool training, Generator& gen);

}  // namespace zkynet::op
