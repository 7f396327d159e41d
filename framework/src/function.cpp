#include <zkynet/framework/effects.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/function.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/session.h>

#include <cxxabi.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <unordered_set>

namespace zkynet {

namespace {

std::uint64_t next_input_uid() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

std::string input_list(const std::vector<Variable>& inputs) {
  std::string s;
  for (const auto& v : inputs) s += (s.empty() ? "" : ", ") + v.name();
  return s;
}

template <class Inputs>
auto* find_by_name(Inputs& inputs, std::string_view name) {
  for (auto& in : inputs) {
    if (in.name() == name) return &in;
  }
  return static_cast<decltype(&inputs.front())>(nullptr);
}

}  // namespace

std::string readable_type_name(const char* mangled) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string name = status == 0 && demangled ? demangled : mangled;
  std::free(demangled);
  const auto template_start = name.find('<');
  const auto scope = name.rfind("::", template_start);
  return scope == std::string::npos ? name : name.substr(scope + 2);
}

// ---- inputs -------------------------------------------------------------------------------

Input::Input(std::string name, NodeKind kind) : data_(std::make_shared<InputData>()) {
  data_->uid = next_input_uid();
  data_->name = std::move(name);
  data_->kind = kind;
}

std::string Input::functional_name() const {
  return data_->owner.empty() ? data_->name : data_->owner + "." + data_->name;
}

Variable& Variable::requires_grad(bool on) {
  data_->requires_grad = on;
  return *this;
}

Parameter::Parameter(std::string name, Tensor value) : Input(std::move(name), NodeKind::Parameter) {
  if (!value.defined()) throw UsageError("Parameter '" + data_->name + "': value is undefined");
  data_->value = std::move(value);
}

Parameter& Parameter::requires_grad(bool on) {
  data_->requires_grad = on;
  return *this;
}

void Parameter::zero_grad() {
  if (capturing_effects()) {
    record_effect("zero_grad(" + (data_->path.empty() ? data_->name : data_->path) + ")", [data = data_] {
      if (data->grad.defined()) data->grad.fill_(0.0);
    });
  }
  if (data_->grad.defined()) data_->grad.fill_(0.0);
}

void Parameter::accumulate_grad(const Tensor& grad) { zkynet::accumulate_grad(*data_, grad); }

void accumulate_grad(InputData& input, const Tensor& grad) {
  if (grad.shape() != input.value.shape()) {
    throw ShapeError("Parameter '" + input.name + "': gradient of shape " + shape_str(grad.shape()) +
                     " for a value of shape " + shape_str(input.value.shape()));
  }
  if (!input.grad.defined() || input.grad.shape() != grad.shape() || input.grad.dtype() != input.value.dtype()) {
    input.grad = grad.to(input.value.dtype()).clone();
  } else {
    input.grad.add_(grad);
  }
}

// ---- functions ----------------------------------------------------------------------------

Function::Function(std::string functional_name, std::vector<Variable> inputs, std::vector<Parameter> params)
    : inputs_(std::move(inputs)), params_(std::move(params)), functional_name_(std::move(functional_name)) {
  name_ = functional_name_;
  for (auto& v : inputs_) v.data()->owner = functional_name_;
  for (auto& p : params_) {
    p.data()->owner = functional_name_;
    if (p.data()->path.empty()) p.data()->path = p.name();
  }
}

Variable& Function::input(std::string_view name) {
  if (auto* v = find_by_name(inputs_, name)) return *v;
  throw IndexError(functional_name_ + ": no input named '" + std::string(name) + "' (inputs: " +
                   input_list(inputs_) + ")");
}

const Variable& Function::input(std::string_view name) const { return const_cast<Function*>(this)->input(name); }

Parameter& Function::param(std::string_view name) {
  if (auto* p = find_by_name(params_, name)) return *p;
  std::string known;
  for (const auto& p : params_) known += (known.empty() ? "" : ", ") + p.name();
  throw IndexError(functional_name_ + ": no parameter named '" + std::string(name) + "' (parameters: " + known + ")");
}

const Parameter& Function::param(std::string_view name) const { return const_cast<Function*>(this)->param(name); }

// ---- modules ------------------------------------------------------------------------------

ModuleBase::ModuleBase(std::string functional_name, std::vector<Variable> inputs, std::vector<Parameter> params)
    : Function(std::move(functional_name), std::move(inputs), std::move(params)) {
  touch();
}

