// Indexing operators, named and defined as in torch (torch.cat is op::concat):
//
//   NodeRef h = op::concat({a, b}, 1);                 // (2,3) and (2,4) -> (2,7)
//   NodeRef s = op::stack({a, a}, 0);                  // (2,3) twice -> (2,2,3)
//   std::vector<NodeRef> parts = op::split(h, {3, 4}, 1);   // back to (2,3) and (2,4)
//   NodeRef rows = op::index_select(x, 0, idx);        // idx: 1-d int64
//   NodeRef e = op::embedding(tokens, param("weight"));     // tokens (B,T) int64 -> (B,T,dim)
//   NodeRef y = op::where(op::gather(mask, 1, idx), a, 0.0);
//
// Values may be float32, float64 or int64; gradients flow to floating-point operands only.
// Index tensors are int64 and never differentiated; an index outside [0, size) is an
// IndexError naming the operator, the index and the size (negative indices are refused, as
// in torch). Not supported (unlike torch): concat of 0-d tensors or of mixed dtypes (no
// type promotion, no skipping of legacy empty (0,) tensors), index_select/gather on 0-d
// tensors, embedding's padding_idx/max_norm/sparse, negative slice steps.
#pragma once

#include <zkynet/framework/node.h>

#include <cstdint>
#include <vector>

namespace zkynet::op {

// torch.cat: joins tensors of one dtype whose shapes agree except along `axis`.
NodeRef concat(const std::vector<NodeRef>& xs, std::int64_t axis = 0);
// torch.stack: joins tensors of one shape and dtype along a new axis `axis` (in [-(d+1), d]).
NodeRef stack(const std::vector<NodeRef>& xs, std::int64_t axis = 0);

// torch.split: pieces of `split_size` along `axis` (the last one shorter when the size does
// not divide), or pieces of the given `sizes`, which must sum to the axis's size. Each piece
// is an op::slice of x. NOTE: split(x, {2}) picks the first overload (pieces of 2); write
// split(x, std::vector<std::int64_t>{2}) for a one-element list.
std::vector<NodeRef> split(const NodeRef& x, std::int64_t split_size, std::int64_t axis = 0);
std::vector<NodeRef> split(const NodeRef& x, const std::vector<std::int64_t>& sizes, std::int64_t axis = 0);

// x[..., start:stop:step, ...] along `axis`, with Python's rules: negative start and stop
// count from the end, both are clamped to the axis; step must be positive.
NodeRef slice(const NodeRef& x, std::int64_t axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1);

// torch.index_select: the entries index[0], index[1], ... of x along `axis`; index is a
// 1-d (or 0-d, read as one entry) int64 tensor. Repeated indices add up in the gradient.
NodeRef index_select(const NodeRef& x, std::int64_t axis, const NodeRef& index);
// torch.gather: out[i][j][k] = x[index[i][j][k]][j][k] for axis 0 (likewise for the others).
// index has x's number of dimensions and, outside `axis`, sizes no larger than x's.
NodeRef gather(const NodeRef& x, std::int64_t axis, const NodeRef& index);
// F.embedding: weight's rows picked by `indices` (int64, any shape); the result has shape
// indices.shape + (dim,). The gradient is scattered-added into weight's rows.
NodeRef embedding(const NodeRef& indices, const NodeRef& weight);

// torch.where: a where condition is nonzero, else b. The three broadcast together; a and b
// have one dtype (or one is a 0-d number); condition (any dtype) is not differentiated.
NodeRef where(const NodeRef& condition, const NodeRef& a, const NodeRef& b);

}  // namespace zkynet::op
