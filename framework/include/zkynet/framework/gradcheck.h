// Gradient check: compares reverse-mode derivatives with float64 central differences.
//
//   auto f = [](std::span<const NodeRef> x) { return op::mult(x[0], op::exp(x[1])); };
//   GradcheckResult r = gradcheck(f, {Tensor::randn({3}, gen), Tensor::randn({3}, gen)});
//   REQUIRE(r.ok);   // r.message says which input and element differ, and by how much
#pragma once

#include <zkynet/framework/dtype.h>
#include <zkynet/framework/node.h>
#include <zkynet/framework/tensor.h>

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace zkynet {

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double rtol = 1e-5;  // relative tolerance against the numeric derivative
  double atol = 1e-7;  // absolute tolerance
  // The dtype floating inputs are converted to. Float64 (the default) makes differences
  // accurate; a function whose parameters are float32 (layers are) then fails on mixed dtypes:
  // convert the module with module.to(DType::Float64) first, or check in Float32 with looser
  // eps/rtol/atol (e.g. 1e-3, 1e-2, 1e-3).
  DType dtype = DType::Float64;
};

struct GradcheckResult {
  bool ok = true;
  double max_error = 0.0;  // largest |analytic - numeric| seen
  std::string message;     // the first mismatch, or a summary
};

// Checks the full Jacobian of f at `inputs` (floating ones converted to options.dtype) against
// central differences computed in float64 arithmetic. Floating inputs are differentiated; int64
// inputs are passed through as constants. Parameters f uses are not touched.
GradcheckResult gradcheck(const std::function<NodeRef(std::span<const NodeRef>)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace zkynet
