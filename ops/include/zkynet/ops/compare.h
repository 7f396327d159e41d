// Elementwise comparisons, broadcasting like op::add: 1 where the relation holds and 0 where it
// does not, in the operands' dtype (a mask that multiplies: x * op::greater(x, 0.0)); false
// wherever a NaN takes part, but not_equal. Piecewise constant, so no gradient flows through.
//
//   NodeRef positive = op::greater(x, 0.0);
//   NodeRef y = op::where(op::less_equal(a, b), a, b);
//
// (No C++ operators for them: NodeRef's == is identity, as for graphs. Python's < <= > >= on
// nodes call these.)
#pragma once

#include <zkynet/framework/node.h>

namespace zkynet::op {

NodeRef greater(const NodeRef& a, const NodeRef& b);
NodeRef greater_equal(const NodeRef& a, const NodeRef& b);
NodeRef less(const NodeRef& a, const NodeRef& b);
NodeRef less_equal(const NodeRef& a, const NodeRef& b);
NodeRef equal(const NodeRef& a, const NodeRef& b);
NodeRef not_equal(const NodeRef& a, const NodeRef& b);

}  // namespace zkynet::op
