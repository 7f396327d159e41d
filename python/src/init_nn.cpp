// nn/: layers and optimizers, and the loss operators (torch.nn / torch.optim names).
#include "convert.h"

#include <zkynet/framework/error.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/loss.h>
#include <zkynet/nn/state.h>
#include <zkynet/optim/adam.h>
#include <zkynet/optim/clip.h>
#include <zkynet/optim/rmsprop.h>
#include <zkynet/optim/schedule.h>
#include <zkynet/optim/sgd.h>

#include <pybind11/stl.h>

#include <optional>

namespace zkynet::python {
namespace {

DType dtype_from(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  throw TypeError("expected dtype 'float32' or 'float64', got '" + name + "'");
}

op::Reduction reduction_from(const std::string& name) {
  if (name == "mean") return op::Reduction::Mean;
  if (name == "sum") return op::Reduction::Sum;
  if (name == "none") return op::Reduction::None;
  throw ShapeError("reduction must be 'mean', 'sum' or 'none', got '" + name + "'");
}

template <class M>
py::class_<M, ModuleBase, std::shared_ptr<M>> layer(py::module_& m, const char* name, const char* doc = "") {
  return py::class_<M, ModuleBase, std::shared_ptr<M>>(m, name, doc);
}

using Loss = NodeRef (*)(const NodeRef&, const NodeRef&, op::Reduction);

template <Loss F>
void loss(py::module_& m, const char* name, const char* doc) {
  m.def(name, [](py::handle input, py::handle target, const std::string& reduction) {
          return F(noderef_from_python(input), noderef_from_python(target), reduction_from(reduction));
        }, py::arg("input"), py::arg("target"), py::arg("reduction") = "mean", doc);
}

py::dict state_dict_of(const ModuleBase& m) {
  py::dict out;
  for (auto& [name, t] : nn::state_dict(m)) out[py::str(name)] = tensor_to_numpy(t);
  return out;
}

py::tuple load_state_dict_into(ModuleBase& m, const py::dict& dict, bool strict) {
  nn::StateDict state;
  for (auto [k, v] : dict) state.emplace_back(k.cast<std::string>(), tensor_from_python(v).clone());
  const auto r = nn::load_state_dict(m, state, strict);
  return py::make_tuple(r.missing_keys, r.unexpected_keys);
}

// {key: array}, None for a stateful layer that carries no state yet (nn::states' undefined tensors).
py::dict states_of(const ModuleBase& m) {
  py::dict out;
  for (auto& [name, t] : nn::states(m)) out[py::str(name)] = t.defined() ? py::object(tensor_to_numpy(t)) : py::none();
  return out;
}

py::tuple load_states_into(ModuleBase& m, const py::dict& dict, bool strict) {
  nn::StateDict states;
  for (auto [k, v] : dict) states.emplace_back(k.cast<std::string>(), v.is_none() ? Tensor() : tensor_from_python(v).clone());
  const auto r = nn::load_states(m, states, strict);
  return py::make_tuple(r.missing_keys, r.unexpected_keys);
}

}  // namespace

void init_nn(py::module_& nn, py::module_& optim, py::module_& ops) {
  // Module types need shared_ptr holders here so Sequential can share ownership of its layers.
  nn.def("manual_seed", &nn::manual_seed, py::arg("seed"),
        "seeds nn's default generator (layer initialization, dropout masks, randn/rand)");
  layer<nn::Linear>(nn, "Linear", "y = x W^T + b (torch.nn.Linear); weight (out_features, in_features)")
      .def(py::init([](std::int64_t in, std::int64_t out, bool bias, const std::string& dtype, py::handle device) {
             return on_device(std::make_shared<nn::Linear>(in, out, nn::LinearOptions{bias, dtype_from(dtype), nullptr}),
                              device);
           }),
           py::arg("in_features"), py::arg("out_features"), py::arg("bias") = true, py::arg("dtype") = "float32",
           py::arg("device") = py::none())
      .def_property_readonly("in_features", &nn::Linear::in_features)
      .def_property_readonly("out_features", &nn::Linear::out_features)
      .def_property_readonly("weight", [](nn::Linear& l) { return l.param("weight"); })
      .def_property_readonly("bias", [](nn::Linear& l) -> py::object {
        return l.has_bias() ? py::cast(l.param("bias")) : py::none();
      });
  layer<nn::ReLU>(nn, "ReLU", "max(x, 0) elementwise").def(py::init<>());
  layer<nn::Tanh>(nn, "Tanh", "hyperbolic tangent elementwise").def(py::init<>());
  layer<nn::Sigmoid>(nn, "Sigmoid", "1 / (1 + exp(-x)) elementwise").def(py::init<>());
  layer<nn::Sequential>(nn, "Sequential", "modules applied in order; indexable, sliceable and iterable like torch.nn.Sequential")
      .def(py::init([](const py::args& modules) {
        auto seq = std::make_shared<nn::Sequential>();
        for (auto m : modules) {
          if (!py::isinstance<ModuleBase>(m)) {
            throw TypeError("nn.Sequential expects modules (nn layers or cg.Module instances), got '" +
                            std::string(py::str(m.get_type().attr("__name__"))) + "' as argument " +
                            std::to_string(seq->size() + 1));
          }
          // NOTE: a Python-defined module lives in a Python object; keep that object alive too.
          py::object owner = py::reinterpret_borrow<py::object>(m);
          auto* module = owner.cast<ModuleBase*>();
          seq->append(std::shared_ptr<ModuleBase>(module, [owner](ModuleBase*) mutable {
            py::gil_scoped_acquire gil;
            owner = py::object();
          }));
        }
        return seq;
      }))
      .def("__len__", &nn::Sequential::size)
      .def("__getitem__", [](const nn::Sequential& seq, std::int64_t i) {
        const auto n = static_cast<std::int64_t>(seq.size());
        if (i < -n || i >= n) {
          throw py::index_error("Sequential index " + std::to_string(i) + " out of range for " + std::to_string(n) +
                                " layers");
        }
        return seq.layer(static_cast<std::size_t>(i < 0 ? i + n : i));
      }, py::arg("index"), "the layer at index (the same object that was given)")
      .def("__getitem__", [](const nn::Sequential& seq, const py::slice& range) {
        std::size_t start = 0, stop = 0, step = 0, count = 0;
        if (!range.compute(seq.size(), &start, &stop, &step, &count)) throw py::error_already_set();
        auto out = std::make_shared<nn::Sequential>();
        for (std::size_t k = 0; k < count; ++k) out->append(seq.layer(start + k * step));
        return out;
      }, py::arg("index"), "a Sequential of the selected layers (shared, as in torch)")
      .def("__iter__", [](const nn::Sequential& seq) {
        py::list layers;
        for (std::size_t i = 0; i < seq.size(); ++i) layers.append(py::cast(seq.layer(i)));
        return py::iter(layers);
      });

  py::class_<optim::Optimizer, std::shared_ptr<optim::Optimizer>>(optim, "Optimizer", "updates parameters from their accumulated gradients: step(), zero_grad(), lr")
      .def("step", &optim::Optimizer::step, py::call_guard<py::gil_scoped_release>())
      .def("zero_grad", &optim::Optimizer::zero_grad)
      .def_property("lr", &optim::Optimizer::lr, &optim::Optimizer::set_lr)
      .def("parameters", &optim::Optimizer::parameters);
  py::class_<optim::SGD, optim::Optimizer, std::shared_ptr<optim::SGD>>(optim, "SGD", "stochastic gradient descent with momentum, dampening, Nesterov and weight decay (torch.optim.SGD)")
      .def(py::init([](std::vector<Parameter> params, double lr, double momentum, double dampening,
                       double weight_decay, bool nesterov) {
             return std::make_shared<optim::SGD>(std::move(params),
                                                 optim::SGDOptions{lr, momentum, dampening, weight_decay, nesterov});
           }),
           py::arg("params"), py::arg("lr") = 0.01, py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
           py::arg("weight_decay") = 0.0, py::arg("nesterov") = false);
  py::class_<optim::Adam, optim::Optimizer, std::shared_ptr<optim::Adam>>(optim, "Adam", "Adam (torch.optim.Adam), amsgrad optional")
      .def(py::init([](std::vector<Parameter> params, double lr, std::pair<double, double> betas, double eps,
                       double weight_decay, bool amsgrad) {
             return std::make_shared<optim::Adam>(std::move(params), optim::AdamOptions{lr, betas, eps, weight_decay, amsgrad});
           }),
           py::arg("params"), py::arg("lr") = 1e-3, py::arg("betas") = std::pair<double, double>{0.9, 0.999},
           py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("amsgrad") = false);
  py::class_<optim::AdamW, optim::Optimizer, std::shared_ptr<optim::AdamW>>(optim, "AdamW", "Adam with decoupled weight decay (torch.optim.AdamW)")
      .def(py::init([](std::vector<Parameter> params, double lr, std::pair<double, double> betas, double eps,
                       double weight_decay, bool amsgrad) {
             return std::make_shared<optim::AdamW>(std::move(params), optim::AdamWOptions{lr, betas, eps, weight_decay, amsgrad});
           }),
           py::arg("params"), py::arg("lr") = 1e-3, py::arg("betas") = std::pair<double, double>{0.9, 0.999},
           py::arg("eps") = 1e-8, py::arg("weight_decay") = 1e-2, py::arg("amsgrad") = false);
  py::class_<optim::RMSprop, optim::Optimizer, std::shared_ptr<optim::RMSprop>>(optim, "RMSprop", "RMSprop (torch.optim.RMSprop), centered and momentum optional")
      .def(py::init([](std::vector<Parameter> params, double lr, double alpha, double eps, double weight_decay,
                       double momentum, bool centered) {
             return std::make_shared<optim::RMSprop>(std::move(params),
                                                     optim::RMSpropOptions{lr, alpha, eps, weight_decay, momentum, centered});
           }),
           py::arg("params"), py::arg("lr") = 1e-2, py::arg("alpha") = 0.99, py::arg("eps") = 1e-8,
           py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0, py::arg("centered") = false);
  py::class_<optim::LRScheduler>(optim, "LRScheduler", "changes an optimizer's learning rate at each step()")
      .def("step", &optim::LRScheduler::step)
      .def("get_last_lr", &optim::LRScheduler::get_last_lr)
      .def_property_readonly("last_epoch", &optim::LRScheduler::last_epoch, "steps taken so far (0 at construction)");
  py::class_<optim::StepLR, optim::LRScheduler>(optim, "StepLR", "multiplies the learning rate by gamma every step_size steps")
      .def(py::init<optim::Optimizer&, std::int64_t, double>(), py::arg("optimizer"), py::arg("step_size"),
           py::arg("gamma") = 0.1, py::keep_alive<1, 2>());
  py::class_<optim::CosineAnnealingLR, optim::LRScheduler>(optim, "CosineAnnealingLR", "anneals the learning rate along a cosine from its initial value to eta_min over T_max steps")
      .def(py::init<optim::Optimizer&, std::int64_t, double>(), py::arg("optimizer"), py::arg("T_max"),
           py::arg("eta_min") = 0.0, py::keep_alive<1, 2>());
  py::class_<optim::WarmupCosineLR, optim::LRScheduler>(optim, "WarmupCosineLR", "raises the learning rate linearly over warmup_steps steps, then lowers it along a cosine to min_lr at total_steps (step it once per optimizer step)")
      .def(py::init<optim::Optimizer&, std::int64_t, std::int64_t, double>(), py::arg("optimizer"),
           py::arg("warmup_steps"), py::arg("total_steps"), py::arg("min_lr") = 0.0, py::keep_alive<1, 2>())
      .def("lr_at", &optim::WarmupCosineLR::lr_at, py::arg("step"), "the rate after `step` steps");
  optim.def("clip_grad_norm", &optim::clip_grad_norm, py::arg("parameters"), py::arg("max_norm"),
            py::arg("norm_type") = 2.0, py::arg("error_if_nonfinite") = false,
        "torch.nn.utils.clip_grad_norm_: scales gradients so their total norm is at most max_norm; returns the norm");

  nn.def("parameters_to_vector", [](const std::vector<Parameter>& ps) { return tensor_to_numpy(nn::parameters_to_vector(ps)); },
        "every parameter's values in one flat array (torch's parameters_to_vector)");
  nn.def("vector_to_parameters", [](py::handle vec, const std::vector<Parameter>& ps) {
    nn::vector_to_parameters(tensor_from_python(vec), ps);
  },
        "copies a flat array into the parameters, in order");
  nn.def("gradients_to_vector", [](const std::vector<Parameter>& ps) { return tensor_to_numpy(nn::gradients_to_vector(ps)); },
        "every parameter's gradient in one flat array (zeros where none)");
  nn.def("weights", &nn::weights, py::arg("module"),
         "The parameters that are not biases (Parameter.is_bias, marked by each layer, not read from names).");
  nn.def("state_dict", &state_dict_of, py::arg("module"),
        "{dotted name: array} of a module's parameters and buffers");
  nn.def("load_state_dict", &load_state_dict_into, py::arg("module"), py::arg("state_dict"), py::arg("strict") = true,
        "loads {dotted name: array} into a module; returns (missing_keys, unexpected_keys)");
  nn.def("states", &states_of, py::arg("module"),
        "{'<layer path>.h' / '.c': array} of what each stateful recurrent layer carries into its next call, copies "
        "(FluxUtils' states); None for a stateful layer that carries nothing yet");
  nn.def("load_states", &load_states_into, py::arg("module"), py::arg("states"), py::arg("strict") = true,
        "restores nn.states() into the stateful recurrent layers, so the next call continues as the saved model's "
        "(FluxUtils' loadstates!); None resets a layer; returns (missing_keys, unexpected_keys)");
  // The same as methods of every module (torch's spelling).
  py::object module_type = py::type::of<ModuleBase>();
  module_type.attr("state_dict") = py::cpp_function(&state_dict_of, py::name("state_dict"), py::is_method(module_type),
                                                    "{dotted name: array} of every parameter and buffer");
  module_type.attr("load_state_dict") = py::cpp_function(
      &load_state_dict_into, py::name("load_state_dict"), py::is_method(module_type), py::arg("state_dict"),
      py::arg("strict") = true, "loads parameters and buffers by dotted name; returns (missing, unexpected) keys");

  ops.def("softmax", [](py::handle x, std::int64_t axis) { return op::softmax(noderef_from_python(x), axis); },
          py::arg("x"), py::arg("dim") = -1,
        "torch.softmax along dim, shifted by the lane's maximum (finite for +-1e30)");
  ops.def("log_softmax", [](py::handle x, std::int64_t axis) { return op::log_softmax(noderef_from_python(x), axis); },
          py::arg("x"), py::arg("dim") = -1,
        "torch.log_softmax along dim, shifted by the lane's maximum");
  ops.def("logsumexp", [](py::handle x, py::handle axes, bool keepdim) {
            return op::logsumexp(noderef_from_python(x), int64s_from_python(axes, "logsumexp: dim"), keepdim);
          }, py::arg("x"), py::arg("dim"), py::arg("keepdim") = false,
        "torch.logsumexp over dim, shifted by the maximum; sums in float64");
  loss<op::cross_entropy>(ops, "cross_entropy", "cross entropy of logits (N, C) and int64 class labels (N,)");
  loss<op::nll_loss>(ops, "nll_loss", "negative log likelihood of log-probabilities and int64 labels");
  loss<op::mse_loss>(ops, "mse_loss", "mean squared error");
  loss<op::binary_cross_entropy_with_logits>(ops, "binary_cross_entropy_with_logits", "stable BCE on logits");
}

}  // namespace zkynet::python
