// framework/: inputs, parameters, nodes, graphs, modules and Python-defined operators.
#include "convert.h"
#include "errors.h"

#include <zkynet/framework/compile.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/functional.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/operator.h>
#include <zkynet/framework/session.h>

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>

namespace zkynet::python {
namespace {

// A module whose call() is a Python method.
class PyModule : public ModuleBase {
 public:
  PyModule(std::vector<Variable> inputs, std::vector<Parameter> params, std::string functional_name)
      : ModuleBase(std::move(functional_name), std::move(inputs), std::move(params)) {}

 protected:
  NodeRef call_nodes(std::span<const NodeRef> in) override {
    py::gil_scoped_acquire gil;
    py::function call = py::get_override(static_cast<const PyModule*>(this), "call");
    if (!call) throw UsageError(functional_name() + ": a Module subclass must define call(self, ...)");
    py::tuple args(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) args[i] = py::cast(in[i]);
    py::object result;
    try {
      result = call(*args);
    } catch (py::error_already_set& error) {
      rethrow_unlocated(error);
      throw;
    }
    if (result.is_none() || py::isinstance<py::str>(result) || py::isinstance<py::bytes>(result) ||
        py::isinstance<py::dict>(result)) {
      throw TypeError("call() returned a '" + std::string(py::str(result.get_type().attr("__name__"))) +
                      "'; it must return a node (the result of an operator or a module), a number or an array");
    }
    return noderef_from_python(result);
  }
};

// A Python object released with the GIL held, whatever thread drops the last reference.
struct GilObject {
  py::object object;
  explicit GilObject(py::object o) : object(std::move(o)) {}
  GilObject(const GilObject&) = delete;
  GilObject& operator=(const GilObject&) = delete;
  ~GilObject() {
    if (!Py_IsInitialized()) {
      object.release();
      return;
    }
    py::gil_scoped_acquire gil;
    object = py::object();
  }
};

// An operator whose forward (_op_impl) and VJP (_vjp_dispatch) are Python methods.
class PyOperator : public Function {
 public:
  PyOperator(std::vector<Variable> inputs, std::string functional_name)
      : Function(std::move(functional_name), std::move(inputs), {}) {}

  // Records one node inside a call; at top level, grounds a graph of its own.
  py::object apply(py::object self, const py::args& args) {
    std::vector<NodeRef> operands;
    bool in_graph = static_cast<bool>(CallSessionManager::current().active_tape());
    for (auto a : args) {
      operands.push_back(noderef_from_python(a));
      in_graph = in_graph || operands.back().in_graph();
    }
    auto op = definition(std::move(self));
    if (in_graph) return py::cast(apply_dynamic(op, operands));
    return py::cast(detail::ground_call(*this, operands, [op](std::span<const NodeRef> in) {
      return apply_dynamic(op, in);
    }));
  }

