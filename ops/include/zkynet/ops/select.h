// Operators that select values (clamp, maximum, minimum, max, argmax) and that measure
// spread (var, std), named and defined as in torch:
//
//   NodeRef y = op::clamp(x, -1.0, 1.0);                 // op::clamp(x, 0.0, std::nullopt) = relu
//   NodeRef m = op::maximum(a, b);                       // broadcasting, like op::add
//   NodeRef best = op::max(logits, 1);                   // (N,C) -> (N,), torch.max(x, 1).values
//   NodeRef label = op::argmax(logits, 1);               // int64, no gradient
//   NodeRef s = op::std(x, {0}, /*unbiased=*/true, /*keepdim=*/true);
//
// Gradients follow torch 1.13: clamp passes the gradient where min <= x <= max (bounds
// included) and 0 elsewhere (NaN included); maximum and minimum split it in halves on ties;
// max gives it to the element argmax picks (the first maximum, or the first NaN). NaNs
// propagate through every value. clamp, maximum, minimum, max and argmax also take int64
// tensors (no gradient; clamp's bounds are converted to int64); var and std need floating
// point. Not supported (unlike torch): max over all axes, argmax of the flattened tensor.
#pragma once

#include <zkynet/framework/node.h>

#include <cstdint>
#include <optional>

namespace zkynet::op {

// torch.clamp: min(max(x, min), max) with either bound left out; at least one must be given.
// With min > max every element becomes max, as in torch.
NodeRef clamp(const NodeRef& x, std::optional<double> min, std::optional<double> max);

// torch.maximum / torch.minimum: elementwise, broadcasting; a and b have one dtype (or one
// is a 0-d number).
NodeRef maximum(const NodeRef& a, const NodeRef& b);
NodeRef minimum(const NodeRef& a, const NodeRef& b);

// torch.max(x, axis, keepdim).values and torch.argmax(x, axis, keepdim): the largest entry
// along `axis` and its (first) position, as int64. A 0-d x is one entry along axis 0 or -1.
NodeRef max(const NodeRef& x, std::int64_t axis, bool keepdim = false);
NodeRef argmax(const NodeRef& x, std::int64_t axis, bool keepdim = false);

// torch.var / torch.std over `axes` (all when empty): the mean squared deviation from the
// mean, divided by N - 1 when unbiased (Bessel's correction) or by N; std is its square
// root (its gradient is 0 where std is 0, as in torch). N - 1 = 0 gives NaN.
NodeRef var(const NodeRef& x, const Shape& axes = {}, bool unbiased = true, bool keepdim = false);
NodeRef std(const NodeRef& x, const Shape& axes = {}, bool unbiased = true, bool keepdim = false);

}  // namespace zkynet::op
