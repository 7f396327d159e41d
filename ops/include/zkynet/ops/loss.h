// Softmax, log-softmax, logsumexp and the usual losses, named and defined as in
// torch.nn.functional. Every one is hand-coded (forward and VJP side by side) and shifts by
// the maximum, so logits in the thousands give finite results.
//
//   NodeRef p = op::softmax(logits);                       // over the last axis
//   NodeRef loss = op::cross_entropy(model(x), labels);    // logits (N, C), labels (N,) int64
//   NodeRef total = op::mse_loss(pred, y, op::Reduction::Sum);
//
// Class targets are int64 tensors; they are never differentiated. Not supported (unlike
// PyTorch): class weights, ignore_index, label smoothing, probability targets, and the
// (N, C, d1, ...) layouts of cross_entropy and nll_loss.
#pragma once

#include <zkynet/framework/node.h>

#include <cstdint>

namespace zkynet::op {

// How a loss combines its per-element values: kept as they are, averaged, or summed.
enum class Reduction { None, Mean, Sum };

// exp(x) / sum(exp(x)) along `axis` (negative counts from the end).
NodeRef softmax(const NodeRef& x, std::int64_t axis = -1);
// x - logsumexp(x) along `axis`.
NodeRef log_softmax(const NodeRef& x, std::int64_t axis = -1);
// log(sum(exp(x))) over `axes` (all axes when empty), like torch.logsumexp.
NodeRef logsumexp(const NodeRef& x, const Shape& axes, bool keepdim = false);

// -log_softmax(logits)[n, target[n]], reduced over n. logits (N, C) with target (N,), or
// logits (C,) with a 0-d target.
NodeRef cross_entropy(const NodeRef& logits, const NodeRef& target, Reduction reduction = Reduction::Mean);
// -log_probs[n, target[n]], reduced over n; shapes as for cross_entropy.
NodeRef nll_loss(const NodeRef& log_probs, const NodeRef& target, Reduction reduction = Reduction::Mean);
// (input - target)^2 elementwise; input and target have the same shape and both get gradients.
NodeRef mse_loss(const NodeRef& input, const NodeRef& target, Reduction reduction = Reduction::Mean);
// -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] elementwise, computed stably from the
// logits x; input and target have the same shape and both get gradients.
NodeRef binary_cross_entropy_with_logits(const NodeRef& input, const NodeRef& target,
                                         Reduction reduction = Reduction::Mean);

}  // namespace zkynet::op