 private:
  std::shared_ptr<const DynamicOperator> definition(py::object self) {
    auto holder = std::make_shared<GilObject>(std::move(self));
    auto def = std::make_shared<DynamicOperator>();
    def->name = functional_name();
    def->arity = inputs().size();
    def->nondiff = holder->object.attr("nondiff").cast<std::vector<std::size_t>>();
    def->forward = [holder, name = def->name](std::span<const Tensor> values) {
      py::gil_scoped_acquire gil;
      py::tuple args(values.size());
      for (std::size_t i = 0; i < values.size(); ++i) args[i] = tensor_to_numpy(values[i]);
      py::object out = holder->object.attr("_op_impl")(*args);
      // A copy: the result must not change if Python code later writes into its array. _op_impl
      // sees host copies of device values; its result goes back to their device.
      Tensor result = tensor_from_python(py::module_::import("numpy").attr("array")(out)).contiguous();
      return values.empty() ? result : result.to(values[0].device());
    };
    def->vjp = [holder](const Tensor& grad, const Tensor& output, std::span<const Tensor> inputs,
                        std::span<const bool> needs) {
      py::gil_scoped_acquire gil;
      py::list in, need;
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        in.append(tensor_to_numpy(inputs[i]));
        need.append(needs[i]);
      }
      py::object result = holder->object.attr("_vjp_dispatch")(tensor_to_numpy(grad), tensor_to_numpy(output), in, need);
      std::vector<Tensor> grads;
      for (auto g : result) {
        const Tensor& input = inputs[grads.size()];
        grads.push_back(g.is_none() ? Tensor()
                                    : tensor_from_python(py::module_::import("numpy").attr("array")(g)).to(input.dtype()).to(input.device()));
      }
      return grads;
    };
    return def;
  }
};


// A gradient returned by a Python rule: None, a node, a number or an array.
Tensor gradient_from_python(py::handle g, const Tensor& input) {
  if (g.is_none()) return Tensor();
  Tensor t = py::isinstance<NodeRef>(g) ? g.cast<NodeRef>().value() : tensor_from_python(g).clone();
  return t.to(input.dtype()).to(input.device());
}

// cg.custom_vjp's call: in a graph, one node whose forward is rule.fwd and whose VJP is
// rule.bwd (both run without recording); elsewhere rule.fn itself.
py::object call_custom_vjp(py::object rule, const py::args& args) {
  std::vector<NodeRef> operands;
  for (auto a : args) operands.push_back(noderef_from_python(a));
  const auto& session = CallSessionManager::current();
  bool recording = session.grad_enabled() && session.active_tape();
  for (const NodeRef& o : operands) recording = recording || (session.grad_enabled() && o.in_graph());
  if (!recording) return rule.attr("fn")(*args);
  if (rule.attr("fwd").is_none()) throw UsageError(rule.attr("_missing_rule_message")().cast<std::string>());
  auto holder = std::make_shared<GilObject>(rule);
  auto residuals = std::make_shared<std::shared_ptr<GilObject>>();
  auto op = std::make_shared<DynamicOperator>();
  op->name = rule.attr("name").cast<std::string>();
  op->arity = operands.size();
  op->nondiff = rule.attr("nondiff_argnums").cast<std::vector<std::size_t>>();
  op->forward = [holder, residuals](std::span<const Tensor> values) {
    py::gil_scoped_acquire gil;
    NoGradGuard values_only;
    py::tuple in(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) in[i] = py::cast(NodeRef(values[i]));
    py::object result = holder->object.attr("fwd")(*in);
    if (!py::isinstance<py::tuple>(result) || py::len(result) != 2) {
      throw TypeError(holder->object.attr("name").cast<std::string>() +
                      ": fwd must return a pair (output, residuals), got '" +
                      std::string(py::str(result.get_type().attr("__name__"))) + "'");
    }
    const py::tuple pair = result;
    *residuals = std::make_shared<GilObject>(py::reinterpret_borrow<py::object>(pair[1]));
    const py::handle out = pair[0];
    return py::isinstance<NodeRef>(out) ? out.cast<NodeRef>().value() : tensor_from_python(out).clone();
  };
  op->vjp = [holder, residuals](const Tensor& grad, const Tensor&, std::span<const Tensor> inputs,
                                std::span<const bool> needs) {
    py::gil_scoped_acquire gil;
    NoGradGuard values_only;
    py::object result = holder->object.attr("bwd")((*residuals)->object, tensor_to_numpy(grad));
    if (!py::isinstance<py::tuple>(result) && !py::isinstance<py::list>(result)) result = py::make_tuple(result);
    const py::tuple per_argument(result);
    if (per_argument.size() != inputs.size()) {
      throw UsageError(holder->object.attr("_wrong_count_message")(per_argument.size()).cast<std::string>());
    }
    std::vector<Tensor> grads;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      grads.push_back(needs[i] ? gradient_from_python(per_argument[i], inputs[i]) : Tensor());
    }
    return grads;
  };
  return py::cast(apply_dynamic(op, operands));
}

Tensor grad_tensor_of(const ModuleGraph& g, py::handle what) {
  if (py::isinstance<Input>(what)) return g.grad(what.cast<const Input&>());
  if (py::isinstance<NodeRef>(what)) return g.grad(what.cast<NodeRef>());
  if (py::isinstance<ModuleGraph>(what)) return g.grad(what.cast<ModuleGraph&>().root());
  throw TypeError("grad(): expected an input, a parameter or a node, got '" +
                  std::string(py::str(what.get_type().attr("__name__"))) + "'");
}

// A Python function of nodes as the C++ transforms take it (called with the GIL held: the
// transforms run on this thread).
DifferentiableFn python_body(py::function f) {
  return [f](std::span<const NodeRef> xs) {
    py::tuple args(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) args[i] = py::cast(xs[i]);
    return noderef_from_python(f(*args));
  };
}

std::vector<Tensor> tensors_of(const py::list& inputs) {
  std::vector<Tensor> values;
  for (auto v : inputs) values.push_back(tensor_from_python(v));
  return values;
}

py::list numpy_list(const std::vector<Tensor>& tensors) {
  py::list out;
  for (const Tensor& t : tensors) out.append(tensor_to_numpy(t));
  return out;
}

