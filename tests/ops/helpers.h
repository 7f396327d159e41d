// Helpers shared by the operator tests in tests/ops: reverse-mode gradients of a Lambda body,
// a gradient-check assertion, and the message of an expected exception.
#pragma once

#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace zkynet::testing {

using Body = std::function<NodeRef(std::span<const NodeRef>)>;

// Gradients of sum(seed * f(inputs)) with respect to each input, by reverse mode.
inline std::vector<Tensor> vjp(const Body& f, const std::vector<Tensor>& inputs, const Tensor& seed) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < inputs.size(); ++i) names.push_back("x" + std::to_string(i));
  Lambda module(names, f);
  const std::vector<NodeRef> refs(inputs.begin(), inputs.end());
  ModuleGraph g = module.invoke(refs);
  g.back(seed);
  std::vector<Tensor> grads;
  for (const auto& name : names) grads.push_back(g.grad(module.input(name)));
  return grads;
}

// Requires gradcheck(f, inputs) to pass, reporting its message otherwise.
inline void require_gradcheck(const Body& f, const std::vector<Tensor>& inputs) {
  const GradcheckResult r = gradcheck(f, inputs);
  INFO(r.message);
  REQUIRE(r.ok);
}

}  // namespace zkynet::testing
