// The entry check of the kernel families that have no CUDA implementation yet (recurrent: its
// cuDNN path is still to come, issue 13). A CUDA operand gets a DeviceError before
// any memory is touched; apply() then reports it as "<op> has no CUDA implementation yet: ...".
#pragma once

#include <zkynet/framework/error.h>
#include <zkynet/framework/tensor.h>

#include <string>
#include <string_view>

namespace zkynet::kernels::detail {

// Throws unless every defined operand is on the CPU.
template <class... Tensors>
void require_cpu(std::string_view op, const Tensors&... operands) {
  if (((operands.defined() && !operands.device().is_cpu()) || ...)) {
    throw DeviceError("the " + std::string(op) +
                      " kernels are CPU-only until GPU part 2 (cuDNN, issue 13); move the operands with .cpu()");
  }
}

}  // namespace zkynet::kernels::detail