// The graph a node ends; a constant (a value outside any graph) has none.
ModuleGraph graph_of_node(const NodeRef& n) {
  if (!n.in_graph()) {
    throw UsageError("ModuleGraph(node): the value is a constant, not a node of a graph (no input or parameter "
                     "of a module call reaches it)");
  }
  return ModuleGraph(n);
}

py::object grad_of(const ModuleGraph& g, py::handle what) { return tensor_to_numpy(grad_tensor_of(g, what)); }

// Whether a Python Module's C++ part exists: not while its __init__ runs before super().__init__().
bool cpp_initialized(py::handle self) {
  if (!py::isinstance<ModuleBase>(self)) return false;
  return reinterpret_cast<py::detail::instance*>(self.ptr())->get_value_and_holder().holder_constructed();
}

// The C++ object behind `self`, or UsageError when a Python subclass calls a method before its
// __init__ has called super().__init__() (pybind11 would hand the method a null `this`).
template <class C>
C& constructed(py::handle self, std::string_view what) {
  if (!reinterpret_cast<py::detail::instance*>(self.ptr())->get_value_and_holder().holder_constructed()) {
    throw UsageError("cannot call " + std::string(what) + " before " + std::string(py::str(self.get_type().attr("__name__"))) +
                     ".__init__() has called super().__init__()");
  }
  return self.cast<C&>();
}

// A member function bound so that it refuses an unconstructed `self` (see constructed()).
template <class C, class R, class... A>
auto checked(R (C::*fn)(A...) const, std::string_view what) {
  return [fn, what](py::handle self, A... args) -> R { return (constructed<C>(self, what).*fn)(args...); };
}
template <class C, class R, class... A>
auto checked(R (C::*fn)(A...), std::string_view what) {
  return [fn, what](py::handle self, A... args) -> R { return (constructed<C>(self, what).*fn)(args...); };
}

ModuleBase& initialized_module(py::handle self, const std::string& what) {
  if (!cpp_initialized(self)) {
    throw UsageError("cannot " + what + " before " + std::string(py::str(self.get_type().attr("__name__"))) +
                     ".__init__() has called super().__init__()");
  }
  return self.cast<ModuleBase&>();
}

std::vector<NodeRef> operands_of(const py::args& args) {
  std::vector<NodeRef> refs;
  for (auto a : args) refs.push_back(noderef_from_python(a));
  return refs;
}

// net(x=..., h=...): keyword arguments placed by the module's declared input names.
std::vector<NodeRef> operands_by_name(const ModuleBase& module, const py::args& args, const py::kwargs& kwargs) {
  const auto& inputs = module.inputs();
  std::vector<std::optional<NodeRef>> slots(std::max(inputs.size(), args.size()));
  for (std::size_t i = 0; i < args.size(); ++i) slots[i] = noderef_from_python(args[i]);
  std::string names;
  for (const auto& v : inputs) names += (names.empty() ? "" : ", ") + v.name();
  for (auto [key, value] : kwargs) {
    const std::string name = key.cast<std::string>();
    const auto it = std::find_if(inputs.begin(), inputs.end(), [&](const Variable& v) { return v.name() == name; });
    if (it == inputs.end()) {
      throw TypeError(module.functional_name() + "() got an unexpected keyword argument '" + name + "' (its inputs: " +
                      names + ")");
    }
    const auto k = static_cast<std::size_t>(it - inputs.begin());
    if (slots[k]) throw TypeError(module.functional_name() + "() got multiple values for input '" + name + "'");
    slots[k] = noderef_from_python(value);
  }
  std::vector<NodeRef> refs;
  for (std::size_t k = 0; k < slots.size(); ++k) {
    if (!slots[k]) {
      throw TypeError(module.functional_name() + "() missing input '" + inputs[k].name() + "' (its inputs: " + names + ")");
    }
    refs.push_back(*slots[k]);
  }
  return refs;
}

// A parameter by its own name, or by the dotted path named_parameters() gives it.
Parameter& parameter_by_path(ModuleBase& module, const std::string& name) {
  if (name.find('.') == std::string::npos) return module.param(name);
  const std::size_t dot = name.find('.');
  const std::string head = name.substr(0, dot);
  for (auto& [child_name, child] : module.children()) {
    if (child_name == head) return parameter_by_path(*child, name.substr(dot + 1));
  }
  std::string known;
  for (const auto& [path, p] : module.named_parameters()) known += (known.empty() ? "" : ", ") + path;
  throw IndexError(module.functional_name() + " has no submodule '" + head + "' (for '" + name +
                   "'); its named_parameters(): " + known);
}

