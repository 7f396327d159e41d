// load_states in two steps, so that load_checkpoint can check a file's parameters and its
// carried states before it changes either.
#pragma once

#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/state.h>

#include <string>
#include <utility>
#include <vector>

namespace zkynet::nn::detail {

// The stateful recurrent layers of a module tree with their dotted paths, each layer once.
std::vector<std::pair<std::string, RecurrentBase*>> stateful_layers(const ModuleBase& module);

class StatesLoad {
 public:
  // Checks `states` against the module's stateful layers, throwing as load_states documents;
  // `where` prefixes the messages. Changes nothing.
  StatesLoad(const ModuleBase& module, const StateDict& states, bool strict, const std::string& where);
  // The checked states, into their layers.
  void apply() const;
  const LoadStateResult& result() const { return result_; }

 private:
  std::vector<std::pair<RecurrentBase*, RecurrentStateValues>> assignments_;
  LoadStateResult result_;
};

}  // namespace zkynet::nn::detail
