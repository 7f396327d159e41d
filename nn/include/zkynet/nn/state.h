// Saving, restoring and flattening a model's state (torch.nn.utils / Module.state_dict, and
// Flux's destructure-style flat vectors).
//
//   nn::StateDict best = nn::state_dict(model);          // copies: training on does not change it
//   ...
//   nn::load_state_dict(model, best);                    // back to the best epoch, in place
//
//   Tensor theta = nn::parameters_to_vector(model.parameters());   // 1-d, for line searches / CMA-ES
//   nn::vector_to_parameters(theta, model.parameters());
//   double l2 = 0;  for (auto& w : nn::weights(model)) ...         // regularize weights, not biases
#pragma once

#include <zkynet/framework/module.h>

#include <string>
#include <utility>
#include <vector>

namespace zkynet::nn {

// Concatenates the parameters' values, flattened row-major, in order. The dtype is the
// parameters' common dtype, or float64 when they differ; with no parameters, a float64 (0).
Tensor parameters_to_vector(const std::vector<Parameter>& params);
// Copies consecutive slices of the 1-d `vec` into the parameters' values, in place (so every
// copy of a Parameter, and every tensor handle on its value, sees them), converting the dtype.
// ShapeError unless vec is 1-d and its length is the parameters' total element count.
void vector_to_parameters(const Tensor& vec, const std::vector<Parameter>& params);
// Like parameters_to_vector over the gradients; zeros stand for parameters without one.
Tensor gradients_to_vector(const std::vector<Parameter>& params);

using StateDict = std::vector<std::pair<std::string, Tensor>>;

// Named parameters (dotted, as named_parameters()) then named buffers, each value a copy.
StateDict state_dict(const ModuleBase& module);

// Keys of the module absent from the dict, and keys of the dict the module lacks.
struct LoadStateResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

// Copies the dict's values into the module's parameters and buffers in place (dtype converted).
// With strict, missing or unexpected keys throw IndexError naming them; without, they are
// skipped and reported. A shape mismatch always throws ShapeError with both shapes, and a key
// given twice throws UsageError. Everything is checked before anything is copied, so a failed
// load leaves the module as it was.
LoadStateResult load_state_dict(ModuleBase& module, const StateDict& dict, bool strict = true);

// The parameters that are not biases (FluxUtils' weights): what L2 regularization usually
// covers. Decided by what a parameter is, not its name: each layer marks its biases
// (Parameter::is_bias: Linear's and Conv2d's bias, the recurrent layers' bias_ih_l* and
// bias_hh_l*, LayerNorm's and BatchNorm's bias); the norms' scale ("weight") and a user's own
// Parameter count as weights unless marked with is_bias(true).
std::vector<Parameter> weights(const ModuleBase& module);

}  // namespace zkynet::nn
