#include <zkynet/framework/error.h>
#include <zkynet/optim/optimizer.h>

#include <cmath>
#include <string>

namespace zkynet::optim {

void Optimizer::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

Tensor Optimizer::gradient_for_step(const Parameter& p, std::string_view optimizer) {
  if (!p.grad().defined() || !p.requires_grad()) return {};
  const Tensor& value = p.value();
  if (!value.is_contiguous()) {
    throw UsageError(std::string(optimizer) + ": parameter '" + p.functional_name() + "' is not contiguous");
  }
  if (!is_floating(value.dtype())) {
    throw TypeError(std::string(optimizer) + ": parameter '" + p.functional_name() + "' is not floating point");
  }
  if (p.grad().shape() != value.shape()) {
    throw ShapeError(std::string(optimizer) + ": parameter '" + p.functional_name() + "' has a gradient of shape " +
                     shape_str(p.grad().shape()) + " for a value of shape " + shape_str(value.shape()));
  }
  return p.grad().to(value.device()).to(value.dtype()).contiguous();
}

void Optimizer::ensure_state(Tensor& state, const Parameter& p, std::string_view optimizer) {
  const Tensor& value = p.value();
  if (!state.defined()) {
    state = Tensor::zeros(value.shape(), value.dtype(), value.device());
    return;
  }
  if (state.shape() != value.shape() || state.dtype() != value.dtype()) {
    throw UsageError(std::string(optimizer) + ": parameter '" + p.functional_name() + "' is now " +
                     shape_str(value.shape()) + " " + std::string(dtype_name(value.dtype())) +
                     " but its optimizer state is " + shape_str(state.shape()) + " " +
                     std::string(dtype_name(state.dtype())) + "; make a new optimizer after set_value");
  }
  // The parameter moved (model.to(device) after the optimizer was built): its state follows.
  if (state.device() != value.device()) state = state.to(value.device());
}

std::map<std::string, Tensor> Optimizer::state(std::size_t i) const {
  check_index(i);
  return {};
}

void Optimizer::check_index(std::size_t i) const {
  if (i >= params_.size()) {
    throw IndexError("optimizer state: parameter " + std::to_string(i) + " of " + std::to_string(params_.size()));
  }
}

void Optimizer::check_non_negative(double value, std::string_view optimizer, std::string_view option) {
  // NOTE: !(value >= 0) also rejects NaN.
  if (!(value >= 0)) {
    throw UsageError(std::string(optimizer) + ": " + std::string(option) + " must be non-negative, got " +
                     std::to_string(value));
  }
}

}  // namespace zkynet::optim
