// Internal: the hooks graph.cpp calls while a compiled call is captured (compile.cpp).
#pragma once

#include <zkynet/framework/node.h>

namespace zkynet::detail {

// Records back(seed) of `root` as an effect of the schedule being captured. UsageError when the
// root is not a node of the captured call (a graph the replay would not recompute).
void record_backward(const NodeRef& root, const Tensor& seed);
// UsageError for back() without a seed on a non-scalar root (Jacobians) during a capture.
void refuse_jacobians_in_capture();

}  // namespace zkynet::detail
