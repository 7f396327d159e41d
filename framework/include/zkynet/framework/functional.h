// Function transforms in JAX's names: derivatives of a function written over NodeRefs, with no
// Module class. Every call grounds one graph (a fresh call id, like a module call), runs reverse
// mode over it and returns plain tensors; Parameters the function uses see nothing added to
// their accumulated gradients (torch.autograd.grad's rule).
//
//   auto f = [](std::span<const NodeRef> x) { return op::sum(op::mult(x[0], op::exp(x[1]))); };
//   std::vector<Tensor> g = zkynet::grad(f, {0, 1})({a, b});      // df/da, df/db
//   auto [value, grads] = zkynet::value_and_grad(f)({a, b});       // f(a, b) and df/da
//   std::vector<Tensor> j = zkynet::jacobian(g_fn)({a});           // out.shape + a.shape
//   auto [out, pullback] = zkynet::vjp(g_fn, {a});  pullback(cotangent);   // one VJP per call
#pragma once

#include <zkynet/framework/node.h>
#include <zkynet/framework/tensor.h>

#include <functional>
#include <span>
#include <vector>

namespace zkynet {

using DifferentiableFn = std::function<NodeRef(std::span<const NodeRef>)>;
using GradFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct ValueAndGrad {
  Tensor value;
  std::vector<Tensor> grads;  // one per argnum, in argnums' order
};
using ValueAndGradFn = std::function<ValueAndGrad(const std::vector<Tensor>&)>;

struct VjpResult {
  Tensor value;
  // The cotangent's VJP with respect to every argument (shaped like it); callable many times.
  std::function<std::vector<Tensor>(const Tensor& cotangent)> pullback;
};

// Gradients of a scalar-valued f with respect to the arguments at `argnums` (negative counts
// from the end). A non-scalar result is an error that points to jacobian() and vjp().
GradFn grad(DifferentiableFn f, std::vector<int> argnums = {0});
ValueAndGradFn value_and_grad(DifferentiableFn f, std::vector<int> argnums = {0});
// Full Jacobians, out.shape + argument.shape, one reverse pass per output element (only the
// requested arguments' Jacobians are stored: no limit applies).
GradFn jacobian(DifferentiableFn f, std::vector<int> argnums = {0});
// f's value at args, and its pullback.
VjpResult vjp(DifferentiableFn f, const std::vector<Tensor>& args);

}  // namespace zkynet
