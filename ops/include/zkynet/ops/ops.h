// zkynet's operators on graph values. Inside a module's call() they record nodes in the
// call's graph; on plain values they just compute.
//
//   NodeRef y = op::mult(op::add(x, param("w")), op::square(x));   // (x + w) * x^2
//   NodeRef loss = op::mean(op::square(op::sub(op::matmul(a, w), target)));
//
// Binary operators broadcast like numpy; their gradients are summed back to each operand's
// shape. Names follow torch.nn.functional where one exists (zkynet's own: mult, dot).
#pragma once

#include <zkynet/framework/node.h>

namespace zkynet::op {

// Arithmetic (hand-coded derivatives).
NodeRef add(const NodeRef& a, const NodeRef& b);
NodeRef sub(const NodeRef& a, const NodeRef& b);
NodeRef mult(const NodeRef& a, const NodeRef& b);
NodeRef div(const NodeRef& a, const NodeRef& b);
NodeRef neg(const NodeRef& x);
NodeRef square(const NodeRef& x);
NodeRef exp(const NodeRef& x);
NodeRef log(const NodeRef& x);
NodeRef sqrt(const NodeRef& x);
NodeRef tanh(const NodeRef& x);
NodeRef relu(const NodeRef& x);
NodeRef sigmoid(const NodeRef& x);  // derivative from the output: finite at any input

// Jacobian-based: forward written once over the scalar type, derivatives from dual numbers.
NodeRef pow(const NodeRef& base, const NodeRef& exponent);
NodeRef abs(const NodeRef& x);
// tanh through the Jacobian-based path; equals op::tanh (tests compare the two kinds).
NodeRef tanh_dual(const NodeRef& x);

// Reductions over all axes (empty `axes`) or the given ones.
NodeRef sum(const NodeRef& x, const Shape& axes = {}, bool keepdim = false);
NodeRef mean(const NodeRef& x, const Shape& axes = {}, bool keepdim = false);

// Shapes.
NodeRef reshape(const NodeRef& x, const Shape& shape);
NodeRef transpose(const NodeRef& x, std::int64_t axis0 = -2, std::int64_t axis1 = -1);

// Gradient control: the value of x, through which no gradient flows (jax.lax.stop_gradient,
// torch's detach). It records a node named "stop_gradient", so the graph shows where the flow stops.
NodeRef stop_gradient(const NodeRef& x);
NodeRef detach(const NodeRef& x);  // the same operator, under PyTorch's name

// Linear algebra: numpy matmul (BLAS), and zkynet's dot (numpy.dot: inner product of
// vectors, matrix product of matrices, sum over the last axis of a and the first of b...
// here restricted to 1-d and 2-d operands).
NodeRef matmul(const NodeRef& a, const NodeRef& b);
NodeRef dot(const NodeRef& a, const NodeRef& b);
// torch.nn.functional.linear: x (..., in) W^T (+ b), weight (out, in), bias (out).
NodeRef linear(const NodeRef& x, const NodeRef& weight);
NodeRef linear(const NodeRef& x, const NodeRef& weight, const NodeRef& bias);

}  // namespace zkynet::op

namespace zkynet {
inline NodeRef operator+(const NodeRef& a, const NodeRef& b) { return op::add(a, b); }
inline NodeRef operator-(const NodeRef& a, const NodeRef& b) { return op::sub(a, b); }
inline NodeRef operator*(const NodeRef& a, const NodeRef& b) { return op::mult(a, b); }
inline NodeRef operator/(const NodeRef& a, const NodeRef& b) { return op::div(a, b); }
inline NodeRef operator-(const NodeRef& x) { return op::neg(x); }
}  // namespace zkynet
