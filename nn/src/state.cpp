#include <zkynet/framework/error.h>
#include <zkynet/nn/state.h>

#include "states_load.h"

#include <map>
#include <set>

namespace zkynet::nn {

namespace {

DType common_dtype(const std::vector<Parameter>& params) {
  if (params.empty()) return DType::Float64;
  const DType first = params.front().value().dtype();
  for (const auto& p : params) {
    if (p.value().dtype() != first) return DType::Float64;
  }
  return first;
}

std::int64_t total_numel(const std::vector<Parameter>& params) {
  std::int64_t n = 0;
  for (const auto& p : params) n += p.value().numel();
  return n;
}

// Concatenates `part(p)` (each of p's value shape) into one 1-d tensor.
template <class Part>
Tensor concatenate(const std::vector<Parameter>& params, Part part) {
  Tensor out = Tensor::empty({total_numel(params)}, common_dtype(params));
  std::int64_t offset = 0;
  for (const auto& p : params) {
    const std::int64_t n = p.value().numel();
    out.slice(0, offset, offset + n).copy_(part(p).reshape({n}));
    offset += n;
  }
  return out;
}

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "'" : ", '") + k + "'";
  return out;
}

}  // namespace

Tensor parameters_to_vector(const std::vector<Parameter>& params) {
  return concatenate(params, [](const Parameter& p) { return p.value(); });
}

Tensor gradients_to_vector(const std::vector<Parameter>& params) {
  return concatenate(params, [](const Parameter& p) {
    const Tensor& g = p.grad();
    if (!g.defined()) return Tensor::zeros(p.value().shape(), p.value().dtype());
    if (g.shape() != p.value().shape()) {
      throw ShapeError("gradients_to_vector: parameter '" + p.functional_name() + "' has a gradient of shape " +
                       shape_str(g.shape()) + " for a value of shape " + shape_str(p.value().shape()));
    }
    return g;
  });
}

void vector_to_parameters(const Tensor& vec, const std::vector<Parameter>& params) {
  if (vec.dim() != 1) {
    throw ShapeError("vector_to_parameters: expected a 1-d vector, got shape " + shape_str(vec.shape()));
  }
  const std::int64_t expected = total_numel(params);
  if (vec.numel() != expected) {
    throw ShapeError("vector_to_parameters: a vector of length " + std::to_string(vec.numel()) + " for " +
                     std::to_string(params.size()) + " parameters with " + std::to_string(expected) +
                     " elements in all");
  }
  std::int64_t offset = 0;
  for (const auto& p : params) {
    Tensor value = p.value();  // shares the parameter's storage
    const std::int64_t n = value.numel();
    value.copy_(vec.slice(0, offset, offset + n).reshape(value.shape()));
    offset += n;
  }
}

StateDict state_dict(const ModuleBase& module) {
  StateDict out;
  for (const auto& [name, p] : module.named_parameters()) out.emplace_back(name, p.value().clone());
  for (const auto& [name, t] : module.named_buffers()) out.emplace_back(name, t.defined() ? t.clone() : Tensor());
  return out;
}

LoadStateResult load_state_dict(ModuleBase& module, const StateDict& dict, bool strict) {
  const std::string where = "load_state_dict (" + module.functional_name() + "): ";
  std::map<std::string, const Tensor*> given;
  for (const auto& [key, value] : dict) {
    if (!given.emplace(key, &value).second) throw UsageError(where + "key '" + key + "' appears twice in the state dict");
  }

  // The module's tensors share storage with its parameters and buffers: copy_ writes through.
  StateDict targets;
  for (const auto& [name, p] : module.named_parameters()) targets.emplace_back(name, p.value());
  for (auto& entry : module.named_buffers()) targets.push_back(std::move(entry));

  LoadStateResult result;
  std::vector<std::pair<Tensor, const Tensor*>> copies;
  std::set<std::string> known;
  for (const auto& [name, target] : targets) {
    known.insert(name);
    const auto it = given.find(name);
    if (it == given.end()) {
      result.missing_keys.push_back(name);
      continue;
    }
    const Tensor& source = *it->second;
    if (!source.defined() || !target.defined()) {
      throw UsageError(where + "'" + name + "' is undefined in the " + (source.defined() ? "module" : "state dict"));
    }
    if (source.shape() != target.shape()) {
      throw ShapeError(where + "'" + name + "' has shape " + shape_str(source.shape()) + " in the state dict but " +
                       shape_str(target.shape()) + " in the module");
    }
    copies.emplace_back(target, &source);
  }
  for (const auto& [key, value] : dict) {
    if (!known.contains(key)) result.unexpected_keys.push_back(key);
  }
  if (strict && (!result.missing_keys.empty() || !result.unexpected_keys.empty())) {
    std::string message = where;
    if (!result.missing_keys.empty()) message += "missing key(s) " + quoted_list(result.missing_keys);
    if (!result.unexpected_keys.empty()) {
      if (!result.missing_keys.empty()) message += "; ";
      message += "unexpected key(s) " + quoted_list(result.unexpected_keys);
    }
    throw IndexError(message + " (pass strict = false to load the matching keys only)");
  }
  for (auto& [target, source] : copies) target.copy_(*source);
  return result;
}

