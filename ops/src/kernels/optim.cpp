// The optimizer steps, device-neutral: each slot is checked, CPU slots run the rule of optim.h in
// a loop, CUDA slots go to cuda::*_step together (one launch per table of parameters).
#include <zkynet/framework/error.h>
#include <zkynet/ops/optim_kernels.h>

#include "cuda/api.h"
#include "optim.h"

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace zkynet::kernels {

namespace {

std::string describe(const Tensor& t) {
  return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())) + " on " + t.device().str();
}

// `t` (the slot's `what`) must sit beside the value: same shape, dtype and device, contiguous.
void check_operand(const Tensor& t, const Tensor& value, std::string_view op, std::string_view what) {
  if (!t.defined()) throw UsageError(std::string(op) + ": the " + std::string(what) + " is undefined");
  const std::string mismatch = std::string(op) + ": the " + std::string(what) + " is " + describe(t) +
                               " for a parameter of " + describe(value);
  if (t.shape() != value.shape()) throw ShapeError(mismatch);
  if (t.dtype() != value.dtype()) throw TypeError(mismatch);
  if (t.device() != value.device()) throw DeviceError(mismatch);
  if (!t.is_contiguous()) throw UsageError(std::string(op) + ": the " + std::string(what) + " is not contiguous");
}

void check_value(const Tensor& value, std::string_view op) {
  if (!value.defined()) throw UsageError(std::string(op) + ": the parameter is undefined");
  if (!is_floating(value.dtype())) {
    throw TypeError(std::string(op) + ": the parameter " + describe(value) + " is not floating point");
  }
  check_operand(value, value, op, "parameter");
}

// Bumps the versions of the written tensors (backward refuses values changed since the forward).
void bump(std::initializer_list<const Tensor*> written) {
  for (const Tensor* t : written) {
    if (t) t->bump_version();
  }
}

template <class T>
T* host_or_null(const Tensor& t, bool used) {
  return used ? t.data<T>() : nullptr;
}

}  // namespace

void sgd_step(std::span<const SgdSlot> slots, const SgdHyper& h) {
  const bool momentum = h.momentum != 0;
  for (const SgdSlot& s : slots) {  // every slot checked before any is written
    check_value(s.value, "SGD step");
    check_operand(s.grad, s.value, "SGD step", "gradient");
    if (momentum) check_operand(s.momentum_buffer, s.value, "SGD step", "momentum buffer");
  }
  std::vector<SgdSlot> on_cuda;
  for (const SgdSlot& s : slots) {
    bump({&s.value, momentum ? &s.momentum_buffer : nullptr});
    if (s.value.device().is_cuda()) {
      on_cuda.push_back(s);
      continue;
    }
    dispatch_floating(s.value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const auto rule = rule::Sgd<T>::from(h);
      T* w = s.value.data<T>();
      const T* g = s.grad.data<T>();
      T* buf = host_or_null<T>(s.momentum_buffer, momentum);
      for (std::int64_t k = 0; k < s.value.numel(); ++k) rule(w[k], g[k], buf ? buf + k : nullptr, s.first_step);
    });
  }
  if (!on_cuda.empty()) cuda::sgd_step(on_cuda, h);
}

void adam_step(std::span<const AdamSlot> slots, const AdamHyper& h) {
  const char* op = h.decoupled_weight_decay ? "AdamW step" : "Adam step";
  for (const AdamSlot& s : slots) {
    check_value(s.value, op);
    check_operand(s.grad, s.value, op, "gradient");
    check_operand(s.exp_avg, s.value, op, "exp_avg");
    check_operand(s.exp_avg_sq, s.value, op, "exp_avg_sq");
    if (h.amsgrad) check_operand(s.max_exp_avg_sq, s.value, op, "max_exp_avg_sq");
    if (s.step < 1) throw UsageError(std::string(op) + ": step counts start at 1, got " + std::to_string(s.step));
  }
  std::vector<AdamSlot> on_cuda;
  for (const AdamSlot& s : slots) {
    bump({&s.value, &s.exp_avg, &s.exp_avg_sq, h.amsgrad ? &s.max_exp_avg_sq : nullptr});
    if (s.value.device().is_cuda()) {
      on_cuda.push_back(s);
      continue;
    }
    dispatch_floating(s.value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const auto rule = rule::Adam<T>::from(h);
      T neg_step, bc2_sqrt;
      rule::Adam<T>::scalars(h, s.step, neg_step, bc2_sqrt);
      T* w = s.value.data<T>();
      const T* g = s.grad.data<T>();
      T* m = s.exp_avg.data<T>();
      T* v = s.exp_avg_sq.data<T>();
      T* v_max = host_or_null<T>(s.max_exp_avg_sq, h.amsgrad);
      for (std::int64_t k = 0; k < s.value.numel(); ++k) {
        rule(w[k], g[k], m[k], v[k], v_max ? v_max + k : nullptr, neg_step, bc2_sqrt);
      }
    });
  }
  if (!on_cuda.empty()) cuda::adam_step(on_cuda, h);
}

void rmsprop_step(std::span<const RmspropSlot> slots, const RmspropHyper& h) {
  const bool momentum = h.momentum > 0;
  for (const RmspropSlot& s : slots) {
    check_value(s.value, "RMSprop step");
    check_operand(s.grad, s.value, "RMSprop step", "gradient");
    check_operand(s.square_avg, s.value, "RMSprop step", "square_avg");
    if (h.centered) check_operand(s.grad_avg, s.value, "RMSprop step", "grad_avg");
    if (momentum) check_operand(s.momentum_buffer, s.value, "RMSprop step", "momentum buffer");
  }
  std::vector<RmspropSlot> on_cuda;
  for (const RmspropSlot& s : slots) {
    bump({&s.value, &s.square_avg, h.centered ? &s.grad_avg : nullptr, momentum ? &s.momentum_buffer : nullptr});
    if (s.value.device().is_cuda()) {
      on_cuda.push_back(s);
      continue;
    }
    dispatch_floating(s.value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const auto rule = rule::Rmsprop<T>::from(h);
      T* w = s.value.data<T>();
      const T* g = s.grad.data<T>();
      T* sq = s.square_avg.data<T>();
      T* ga = host_or_null<T>(s.grad_avg, h.centered);
      T* buf = host_or_null<T>(s.momentum_buffer, momentum);
      for (std::int64_t k = 0; k < s.value.numel(); ++k) {
        rule(w[k], g[k], sq[k], ga ? ga + k : nullptr, buf ? buf + k : nullptr);
      }
    });
  }
  if (!on_cuda.empty()) cuda::rmsprop_step(on_cuda, h);
}

}  // namespace zkynet::kernels
