// Batched matrix product, torch.bmm: a (B, n, k) x b (B, k, m) -> (B, n, m), one GEMM per batch
// entry (BLAS). Unlike op::matmul nothing broadcasts: both operands are 3-d with equal batch
// sizes and one floating dtype; anything else is a ShapeError (TypeError for dtypes).
//
//   NodeRef scores = op::bmm(q, op::transpose(k));   // (B, T, d) x (B, d, T) -> (B, T, T)
#pragma once

#include <zkynet/framework/node.h>

namespace zkynet::op {

NodeRef bmm(const NodeRef& a, const NodeRef& b);

}  // namespace zkynet::op