// Stamps come from one process-wide counter, so the largest stamp in a module tree grows
// whenever any module in it changes (a replaced child is itself a change of its parent).
void ModuleBase::touch() {
  static std::atomic<std::uint64_t> next_stamp{1};
  stamp_ = next_stamp.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t ModuleBase::structure_version() const {
  std::uint64_t version = stamp_;
  for (const auto& [name, child] : children_) version = std::max(version, child->structure_version());
  return version;
}

Parameter& ModuleBase::register_parameter(std::string name, Tensor value) {
  for (const auto& p : params_) {
    if (p.name() == name) throw UsageError(functional_name() + ": parameter '" + name + "' registered twice");
  }
  Parameter p(std::move(name), std::move(value));
  p.data()->owner = functional_name();
  p.data()->path = p.name();
  params_.push_back(p);
  touch();
  return registered_.emplace_back(std::move(p));
}

bool ModuleBase::contains(const ModuleBase& module) const {
  for (const auto& [name, child] : children_) {
    if (child == &module || child->contains(module)) return true;
  }
  return false;
}

ModuleBase& ModuleBase::register_module(std::string name, ModuleBase& child) {
  if (&child == this || child.contains(*this)) {
    throw UsageError(functional_name() + ": registering '" + name + "' (" + child.functional_name() +
                     ") would make a module contain itself");
  }
  child.set_name(name);
  bool replaced = false;
  for (auto& [existing, module] : children_) {
    if (existing == name) {  // re-assigning an attribute replaces the submodule, as in PyTorch
      module = &child;
      replaced = true;
      break;
    }
  }
  if (!replaced) children_.emplace_back(std::move(name), &child);
  touch();
  // Dotted paths for pictures and reprs: the longest (outermost) registration wins.
  const auto depth = [](const std::string& path) { return std::count(path.begin(), path.end(), '.'); };
  for (const auto& [path, p] : named_parameters()) {
    std::string& current = p.data()->path;
    if (current.empty() || depth(path) > depth(current)) current = path;
  }
  return child;
}

void ModuleBase::named_parameters_into(const std::string& prefix,
                                       std::vector<std::pair<std::string, Parameter>>& out) const {
  for (const auto& p : params_) out.emplace_back(prefix + p.name(), p);
  for (const auto& [name, child] : children_) child->named_parameters_into(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Parameter>> ModuleBase::named_parameters() const {
  std::vector<std::pair<std::string, Parameter>> all;
  named_parameters_into("", all);
  std::unordered_set<std::uint64_t> seen;
  std::vector<std::pair<std::string, Parameter>> unique;
  for (auto& entry : all) {
    if (seen.insert(entry.second.uid()).second) unique.push_back(std::move(entry));
  }
  return unique;
}

std::vector<Parameter> ModuleBase::parameters() const {
  std::vector<Parameter> out;
  for (auto& [name, p] : named_parameters()) out.push_back(p);
  return out;
}

Tensor& ModuleBase::register_buffer(std::string name, Tensor value) {
  for (const auto& [existing, t] : buffers_) {
    if (existing == name) throw UsageError(functional_name() + ": buffer '" + name + "' registered twice");
  }
  touch();
  return buffers_.emplace_back(std::move(name), std::move(value)).second;
}

Tensor& ModuleBase::buffer(std::string_view name) {
  for (auto& [existing, t] : buffers_) {
    if (existing == name) return t;
  }
  throw IndexError(functional_name() + ": no buffer named '" + std::string(name) + "'");
}

std::vector<std::pair<std::string, Tensor>> ModuleBase::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out(buffers_.begin(), buffers_.end());
  for (const auto& [prefix, child] : children_) {
    for (auto& [name, t] : child->named_buffers()) out.emplace_back(prefix + "." + name, t);
  }
  return out;
}

void ModuleBase::to(Device device) {
  for (Parameter& p : parameters()) {
    InputData& data = *p.data();
    data.value = data.value.to(device);
    if (data.grad.defined()) data.grad = data.grad.to(device);
  }
  for (auto& [name, value] : buffers_) value = value.to(device);
  for (auto& [name, child] : children_) child->to(device);
  touch();
}

void ModuleBase::to(DType dtype) {
  if (!is_floating(dtype)) {
    throw TypeError(functional_name() + ".to(" + std::string(dtype_name(dtype)) +
                    "): parameters and buffers convert to a floating-point dtype only");
  }
  for (Parameter& p : parameters()) {
    InputData& data = *p.data();
    if (!is_floating(data.value.dtype())) continue;
    data.value = data.value.to(dtype);
    if (data.grad.defined()) data.grad = data.grad.to(dtype);
  }
  for (auto& [name, value] : buffers_) {
    if (is_floating(value.dtype())) value = value.to(dtype);
  }
  for (auto& [name, child] : children_) child->to(dtype);
  touch();
}

void ModuleBase::train(bool on) {
  if (training_ != on) touch();
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void ModuleBase::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

ModuleGraph ModuleBase::invoke(std::span<const NodeRef> args) {
  return detail::ground_call(*this, args, [this](std::span<const NodeRef> in) { return call_nodes(in); });
}

Lambda::Lambda(std::vector<std::string> input_names, Body body, std::string functional_name)
    : ModuleBase(std::move(functional_name), {}, {}), body_(std::move(body)) {
  for (auto& name : input_names) inputs_.emplace_back(std::move(name));
  for (auto& v : inputs_) v.data()->owner = this->functional_name();
}

// ---- grounding a call ---------------------------------------------------------------------

namespace detail {

namespace {

std::shared_ptr<Tape> tape_for_call(const Function& function, std::span<const NodeRef> args) {
  std::shared_ptr<Tape> tape;
  for (const auto& arg : args) {
    if (!arg.in_graph()) continue;
    if (tape && arg.tape() != tape) {
      throw UsageError(function.functional_name() + ": inputs come from different graphs (calls #" +
                       std::to_string(tape->call_id()) + " and #" + std::to_string(arg.tape()->call_id()) + ")");
    }
    tape = arg.tape();
  }
  auto& session = CallSessionManager::current();
  if (!session.grad_enabled()) return nullptr;
  if (session.active_tape()) {
    if (tape && tape != session.active_tape()) {
      throw UsageError(function.functional_name() + ": an input belongs to graph #" + std::to_string(tape->call_id()) +
                       ", not to the current call #" + std::to_string(session.active_tape()->call_id()));
    }
    return session.active_tape();
  }
  return tape ? tape : CallSessionManager::new_tape();
}

}  // namespace

ModuleGraph ground_call(Function& function, std::span<const NodeRef> args,
                        const std::function<NodeRef(std::span<const NodeRef>)>& body) {
  const auto& inputs = function.inputs();
  if (args.size() != inputs.size()) {
    const std::string path = CallSessionManager::current().module_path();
    throw UsageError((path.empty() ? "" : path + ": ") + function.functional_name() + ": expected " +
                     std::to_string(inputs.size()) + " input(s) (" + input_list(inputs) + "), got " +
                     std::to_string(args.size()));
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (!args[i].defined()) {
      throw UsageError(function.functional_name() + ": input '" + inputs[i].name() + "' is undefined");
    }
  }
  std::shared_ptr<Tape> tape = tape_for_call(function, args);
  CallSessionManager::Frame frame(tape, function.name(), function.functional_name());
  std::vector<NodeRef> bound(args.size());
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& data = inputs[i].data();
    if (!tape) {
      bound[i] = NodeRef(args[i].value());
    } else if (args[i].in_graph()) {
      tape->bind(*data, args[i].node());
      bound[i] = args[i];
    } else {
      Node* node = tape->make<InputNode>(args[i].value(), NodeKind::Variable, data, data->requires_grad);
      tape->bind(*data, node);
      bound[i] = NodeRef(tape, node);
    }
  }
  NodeRef root;
  try {
    root = body(bound);
  } catch (const Error& e) {
    if (!e.has_location()) e.rethrow_at(CallSessionManager::current().module_path());
    throw;
  }
  if (!root.defined()) throw UsageError(function.functional_name() + ": call() returned an undefined value");
  if (root.in_graph() && root.tape() != tape) {
    throw UsageError(function.functional_name() + ": call() returned a node of another graph (call #" +
                     std::to_string(root.tape()->call_id()) + ")");
  }
  return ModuleGraph(std::move(root));
}

}  // namespace detail

}  // namespace zkynet