std::string shape_and_dtype(const Tensor& t) {
  return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())) +
         (t.device().is_cpu() ? "" : " " + t.device().str());
}

// torch's module repr: the class, its own parameters (shape, dtype), then each child indented.
std::string module_tree(const ModuleBase& module, const std::string& indent) {
  std::string own;
  for (const auto& [path, p] : module.named_parameters()) {
    if (path.find('.') != std::string::npos) continue;
    own += (own.empty() ? "" : ", ") + path + ": " + shape_and_dtype(p.value());
  }
  std::string out = module.functional_name() + "(" + own;
  if (module.children().empty()) return out + ")";
  out += own.empty() ? "\n" : ",\n";
  for (const auto& [name, child] : module.children()) {
    out += indent + "  (" + name + "): " + module_tree(*child, indent + "  ") + "\n";
  }
  return out + indent + ")";
}

}  // namespace

void init_framework(py::module_& m) {
  py::class_<Input>(m, "Input", "a named input of a function: a Variable (grounded by each call's value) or a Parameter")
      .def_property_readonly("name", &Input::name)
      .def_property_readonly("functional_name", &Input::functional_name)
      .def_property_readonly("uid", &Input::uid)
      .def("__eq__", [](const Input& a, const Input& b) { return a.uid() == b.uid(); })
      .def("__hash__", [](const Input& a) { return std::hash<std::uint64_t>()(a.uid()); })
      .def("__repr__", [](const Input& a) {
        if (!a.is_parameter()) return "Variable('" + a.functional_name() + "')";
        // The dotted path the outermost registering module gives it (model.l1.weight), else Owner.name.
        const InputData& d = *a.data();
        return "Parameter(" + (d.path.empty() || d.path == d.name ? a.functional_name() : d.path) +
               ", shape=" + shape_str(d.value.shape()) + ", dtype=" + std::string(dtype_name(d.value.dtype())) +
               (d.value.device().is_cpu() ? "" : ", device=" + d.value.device().str()) +
               (d.requires_grad ? "" : ", requires_grad=False") + ")";
      });

  py::class_<Variable, Input>(m, "Variable", "a placeholder input, grounded by the caller's value at each call")
      .def(py::init<std::string>(), py::arg("name"))
      .def("requires_grad", &Variable::requires_grad, py::arg("on"), py::return_value_policy::reference_internal);

  py::class_<Parameter, Input>(m, "Parameter", "a trained value owned by a module; copies share it (weight sharing), gradients accumulate in .grad")
      .def(py::init([](std::string name, py::handle value) {
             // Parameters own their value: copied, so later edits of the source array do not leak in.
             // Integer values (Parameter("w", 1)) become float64: parameters are differentiated.
             Tensor t = tensor_from_python(value);
             return Parameter(std::move(name), is_floating(t.dtype()) ? t.clone() : t.to(DType::Float64));
           }),
           py::arg("name"), py::arg("value"))
      .def_property(
          "value", [](const Parameter& p) { return tensor_to_numpy(p.value()); },
          [](Parameter& p, py::handle v) { p.set_value(tensor_from_python(v).clone()); })
      .def_property_readonly("grad",
                             [](const Parameter& p) -> py::object {
                               if (!p.grad().defined()) return py::none();
                               return tensor_to_numpy(p.grad());
                             })
      .def_property_readonly("tensor", [](const Parameter& p) { return p.value(); },
                             "the value as a zkynet.Tensor on the parameter's device, without a copy (optimizer "
                             "steps update it in place)")
      .def_property_readonly("grad_tensor",
                             [](const Parameter& p) -> py::object {
                               if (!p.grad().defined()) return py::none();
                               return py::cast(p.grad());
                             }, "the gradient as a zkynet.Tensor on the parameter's device, without a copy; None before back()")
      .def_property_readonly("device", [](const Parameter& p) { return p.value().device().str(); })
      .def_property_readonly("dtype", [](const Parameter& p) { return std::string(dtype_name(p.value().dtype())); })
      .def_property_readonly("shape", [](const Parameter& p) { return py::tuple(py::cast(std::vector<std::int64_t>(p.value().shape().begin(), p.value().shape().end()))); })
      .def("zero_grad", &Parameter::zero_grad)
      .def_property("requires_grad", [](const Parameter& p) { return p.requires_grad(); },
                    [](Parameter& p, bool on) { p.requires_grad(on); },
                    "False freezes the parameter: no gradient flows to it and optimizers skip it")
      .def_property("is_bias", [](const Parameter& p) { return p.is_bias(); }, [](Parameter& p, bool on) { p.is_bias(on); },
                    "True for a bias, as the layers that make one mark it; nn.weights leaves biases out")
      .def("requires_grad_", [](Parameter& p, bool on) -> Parameter& { return p.requires_grad(on); },
           py::arg("requires_grad") = true, py::return_value_policy::reference_internal,
           "sets requires_grad in place and returns the parameter (torch's spelling)")
      .def("_add_", [](Parameter& p, py::handle delta) {
        // value += delta in place, keeping the buffer: the update step of optimizers written in Python.
        Tensor value = p.value();
        value.add_(tensor_from_python(delta).to(value.dtype()).reshape(value.shape()));
      }, py::arg("delta"));

  py::class_<NodeRef>(m, "Node", "a value in a call's graph (an input, a parameter or an operator's result); Python's operators on it record op.* operators")
      .def_property_readonly("value", [](const NodeRef& n) { return tensor_to_numpy(n.value()); },
                             "the value as a read-only numpy array: shares CPU memory; a value on a CUDA device is "
                             "copied to the host (use .tensor to keep it there)")
      .def_property_readonly("tensor", [](const NodeRef& n) { return n.value(); },
                             "the value as a zkynet.Tensor on its device, without a copy (shared with the graph: "
                             "do not write into it through DLPack)")
      .def_property_readonly("device", [](const NodeRef& n) { return n.value().device().str(); })
      .def_property_readonly("shape", [](const NodeRef& n) { return py::tuple(py::cast(std::vector<std::int64_t>(n.shape().begin(), n.shape().end()))); })
      .def_property_readonly("dtype", [](const NodeRef& n) { return std::string(dtype_name(n.dtype())); })
      .def_property_readonly("call_id", [](const NodeRef& n) -> std::uint64_t { return n.in_graph() ? n.tape()->call_id() : 0; })
      .def_property_readonly("label", [](const NodeRef& n) { return n.in_graph() ? n.node()->label() : std::string("const"); })
      .def_property_readonly("in_graph", &NodeRef::in_graph)
      .def_property_readonly("ndim", [](const NodeRef& n) { return n.shape().size(); })
      .def("__len__", [](const NodeRef& n) {
        if (n.shape().empty()) throw TypeError("len() of a 0-d node");
        return n.shape()[0];
      })
      .def("back", [](const NodeRef& n, py::object seed) {
             ModuleGraph g = graph_of_node(n);
             if (seed.is_none()) {
               g.back();
             } else {
               g.back(tensor_from_python(seed));
             }
             return g;
           }, py::arg("seed") = py::none(),
           "differentiates this node's graph from here, as ModuleGraph(node).back(seed) (parameters accumulate "
           "their gradients); returns that graph, whose grad() reads the rest")
      .def_property_readonly("graph", &graph_of_node, "the graph this node ends: ModuleGraph(node)")
      .def("__eq__", [](const NodeRef& a, py::handle b) {
        return py::isinstance<NodeRef>(b) && a == b.cast<NodeRef>();
      })
      .def("__hash__", [](const NodeRef& n) { return std::hash<const void*>()(n.node()); })
      .def("__repr__", [](const NodeRef& n) {
        return "Node(" + (n.in_graph() ? n.node()->label() + ", call #" + std::to_string(n.tape()->call_id()) : std::string("const")) +
               ", shape=" + shape_str(n.shape()) + ")";
      });

  py::class_<ModuleGraph>(m, "ModuleGraph", "the grounded graph of one call, ending at its root node")
      .def(py::init([](py::handle root) { return graph_of_node(noderef_from_python(root)); }), py::arg("root"),
           "the graph that ends at `root`: a module call's graph, extended by operators applied to its root "
           "(a loss outside the module); root must be a node of a graph")
      .def_property_readonly("value", [](const ModuleGraph& g) { return tensor_to_numpy(g.value()); },
                             "the root's value as a read-only numpy array (a host copy for a CUDA value)")
      .def_property_readonly("tensor", [](const ModuleGraph& g) { return g.value(); },
                             "the root's value as a zkynet.Tensor on its device, without a copy")
      .def_property_readonly("device", [](const ModuleGraph& g) { return g.value().device().str(); })
      .def_property_readonly("root", &ModuleGraph::root)
      .def_property_readonly("call_id", &ModuleGraph::call_id)
      .def_property_readonly("num_nodes", [](const ModuleGraph& g) { return g.nodes().size(); })
      .def("back", [](ModuleGraph& g, py::object seed) {
             if (seed.is_none()) {
               g.back();
             } else {
               g.back(tensor_from_python(seed));
             }
           },
           py::arg("seed") = py::none())
      .def("grad", &grad_of, py::arg("of"), "the gradient of an input, parameter or node as a read-only numpy array "
           "(a host copy for CUDA values)")
      .def("grad_tensor", &grad_tensor_of, py::arg("of"),
           "grad(of) as a zkynet.Tensor on its device, without a copy")
      .def("__eq__", [](const ModuleGraph& a, py::handle b) {
        return py::isinstance<ModuleGraph>(b) && a == b.cast<ModuleGraph&>();
      })
      .def("__hash__", [](const ModuleGraph& g) { return std::hash<const void*>()(g.root().node()); })
      .def("__repr__", [](const ModuleGraph& g) {
        return "ModuleGraph(call #" + std::to_string(g.call_id()) + ", " + std::to_string(g.nodes().size()) +
               " nodes, value shape " + shape_str(g.value().shape()) + ")";
      });

  py::class_<Function, std::shared_ptr<Function>>(m, "Function", "what modules and operators share: a functional name and declared inputs")
      .def_property("name", checked(&Function::name, "name"), checked(&Function::set_name, "name"))
      .def_property_readonly("functional_name", checked(&Function::functional_name, "functional_name"))
      .def("input", checked(py::overload_cast<std::string_view>(&Function::input), "input()"), py::arg("name"))
      .def("param", checked(py::overload_cast<std::string_view>(&Function::param), "param()"), py::arg("name"))
      .def_property_readonly("inputs", checked(&Function::inputs, "inputs"));

  py::class_<ModuleBase, Function, std::shared_ptr<ModuleBase>>(m, "ModuleBase", "a module: calling it with values grounds a ModuleGraph of its own call id")
      .def("__call__", [](py::handle self, const py::args& args, const py::kwargs& kwargs) {
        ModuleBase& module = constructed<ModuleBase>(self, "the module");
        return module.invoke(kwargs.empty() ? operands_of(args) : operands_by_name(module, args, kwargs));
      })
      .def("param", [](py::handle self, const std::string& name) -> Parameter& {
             return parameter_by_path(constructed<ModuleBase>(self, "param()"), name);
           }, py::arg("name"), py::return_value_policy::reference_internal,
           "a parameter by name, or by dotted path into submodules ('fc1.weight', as named_parameters() names it)")
      .def("__repr__", [](py::handle self) { return module_tree(constructed<ModuleBase>(self, "repr()"), ""); })
      .def("register_parameter", [](py::handle self, std::string name, py::handle value) {
             ModuleBase& module = initialized_module(self, "register parameter '" + name + "'");
             return module.register_parameter(std::move(name), tensor_from_python(value).clone());
           })
      .def("_register_module", [](py::handle self, std::string name, py::handle child) {
             ModuleBase& module = initialized_module(self, "assign module '" + name + "'");
             module.register_module(std::move(name), initialized_module(child, "register it as '" + name + "'"));
           },
           py::keep_alive<1, 3>())
      .def("_initialized", [](py::handle self) { return cpp_initialized(self); },
           "whether super().__init__() has run (the C++ module exists)")
      .def("parameters", checked(&ModuleBase::parameters, "parameters()"))
      .def("named_parameters", checked(&ModuleBase::named_parameters, "named_parameters()"))
      .def("zero_grad", checked(&ModuleBase::zero_grad, "zero_grad()"))
      .def("train", [](py::object self, bool mode) {
        constructed<ModuleBase>(self, "train()").train(mode);
        return self;
      }, py::arg("mode") = true, "training mode (or evaluation mode with mode=False), submodules included; returns self")
      .def("eval", [](py::object self) {
        constructed<ModuleBase>(self, "eval()").eval();
        return self;
      }, "evaluation mode, submodules included; returns self")
      .def("to", [](py::object self, py::handle device) {
        ModuleBase& module = constructed<ModuleBase>(self, "to()");
        const Device d = device_from_python(device);
        require_device(d, module.functional_name() + ".to()");
        module.to(d);
        return self;
      }, py::arg("device"),
      "moves parameters and buffers to 'cpu', 'cuda' or 'cuda:N' (or a device index, or a torch.device; "
      "submodules' too); returns self")
      .def_property_readonly("training", checked(&ModuleBase::is_training, "training"))
      .def("named_buffers", [](py::handle self) {
        py::list out;
        for (auto& [name, t] : constructed<ModuleBase>(self, "named_buffers()").named_buffers()) out.append(py::make_tuple(name, tensor_to_numpy(t)));
        return out;
      }, "(name, array) pairs of the buffers (running statistics), submodules' included");
  py::class_<PyModule, ModuleBase, std::shared_ptr<PyModule>>(m, "_Module")
      .def(py::init<std::vector<Variable>, std::vector<Parameter>, std::string>());

  py::class_<PyOperator, Function, std::shared_ptr<PyOperator>>(m, "_Operator")
      .def(py::init<std::vector<Variable>, std::string>())
      .def("__call__", [](py::object self, const py::args& args) { return self.cast<PyOperator&>().apply(self, args); });

  py::class_<NoGradGuard>(m, "_NoGradGuard").def(py::init<>());
  m.def("_call_custom_vjp", &call_custom_vjp, py::arg("rule"),
        "cg.custom_vjp's call: one node running rule.fwd and rule.bwd in a graph, rule.fn elsewhere");

  m.def("_set_value_array_type", &set_value_array_type, py::arg("type"));
  m.def("_to_dlpack", &numpy_to_dlpack, py::arg("array"));

  m.def("gradcheck",
        [](py::function f, py::list inputs, double eps, double rtol, double atol, py::object dtype) {
          GradcheckOptions options{eps, rtol, atol};
          if (const auto d = dtype_from_python(dtype)) options.dtype = *d;
          const auto r = gradcheck(python_body(f), tensors_of(inputs), options);
          return py::make_tuple(r.ok, r.message);
        },
        py::arg("f"), py::arg("inputs"), py::arg("eps") = 1e-6, py::arg("rtol") = 1e-5, py::arg("atol") = 1e-7,
        py::arg("dtype") = py::none(),
        "(ok, message): f's reverse-mode Jacobian at inputs against central differences; floating inputs are "
        "converted to dtype ('float64' by default)");

  // The function transforms (cg.grad & co. wrap these): numpy results, one graph per call.
  m.def("_grad", [](py::function f, py::list inputs, std::vector<int> argnums) {
    return numpy_list(zkynet::grad(python_body(f), argnums)(tensors_of(inputs)));
  });
  m.def("_value_and_grad", [](py::function f, py::list inputs, std::vector<int> argnums) {
    const ValueAndGrad r = zkynet::value_and_grad(python_body(f), argnums)(tensors_of(inputs));
    return py::make_tuple(tensor_to_numpy(r.value), numpy_list(r.grads));
  });
  m.def("_jacobian", [](py::function f, py::list inputs, std::vector<int> argnums) {
    return numpy_list(zkynet::jacobian(python_body(f), argnums)(tensors_of(inputs)));
  });
  m.def("_vjp", [](py::function f, py::list inputs) {
    const VjpResult r = zkynet::vjp(python_body(f), tensors_of(inputs));
    py::cpp_function pullback([pull = r.pullback](py::handle cotangent) {
      return numpy_list(pull(tensor_from_python(cotangent)));
    });
    return py::make_tuple(tensor_to_numpy(r.value), pullback);
  });
  // ---- capture and replay (compile.h; cg.compile wraps these) --------------------------------
  py::class_<Schedule>(m, "Schedule", "one captured call of a compiled module: its tape, replayed for calls of the same signature")
      .def_property_readonly("signature", [](const Schedule& s) { return s.signature().str(); },
                             "the signature it was captured for: input shapes, dtypes, devices, gradients, mode, structure")
      .def_property_readonly("size", &Schedule::size, "the number of nodes replayed, in order")
      .def_property_readonly("graph", &Schedule::graph,
                             "the ModuleGraph of the last replay (or of the capture): draw it with visual.to_dot")
      .def_property_readonly("effects", [](const Schedule& s) {
             std::vector<std::string> names;
             for (const auto& e : s.effects()) names.push_back(e.name);
             return names;
           }, "what the step does outside its graph, in order: 'zero_grad(0.weight)', 'back(%12)', 'SGD.step'")
      .def_property_readonly("memory_plan", [](const Schedule& s) {
             const MemoryPlanStats m = s.memory_plan();
             py::dict d;
             d["planned_replays"] = m.planned_replays;
             d["served"] = m.served;
             d["planned_buffers"] = m.planned_buffers;
             d["escaping"] = m.escaping;
             d["block_bytes"] = m.block_bytes;
             d["planned_bytes"] = m.planned_bytes;
             d["dropped"] = m.dropped;
             return d;
           }, "the replays' memory plan: buffers served per replay from one block, its size, whether it was dropped")
      .def_property_readonly("eliminated", &Schedule::eliminated,
                             "operators not replayed: nothing the result or a back() root needs depends on them")
      .def_property_readonly("merged", &Schedule::merged,
                             "operators merged into an earlier equal one on the same parents (common subexpressions)")
      .def("dot", [](const Schedule& s, std::string title) { return s.dot({.title = std::move(title)}); },
           py::arg("title") = "", "DOT text of the schedule: dead operators dashed grey, the step's effects in a note")
      .def("text", &Schedule::str, "the schedule as text, one line per node: '%3 = mult(%1, %2)  (4,3) float32'")
      .def("__str__", &Schedule::str);

  py::class_<Lambda, ModuleBase, std::shared_ptr<Lambda>>(m, "_Lambda")
      .def(py::init([](py::function f, std::vector<std::string> names, std::string name) {
             return std::make_shared<Lambda>(std::move(names), python_body(std::move(f)), std::move(name));
           }),
           py::arg("f"), py::arg("input_names"), py::arg("name"));

  py::class_<CompiledModule>(m, "CompiledModule",
                             "a module compiled by cg.compile: the first call with a signature runs dynamically and "
                             "records its tape; later calls with that signature replay it")
      .def(py::init([](py::handle module, bool check, std::size_t cache_size, bool memory_plan) {
             return std::make_unique<CompiledModule>(constructed<ModuleBase>(module, "compile()"),
                                                     CompileOptions{check, cache_size, memory_plan});
           }),
           py::arg("module"), py::arg("check") = false, py::arg("cache_size") = 8, py::arg("memory_plan") = true,
           py::keep_alive<1, 2>())
      .def("__call__", [](CompiledModule& c, const py::args& args, const py::kwargs& kwargs) {
             return c.call(kwargs.empty() ? operands_of(args) : operands_by_name(c.module(), args, kwargs));
           },
           "calls the module: a replay when a schedule of this signature is cached, else a dynamic call recorded "
           "into the cache; returns the ModuleGraph (a replay's is overwritten by the next replay)")
      .def_property_readonly("module", [](const CompiledModule& c) -> ModuleBase& { return c.module(); },
                             py::return_value_policy::reference, "the compiled module")
      .def("input", [](const CompiledModule& c, std::string_view name) -> Variable& { return c.module().input(name); },
           py::arg("name"), py::return_value_policy::reference_internal,
           "the module's declared input (a compiled function's argument) by name, for grad()")
      .def("param", [](const CompiledModule& c, const std::string& name) -> Parameter& {
             return parameter_by_path(c.module(), name);
           }, py::arg("name"), py::return_value_policy::reference_internal,
           "the module's parameter by name or dotted path")
      .def_property_readonly("stats", [](const CompiledModule& c) {
             const auto& s = c.stats();
             py::dict d;
             d["captures"] = s.captures;
             d["replays"] = s.replays;
             d["dynamic"] = s.dynamic;
             d["evictions"] = s.evictions;
             return d;
           }, "counts: captures, replays, dynamic (calls run uncached: no_grad, nested, node arguments), evictions")
      .def_property_readonly("last", [](const CompiledModule& c) { return c.last(); },
                             py::return_value_policy::reference_internal,
                             "the Schedule the last call captured or replayed; None when it ran dynamically")
      .def_property_readonly("schedules", [](const CompiledModule& c) {
             py::list out;
             for (const Schedule* s : c.schedules()) out.append(py::cast(s, py::return_value_policy::reference));
             return out;
           }, "the cached schedules, most recently used first (valid until the next call or clear())")
      .def_property_readonly("check", [](const CompiledModule& c) { return c.options().check; },
                             "whether every call is re-traced and compared with the schedule")
      .def_property_readonly("cache_size", [](const CompiledModule& c) { return c.options().cache_size; },
                             "the most schedules kept (least recently used dropped first)")
      .def("clear", &CompiledModule::clear, "drops every schedule: the next call captures again");

  m.def("jacobian_limit", &jacobian_limit,
        "the most elements back() without a seed stores as Jacobians (default 2**26)");
  m.def("set_jacobian_limit", &set_jacobian_limit, py::arg("elements"),
        "sets the limit on back()'s full Jacobians (0: none)");
}

}  // namespace zkynet::python
