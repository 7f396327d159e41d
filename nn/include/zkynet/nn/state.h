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
//
//   model(first_half);                                   // stateful recurrent layers carry their state
//   nn::StateDict s = nn::states(model);                 // {"encoder.lstm.h", h}, {"encoder.lstm.c", c}
//   nn::load_states(other, s);                           // other's next call continues where model's would
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

// The carried state of every stateful recurrent layer (nn::RNN, LSTM, GRU with stateful on)
// in the module tree (FluxUtils' states(model)): for a layer at dotted path p ("encoder.lstm";
// "" for the module itself), the key "p.h" (just "h" at the root) and, for an LSTM, "p.c", each
// a copy of shape (num_layers, batch, hidden_size), so training on does not change it. A
// stateful layer that carries no state yet (no call since it was built or reset: its next call
// starts from zeros) is listed all the same, with undefined tensors (None in Python), so that
// loading it resets that layer. Layers that are not stateful carry nothing and are not listed;
// a layer reachable by two paths is listed once, under the first (as named_parameters()).
StateDict states(const ModuleBase& module);

// Restores states() into the module's stateful recurrent layers in place (FluxUtils'
// loadstates!): each layer's next call continues exactly as the saved model's would have.
// Values are copied and converted to each layer's dtype and device; an undefined h (and c)
// resets the layer. With strict, missing or unexpected keys throw IndexError naming them;
// without, they are skipped and reported. A shape that is not (num_layers, batch,
// hidden_size) of the layer, or a c whose shape differs from h's, throws ShapeError with both
// shapes; a key given twice, or an LSTM's h defined with its c undefined (or the reverse),
// throws UsageError. Everything is checked before anything changes; without strict, a layer
// with a key missing is left as it is.
LoadStateResult load_states(ModuleBase& module, const StateDict& states, bool strict = true);

// The parameters that are not biases (FluxUtils' weights): what L2 regularization usually
// covers. Decided by what a parameter is, not its name: each layer marks its biases
// (Parameter::is_bias: Linear's and Conv2d's bias, the recurrent layers' bias_ih_l* and
// bias_hh_l*, LayerNorm's and BatchNorm's bias); the norms' scale ("weight") and a user's own
// Parameter count as weights unless marked with is_bias(true).
std::vector<Parameter> weights(const ModuleBase& module);

}  // namespace zkynet::nn
