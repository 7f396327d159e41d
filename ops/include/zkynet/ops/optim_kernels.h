// Fused optimizer steps: the arithmetic of torch.optim's SGD, Adam / AdamW and RMSprop as one
// pass over every element of a parameter and its state, on the parameter's device. nn's
// optimizers call these (they own the state and its lifetime); users may too.
//
//   kernels::SgdSlot slot{w, grad, momentum_buffer, /*first_step=*/true};
//   kernels::sgd_step({&slot, 1}, {.lr = 0.1, .momentum = 0.9});
//
// A list may mix devices and dtypes. Within a slot every tensor has the value's shape, dtype and
// device and is contiguous (UsageError otherwise, naming the optimizer). The value and the state
// are written in place and their versions bumped. On the CPU each element follows torch's
// operation order (so float64 agrees with torch to the last bits); on CUDA one kernel per
// optimizer updates every parameter of a (device, dtype) group, up to a table's worth per launch.
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstdint>
#include <span>

namespace zkynet::kernels {

// ---- SGD (torch.optim.SGD) ------------------------------------------------------------------
struct SgdHyper {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};
struct SgdSlot {
  Tensor value, grad;
  Tensor momentum_buffer;   // needed when momentum != 0, else ignored
  bool first_step = false;  // the buffer takes the first update as it is (torch)
};
void sgd_step(std::span<const SgdSlot> slots, const SgdHyper& hyper);

// ---- Adam / AdamW (torch.optim.Adam, torch.optim.AdamW) ------------------------------------
struct AdamHyper {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // AdamW: w *= 1 - lr * weight_decay; Adam: g += weight_decay * w
  bool amsgrad = false;
};
struct AdamSlot {
  Tensor value, grad, exp_avg, exp_avg_sq;
  Tensor max_exp_avg_sq;  // needed with amsgrad
  std::int64_t step = 1;  // this parameter's step count, this step included (bias corrections)
};
void adam_step(std::span<const AdamSlot> slots, const AdamHyper& hyper);

// ---- RMSprop (torch.optim.RMSprop) ----------------------------------------------------------
struct RmspropHyper {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};
struct RmspropSlot {
  Tensor value, grad, square_avg;
  Tensor grad_avg;         // needed when centered
  Tensor momentum_buffer;  // needed when momentum > 0
};
void rmsprop_step(std::span<const RmspropSlot> slots, const RmspropHyper& hyper);

}  // namespace zkynet::kernels
