// Gradient clipping by total norm, with torch.nn.utils.clip_grad_norm_'s semantics.
//
//   loss(model(x), y).back();
//   double norm = optim::clip_grad_norm(model.parameters(), /*max_norm=*/1.0);
//   opt.step();
#pragma once

#include <zkynet/framework/function.h>

#include <vector>

namespace zkynet::optim {

// Scales all gradients in place by min(1, max_norm / (total_norm + 1e-6)) and returns total_norm,
// the norm of the vector of per-parameter gradient norms (the norm of all gradients together).
// The 1e-6 keeps the division finite for zero gradients, so a norm exactly at max_norm is still
// scaled by slightly less than 1, as in torch. Parameters without a gradient are skipped; with
// none, the result is 0. norm_type: p > 0, or infinity for the largest absolute element.
// With error_if_nonfinite, a NaN or infinite total norm throws UsageError before any gradient changes.
double clip_grad_norm(const std::vector<Parameter>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);

}  // namespace zkynet::optim