namespace detail {

namespace {

void collect_stateful(const std::string& path, ModuleBase& module, std::set<const ModuleBase*>& seen,
                      std::vector<std::pair<std::string, RecurrentBase*>>& out) {
  if (!seen.insert(&module).second) return;
  if (auto* layer = dynamic_cast<RecurrentBase*>(&module); layer && layer->stateful()) out.emplace_back(path, layer);
  for (const auto& [name, child] : module.children()) {
    collect_stateful(path.empty() ? name : path + "." + name, *child, seen, out);
  }
}

std::string key_of(const std::string& path, const char* member) { return path.empty() ? member : path + "." + member; }

}  // namespace

std::vector<std::pair<std::string, RecurrentBase*>> stateful_layers(const ModuleBase& module) {
  std::vector<std::pair<std::string, RecurrentBase*>> out;
  std::set<const ModuleBase*> seen;
  // The walk hands out the layers to change them: the tree is the caller's, const or not.
  collect_stateful("", const_cast<ModuleBase&>(module), seen, out);
  return out;
}

StatesLoad::StatesLoad(const ModuleBase& module, const StateDict& states, bool strict, const std::string& where) {
  std::map<std::string, const Tensor*> given;
  for (const auto& [key, value] : states) {
    if (!given.emplace(key, &value).second) throw UsageError(where + "key '" + key + "' appears twice in the states");
  }
  std::set<std::string> known;
  for (const auto& [path, layer] : stateful_layers(module)) {
    const bool lstm = layer->kind() == RecurrentBase::Kind::Lstm;
    RecurrentStateValues values;
    bool complete = true;
    for (const char* member : {"h", "c"}) {
      if (member[0] == 'c' && !lstm) break;
      const std::string key = key_of(path, member);
      known.insert(key);
      const auto it = given.find(key);
      if (it == given.end()) {
        result_.missing_keys.push_back(key);
        complete = false;
      } else {
        (member[0] == 'h' ? values.h : values.c) = *it->second;
      }
    }
    if (!complete) continue;
    // The layer's message names it and the shapes; this one adds the keys.
    const std::string keys = "'" + key_of(path, "h") + (lstm ? "', '" + key_of(path, "c") : std::string()) + "': ";
    try {
      layer->check_carried_state(values);
    } catch (const ShapeError& e) {
      throw ShapeError(where + keys + e.what());
    } catch (const UsageError& e) {
      throw UsageError(where + keys + e.what());
    }
    assignments_.emplace_back(layer, std::move(values));
  }
  for (const auto& [key, value] : states) {
    if (!known.contains(key)) result_.unexpected_keys.push_back(key);
  }
  if (strict && (!result_.missing_keys.empty() || !result_.unexpected_keys.empty())) {
    std::string message = where;
    if (!result_.missing_keys.empty()) {
      message += "missing key(s) " + quoted_list(result_.missing_keys) + " (stateful layers without a saved state)";
    }
    if (!result_.unexpected_keys.empty()) {
      if (!result_.missing_keys.empty()) message += "; ";
      message += "unexpected key(s) " + quoted_list(result_.unexpected_keys) + " (no stateful recurrent layer there)";
    }
    throw IndexError(message + " (pass strict = false to load the matching keys only)");
  }
}

void StatesLoad::apply() const {
  for (const auto& [layer, values] : assignments_) layer->set_carried_state(values);
}

}  // namespace detail

StateDict states(const ModuleBase& module) {
  StateDict out;
  for (const auto& [path, layer] : detail::stateful_layers(module)) {
    const RecurrentStateValues& carried = layer->carried_state();
    const auto copy = [](const Tensor& t) { return t.defined() ? t.clone() : Tensor(); };
    out.emplace_back(detail::key_of(path, "h"), copy(carried.h));
    if (layer->kind() == RecurrentBase::Kind::Lstm) out.emplace_back(detail::key_of(path, "c"), copy(carried.c));
  }
  return out;
}

LoadStateResult load_states(ModuleBase& module, const StateDict& states, bool strict) {
  const detail::StatesLoad load(module, states, strict, "load_states (" + module.functional_name() + "): ");
  load.apply();
  return load.result();
}

std::vector<Parameter> weights(const ModuleBase& module) {
  std::vector<Parameter> out;
  for (const auto& [name, p] : module.named_parameters()) {
    if (!p.is_bias()) out.push_back(p);
  }
  return out;
}

}  // namespace zkynet::nn
