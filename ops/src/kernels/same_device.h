// The entry check of kernels whose operands must share one device (the main operand's, which
// picks the CPU or the CUDA kernel): a DeviceError naming the operator and both devices, before
// any memory is touched. apply() checks the operands of an operator; this also covers what it
// cannot see (batch_norm's running statistics, saved statistics, direct kernel calls).
#pragma once

#include <zkynet/framework/error.h>
#include <zkynet/framework/tensor.h>

#include <string>
#include <string_view>

namespace zkynet::kernels::detail {

// Throws unless every defined operand lies on `device`. A TypeError, not a DeviceError: apply()
// reports a DeviceError from a kernel as "<op> has no CUDA implementation yet", which would
// misname a misplaced operand.
template <class... Tensors>
void require_same_device(std::string_view op, Device device, const Tensors&... operands) {
  std::string other;
  ((operands.defined() && !(operands.device() == device) && other.empty() ? void(other = operands.device().str())
                                                                          : void()),
   ...);
  if (!other.empty()) {
    throw TypeError(std::string(op) + ": operands on different devices (" + device.str() + " and " + other +
                      "); move them to one with .to(device)");
  }
}

}  // namespace zkynet::kernels::detail
