// More of nn/ and data/: convolution, pooling, normalization, dropout, embedding and recurrent
// layers, checkpoints, summaries, the Estimator, datasets and loaders, and their operators.
#include "array_dataset.h"
#include "convert.h"

#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>
#include <zkynet/data/hdf5_dataset.h>
#include <zkynet/framework/error.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/checkpoint.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/dropout.h>
#include <zkynet/nn/embedding.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/normalization.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/summary.h>
#include <zkynet/ops/bmm.h>
#include <zkynet/ops/conv.h>
#include <zkynet/ops/normalization.h>

#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <optional>

namespace zkynet::python {
namespace {

DType dtype_of(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  throw TypeError("expected dtype 'float32' or 'float64', got '" + name + "'");
}

// torch's int-or-tuple arguments.
nn::IntPair pair_of(py::handle v, const char* what) {
  if (py::isinstance<py::int_>(v)) return nn::IntPair(int64_from_python(v, what));
  if (py::isinstance<py::tuple>(v) || py::isinstance<py::list>(v)) {
    const Shape s = int64s_from_python(v, what);
    if (s.size() == 2) return nn::IntPair(s[0], s[1]);
  }
  throw TypeError(std::string(what) + " must be an int or a pair of ints");
}

std::array<std::int64_t, 2> arr_of(py::handle v, const char* what) { return pair_of(v, what).array(); }

py::tuple tuple_of(const nn::IntPair& p) { return py::make_tuple(p.h, p.w); }
py::tuple tuple_of(const std::array<std::int64_t, 2>& p) { return py::make_tuple(p[0], p[1]); }

Shape shape_of(py::handle v) { return int64s_from_python(v, "normalized_shape"); }

// batch_norm's running statistic: in training mode it is updated in place, so a numpy array
// must be used without a copy (float32/float64, native byte order) and be writable; read-only
// arrays (np.broadcast_to views, zkynet's own values) were written through, copies silently
// left unchanged.
Tensor running_stat(py::handle v, const char* what, bool training) {
  if (v.is_none()) return Tensor();
  Tensor t = tensor_from_python(v);
  if (training && py::isinstance<py::array>(v)) {
    auto array = py::reinterpret_borrow<py::array>(v);
    if (!array.writeable() || t.raw_data() != array.data() || t.numel() != array.size()) {
      throw UsageError(std::string("batch_norm: ") + what + " is updated in place in training mode: give a " +
                       "writable float32 or float64 array (got a " + (array.writeable() ? "" : "read-only ") +
                       std::string(py::str(array.dtype())) + " array" +
                       (array.writeable() ? " that would be converted, a copy" : "") + ")");
    }
  }
  return t;
}

NodeRef optional_node(py::handle v) { return v.is_none() ? NodeRef() : noderef_from_python(v); }

py::object param_or_none(ModuleBase& m, const char* name, bool present) {
  return present ? py::cast(m.param(name)) : py::none();
}

py::list batch_to_list(const data::Batch& b) {
  py::list out;
  for (const auto& t : b) out.append(tensor_to_numpy(t));
  return out;
}

template <class M>
py::class_<M, ModuleBase, std::shared_ptr<M>> layer(py::module_& m, const char* name, const char* doc = "") {
  return py::class_<M, ModuleBase, std::shared_ptr<M>>(m, name, doc);
}

nn::RecurrentOptions recurrent_options(std::int64_t num_layers, bool bias, bool batch_first, bool stateful,
                                       const std::string& nonlinearity, const std::string& dtype) {
  nn::RecurrentOptions o;
  o.num_layers = num_layers;
  o.bias = bias;
  o.batch_first = batch_first;
  o.stateful = stateful;
  if (nonlinearity == "tanh") o.nonlinearity = op::RnnActivation::Tanh;
  else if (nonlinearity == "relu") o.nonlinearity = op::RnnActivation::Relu;
  else throw UsageError("nonlinearity must be 'tanh' or 'relu', got '" + nonlinearity + "'");
  o.dtype = dtype_of(dtype);
  return o;
}

template <class M>
void batch_norm_layer(py::module_& m, const char* name, const char* doc) {
  layer<M>(m, name, doc)
      .def(py::init([](std::int64_t n, double eps, std::optional<double> momentum, bool affine, bool track,
                       const std::string& dtype, py::handle device) {
             return on_device(std::make_shared<M>(n, nn::BatchNormOptions{eps, momentum, affine, track, dtype_of(dtype)}),
                              device);
           }),
           py::arg("num_features"), py::arg("eps") = 1e-5, py::arg("momentum") = 0.1, py::arg("affine") = true,
           py::arg("track_running_stats") = true, py::arg("dtype") = "float32", py::arg("device") = py::none())
      .def_property_readonly("num_features", &M::num_features)
      .def_property_readonly("eps", [](M& l) { return l.options().eps; })
      .def_property_readonly("momentum", [](M& l) { return l.options().momentum; })
      .def_property_readonly("weight", [](M& l) { return param_or_none(l, "weight", l.options().affine); })
      .def_property_readonly("bias", [](M& l) { return param_or_none(l, "bias", l.options().affine); })
      .def_property_readonly("running_mean", [](M& l) -> py::object {
        return l.options().track_running_stats ? py::object(tensor_to_numpy(l.buffer("running_mean"))) : py::none();
      })
      .def_property_readonly("running_var", [](M& l) -> py::object {
        return l.options().track_running_stats ? py::object(tensor_to_numpy(l.buffer("running_var"))) : py::none();
      })
      .def_property_readonly("num_batches_tracked", [](M& l) -> py::object {
        return l.options().track_running_stats ? py::object(tensor_to_numpy(l.buffer("num_batches_tracked")))
                                               : py::none();
      });
}

// The estimator together with the Python objects it refers to.
struct PyEstimator {
  py::object model, optimizer;
  py::list hooks;  // the Python callables est's loss and callbacks call (kept alive here, released after est)
  std::unique_ptr<nn::Estimator> est;
};

py::dict epoch_log_dict(const nn::EpochLog& l) {
  py::dict d;
  d["epoch"] = l.epoch;
  d["loss"] = l.loss;
  d["val_loss"] = l.val_loss ? py::object(py::float_(*l.val_loss)) : py::none();
  d["samples_per_second"] = l.samples_per_second;
  d["seconds"] = l.seconds;
  return d;
}

// loss_fn(prediction, *targets): one target or several, as fit() was given them. `fn` is owned
// by the PyEstimator's hooks, which outlive the C++ estimator.
nn::Estimator::TupleLoss tuple_loss_from_python(PyObject* fn) {
  return [fn](const NodeRef& prediction, std::span<const NodeRef> targets) {
    py::gil_scoped_acquire gil;
    py::tuple args(targets.size() + 1);
    args[0] = py::cast(prediction);
    for (std::size_t k = 0; k < targets.size(); ++k) args[k + 1] = py::cast(targets[k]);
    return noderef_from_python(py::reinterpret_borrow<py::object>(fn)(*args));
  };
}

// fit's and predict's x and y: a tuple holds several inputs (targets); anything else is one.
// (A list is array data, as numpy reads it.)
std::vector<py::object> items_of(py::handle value) {
  std::vector<py::object> out;
  if (py::isinstance<py::tuple>(value)) {
    for (auto item : value) out.push_back(py::reinterpret_borrow<py::object>(item));
    if (out.empty()) throw UsageError("Estimator: an empty tuple of inputs or targets");
  } else {
    out.push_back(py::reinterpret_borrow<py::object>(value));
  }
  return out;
}

bool read_as_needed(py::handle item) { return py::isinstance<data::Dataset>(item) || is_lazy_array(item); }

bool any_read_as_needed(const std::vector<py::object>& items) {
  return std::any_of(items.begin(), items.end(), [](const py::object& i) { return read_as_needed(i); });
}

// In memory: copies, since Python code may write into the arrays while fit runs without the GIL.
std::vector<Tensor> tensors_of(const std::vector<py::object>& items) {
  std::vector<Tensor> out;
  for (const auto& item : items) out.push_back(tensor_from_python(item).clone());
  return out;
}

// Inputs or targets as fields of datasets: zkynet datasets (every field), lazy arrays (memmaps,
// h5py) wrapped to be read batch by batch, arrays in memory copied into a TensorDataset each.
struct PyFields {
  std::vector<std::shared_ptr<const data::Dataset>> owners;
  std::vector<data::FieldRef> fields;
};

PyFields fields_from_python(const std::vector<py::object>& items, const std::string& role) {
  PyFields out;
  for (std::size_t k = 0; k < items.size(); ++k) {
    const py::object& item = items[k];
    const std::string name = "Estimator: " + role + " " + std::to_string(k);
    std::shared_ptr<const data::Dataset> dataset;
    if (py::isinstance<data::Dataset>(item)) {
      dataset = item.cast<std::shared_ptr<data::Dataset>>();
    } else if (is_lazy_array(item)) {
      dataset = std::make_shared<ArrayLikeDataset>(std::vector<py::object>{item}, std::vector<std::string>{name});
    } else {
      Tensor t = tensor_from_python(item).clone();
      if (t.dim() == 0) throw ShapeError(name + " is 0-d; samples are rows of axis 0");
      dataset = std::make_shared<data::TensorDataset>(std::vector<Tensor>{std::move(t)});
    }
    for (const data::FieldRef& f : data::fields_of(*dataset)) out.fields.push_back(f);
    out.owners.push_back(std::move(dataset));
  }
  return out;
}

// predict's out=: a writable, C-contiguous numpy array of a zkynet dtype, as a tensor over its
// memory (shape and dtype are checked against the predictions by the C++ predict).
Tensor out_from_python(py::handle out) {
  if (!py::isinstance<py::array>(out)) {
    throw TypeError("Estimator.predict: out must be a numpy array, got '" +
                    std::string(py::str(out.get_type().attr("__name__"))) + "'");
  }
  const auto array = py::reinterpret_borrow<py::array>(out);
  if (!array.writeable()) throw py::value_error("Estimator.predict: out is read-only; give a writable array");
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error("Estimator.predict: out must be C-contiguous (np.ascontiguousarray or np.empty give one)");
  }
  const std::string dtype = py::str(array.dtype());
  if (dtype != "float32" && dtype != "float64" && dtype != "int64") {
    throw TypeError("Estimator.predict: out is " + dtype + "; it must be float32, float64 or int64, as the predictions are");
  }
  Tensor t = tensor_from_python(array);
  if (t.raw_data() != array.data()) throw TypeError("Estimator.predict: out (" + dtype + ") cannot be written in place");
  return t;
}

py::list history_list(const std::vector<nn::EpochLog>& logs) {
  py::list out;
  for (const auto& l : logs) out.append(epoch_log_dict(l));
  return out;
}

py::list estimator_fit(PyEstimator& e, py::handle x, py::handle y, std::int64_t num_inputs) {
  if (y.is_none()) {
    if (!py::isinstance<data::Dataset>(x)) {
      throw TypeError("Estimator.fit: give y, or x as a zkynet data.Dataset whose first num_inputs fields are the inputs "
                      "and the others the targets");
    }
    const auto dataset = x.cast<std::shared_ptr<data::Dataset>>();
    std::vector<nn::EpochLog> logs;
    {
      py::gil_scoped_release release;
      logs = e.est->fit(*dataset, num_inputs);
    }
    return history_list(logs);
  }
  const auto xs = items_of(x), ys = items_of(y);
  std::vector<nn::EpochLog> logs;
  if (any_read_as_needed(xs) || any_read_as_needed(ys)) {
    const PyFields inputs = fields_from_python(xs, "input"), targets = fields_from_python(ys, "target");
    py::gil_scoped_release release;
    logs = e.est->fit(inputs.fields, targets.fields);
  } else {
    const std::vector<Tensor> inputs = tensors_of(xs), targets = tensors_of(ys);
    py::gil_scoped_release release;
    logs = e.est->fit(inputs, targets);
  }
  return history_list(logs);  // the GIL is back: the datasets are released with it
}

py::object estimator_predict(PyEstimator& e, py::handle x, py::handle out) {
  const auto xs = items_of(x);
  Tensor into = out.is_none() ? Tensor() : out_from_python(out);
  Tensor result;
  if (any_read_as_needed(xs)) {
    const PyFields inputs = fields_from_python(xs, "input");
    py::gil_scoped_release release;
    if (into.defined()) {
      e.est->predict(inputs.fields, into);
    } else {
      result = e.est->predict(inputs.fields);
    }
  } else {
    const std::vector<Tensor> inputs = tensors_of(xs);
    py::gil_scoped_release release;
    if (into.defined()) {
      e.est->predict(inputs, into);
    } else {
      result = e.est->predict(inputs);
    }
  }
  return into.defined() ? py::reinterpret_borrow<py::object>(out) : py::object(tensor_to_numpy(result));
}

class LoaderIterator {
 public:
  // tensors: batches as zkynet Tensors (a loader given a device), else as numpy arrays.
  LoaderIterator(py::object owner, data::DataLoader& loader, bool tensors = false)
      : owner_(std::move(owner)), it_(loader.begin()), tensors_(tensors) {}
  py::list next() {
    if (it_ == std::default_sentinel) throw py::stop_iteration();
    py::list out;
    if (tensors_) {
      for (const Tensor& t : *it_) out.append(py::cast(t));
    } else {
      out = batch_to_list(*it_);
    }
    ++it_;
    return out;
  }

 private:
  py::object owner_;
  data::DataLoader::Iterator it_;
  bool tensors_ = false;
};

}  // namespace

nn::Estimator& estimator_from_python(py::handle obj) { return *obj.cast<PyEstimator&>().est; }

void init_layers(py::module_& nn, py::module_& ops, py::module_& data) {
  // --- layers ---
  layer<nn::Conv2d>(nn, "Conv2d", "2-d convolution over NCHW input (torch.nn.Conv2d)")
      .def(py::init([](std::int64_t in, std::int64_t out, py::handle k, py::handle stride, py::handle padding,
                       py::handle dilation, std::int64_t groups, bool bias, const std::string& dtype,
                       py::handle device) {
             nn::Conv2dOptions o;
             o.stride = pair_of(stride, "stride");
             o.padding = pair_of(padding, "padding");
             o.dilation = pair_of(dilation, "dilation");
             o.groups = groups;
             o.bias = bias;
             o.dtype = dtype_of(dtype);
             return on_device(std::make_shared<nn::Conv2d>(in, out, pair_of(k, "kernel_size"), o), device);
           }),
           py::arg("in_channels"), py::arg("out_channels"), py::arg("kernel_size"), py::arg("stride") = 1,
           py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("bias") = true,
           py::arg("dtype") = "float32", py::arg("device") = py::none())
      .def_property_readonly("in_channels", &nn::Conv2d::in_channels)
      .def_property_readonly("out_channels", &nn::Conv2d::out_channels)
      .def_property_readonly("kernel_size", [](nn::Conv2d& c) { return tuple_of(c.kernel_size()); })
      .def_property_readonly("stride", [](nn::Conv2d& c) { return tuple_of(c.conv_options().stride); })
      .def_property_readonly("padding", [](nn::Conv2d& c) { return tuple_of(c.conv_options().padding); })
      .def_property_readonly("dilation", [](nn::Conv2d& c) { return tuple_of(c.conv_options().dilation); })
      .def_property_readonly("groups", [](nn::Conv2d& c) { return c.conv_options().groups; })
      .def_property_readonly("weight", [](nn::Conv2d& c) { return c.param("weight"); })
      .def_property_readonly("bias", [](nn::Conv2d& c) { return param_or_none(c, "bias", c.has_bias()); });

  layer<nn::MaxPool2d>(nn, "MaxPool2d", "2-d max pooling over NCHW input")
      .def(py::init([](py::handle k, py::handle stride, py::handle padding, py::handle dilation) {
             nn::MaxPool2dOptions o;
             if (!stride.is_none()) o.stride = pair_of(stride, "stride");
             o.padding = pair_of(padding, "padding");
             o.dilation = pair_of(dilation, "dilation");
             return std::make_shared<nn::MaxPool2d>(pair_of(k, "kernel_size"), o);
           }),
           py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0, py::arg("dilation") = 1)
      .def_property_readonly("kernel_size", [](nn::MaxPool2d& p) { return tuple_of(p.kernel_size()); });
  layer<nn::AvgPool2d>(nn, "AvgPool2d", "2-d average pooling over NCHW input")
      .def(py::init([](py::handle k, py::handle stride, py::handle padding, bool count_include_pad) {
             nn::AvgPool2dOptions o;
             if (!stride.is_none()) o.stride = pair_of(stride, "stride");
             o.padding = pair_of(padding, "padding");
             o.count_include_pad = count_include_pad;
             return std::make_shared<nn::AvgPool2d>(pair_of(k, "kernel_size"), o);
           }),
           py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
           py::arg("count_include_pad") = true)
      .def_property_readonly("kernel_size", [](nn::AvgPool2d& p) { return tuple_of(p.kernel_size()); });
  layer<nn::Flatten>(nn, "Flatten", "flattens all axes after the first (batch) axis")
      .def(py::init<std::int64_t, std::int64_t>(), py::arg("start_dim") = 1, py::arg("end_dim") = -1)
      .def_property_readonly("start_dim", &nn::Flatten::start_dim)
      .def_property_readonly("end_dim", &nn::Flatten::end_dim);
  batch_norm_layer<nn::BatchNorm1d>(nn, "BatchNorm1d", "batch normalization over (N, C) or (N, C, L) input, with running statistics");
  batch_norm_layer<nn::BatchNorm2d>(nn, "BatchNorm2d", "batch normalization over NCHW input, with running statistics");
  layer<nn::LayerNorm>(nn, "LayerNorm", "layer normalization over the trailing normalized_shape axes")
      .def(py::init([](py::handle shape, double eps, bool affine, const std::string& dtype, py::handle device) {
             return on_device(
                 std::make_shared<nn::LayerNorm>(shape_of(shape), nn::LayerNormOptions{eps, affine, dtype_of(dtype)}), device);
           }),
           py::arg("normalized_shape"), py::arg("eps") = 1e-5, py::arg("elementwise_affine") = true,
           py::arg("dtype") = "float32", py::arg("device") = py::none())
      .def_property_readonly("normalized_shape", [](nn::LayerNorm& l) {
        const Shape& s = l.normalized_shape();
        return py::tuple(py::cast(std::vector<std::int64_t>(s.begin(), s.end())));
      })
      .def_property_readonly("eps", &nn::LayerNorm::eps)
      .def_property_readonly("weight", [](nn::LayerNorm& l) { return param_or_none(l, "weight", l.elementwise_affine()); })
      .def_property_readonly("bias", [](nn::LayerNorm& l) { return param_or_none(l, "bias", l.elementwise_affine()); });
  layer<nn::Dropout>(nn, "Dropout", "zeroes elements with probability p in training mode, scaling the rest by 1/(1-p)")
      .def(py::init([](double p) { return std::make_shared<nn::Dropout>(p); }), py::arg("p") = 0.5)
      .def_property_readonly("p", &nn::Dropout::p);
  layer<nn::Embedding>(nn, "Embedding", "a lookup table: int64 indices -> rows of weight (num_embeddings, embedding_dim)")
      .def(py::init([](std::int64_t n, std::int64_t d, std::optional<std::int64_t> padding_idx, const std::string& dtype,
                       py::handle device) {
             return on_device(
                 std::make_shared<nn::Embedding>(n, d, nn::EmbeddingOptions{dtype_of(dtype), nullptr, padding_idx}),
                 device);
           }),
           py::arg("num_embeddings"), py::arg("embedding_dim"), py::arg("padding_idx") = py::none(),
           py::arg("dtype") = "float32", py::arg("device") = py::none())
      .def_property_readonly("padding_idx", &nn::Embedding::padding_idx)
      .def_property_readonly("num_embeddings", &nn::Embedding::num_embeddings)
      .def_property_readonly("embedding_dim", &nn::Embedding::embedding_dim)
      .def_property_readonly("weight", [](nn::Embedding& e) { return e.param("weight"); });
  layer<nn::LeakyReLU>(nn, "LeakyReLU", "x where x > 0, negative_slope * x elsewhere").def(py::init<double>(), py::arg("negative_slope") = 0.01);

  py::class_<nn::RecurrentBase, ModuleBase, std::shared_ptr<nn::RecurrentBase>>(nn, "RecurrentBase", "what RNN, LSTM and GRU share: layers, states, batch_first, stateful mode")
      .def("reset_state", &nn::RecurrentBase::reset_state)
      .def_property("stateful", &nn::RecurrentBase::stateful, &nn::RecurrentBase::set_stateful)
      .def_property_readonly("last_state", [](nn::RecurrentBase& r) -> py::object {
        const auto& s = r.last_state();
        if (!s.h.defined()) return py::none();
        return py::make_tuple(s.h, s.c.defined() ? py::cast(s.c) : py::none());
      }, "(h_n, c_n) of the last call as nodes (c_n None but for LSTM); None before any call")
      .def_property_readonly("input_size", &nn::RecurrentBase::input_size)
      .def_property_readonly("hidden_size", &nn::RecurrentBase::hidden_size)
      .def_property_readonly("num_layers", &nn::RecurrentBase::num_layers)
      .def_property_readonly("batch_first", &nn::RecurrentBase::batch_first);
  py::class_<nn::RNN, nn::RecurrentBase, std::shared_ptr<nn::RNN>>(nn, "RNN", "an Elman recurrent layer (tanh or relu), torch.nn.RNN's conventions")
      .def(py::init([](std::int64_t in, std::int64_t hidden, std::int64_t layers, const std::string& nonlinearity,
                       bool bias, bool batch_first, bool stateful, const std::string& dtype, py::handle device) {
             return on_device(std::make_shared<nn::RNN>(
                                  in, hidden, recurrent_options(layers, bias, batch_first, stateful, nonlinearity, dtype)),
                              device);
           }),
           py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers") = 1, py::arg("nonlinearity") = "tanh",
           py::arg("bias") = true, py::arg("batch_first") = false, py::arg("stateful") = false,
           py::arg("dtype") = "float32", py::arg("device") = py::none())
      .def("__call__", [](nn::RNN& r, py::handle x, py::handle h0) {
        return h0.is_none() ? r(noderef_from_python(x)) : r(noderef_from_python(x), noderef_from_python(h0));
      }, py::arg("x"), py::arg("h0") = py::none());
  py::class_<nn::LSTM, nn::RecurrentBase, std::shared_ptr<nn::LSTM>>(nn, "LSTM", "a long short-term memory layer, torch.nn.LSTM's conventions")
      .def(py::init([](std::int64_t in, std::int64_t hidden, std::int64_t layers, bool bias, bool batch_first,
                       bool stateful, const std::string& dtype, py::handle device) {
             return on_device(std::make_shared<nn::LSTM>(
                                  in, hidden, recurrent_options(layers, bias, batch_first, stateful, "tanh", dtype)),
                              device);
           }),
           py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers") = 1, py::arg("bias") = true,
           py::arg("batch_first") = false, py::arg("stateful") = false, py::arg("dtype") = "float32",
           py::arg("device") = py::none())
      .def("__call__", [](nn::LSTM& r, py::handle x, py::handle h0, py::handle c0) {
        if (h0.is_none() != c0.is_none()) throw UsageError("LSTM: give both h0 and c0, or neither");
        return h0.is_none() ? r(noderef_from_python(x))
                            : r(noderef_from_python(x), noderef_from_python(h0), noderef_from_python(c0));
      }, py::arg("x"), py::arg("h0") = py::none(), py::arg("c0") = py::none());
  py::class_<nn::GRU, nn::RecurrentBase, std::shared_ptr<nn::GRU>>(nn, "GRU", "a gated recurrent unit layer, torch.nn.GRU's conventions")
      .def(py::init([](std::int64_t in, std::int64_t hidden, std::int64_t layers, bool bias, bool batch_first,
                       bool stateful, const std::string& dtype, py::handle device) {
             return on_device(std::make_shared<nn::GRU>(
                                  in, hidden, recurrent_options(layers, bias, batch_first, stateful, "tanh", dtype)),
                              device);
           }),
           py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers") = 1, py::arg("bias") = true,
           py::arg("batch_first") = false, py::arg("stateful") = false, py::arg("dtype") = "float32",
           py::arg("device") = py::none())
      .def("__call__", [](nn::GRU& r, py::handle x, py::handle h0) {
        return h0.is_none() ? r(noderef_from_python(x)) : r(noderef_from_python(x), noderef_from_python(h0));
      }, py::arg("x"), py::arg("h0") = py::none());

  // --- checkpoints, summaries ---
  nn.def("save_checkpoint", [](const ModuleBase& m, const std::string& path) { nn::save_checkpoint(m, path); },
         py::arg("module"), py::arg("path"),
        "writes a module's state to an HDF5 file, one dataset per state_dict key, atomically");
  nn.def("load_checkpoint", [](ModuleBase& m, const std::string& path, bool strict) {
    const auto r = nn::load_checkpoint(m, path, strict);
    return py::make_tuple(r.missing_keys, r.unexpected_keys);
  }, py::arg("module"), py::arg("path"), py::arg("strict") = true,
        "reads a module's state from an HDF5 checkpoint written by save_checkpoint");
  nn.def("summary", [](ModuleBase& m, py::handle example) {
    if (py::isinstance<py::list>(example) || py::isinstance<py::tuple>(example)) {
      std::vector<Tensor> inputs;
      for (auto e : example) inputs.push_back(tensor_from_python(e).clone());
      return nn::summary(m, inputs);
    }
    return nn::summary(m, tensor_from_python(example).clone());
  }, py::arg("model"), py::arg("example_input"), "the model's summary table (a list or tuple: several inputs)");

  // --- Estimator ---
  py::class_<PyEstimator>(nn, "Estimator", "fit/evaluate/predict for a model, a loss and an optimizer: minibatches, validation, early stopping; tuples of inputs and targets; data read as needed from memmaps, h5py and zkynet datasets")
      .def(py::init([](py::object model, py::object loss_fn, py::object optimizer, std::int64_t epochs,
                       std::int64_t batchsize, std::int64_t seqsize, double validation_split, std::int64_t patience,
                       bool shuffle, std::uint64_t seed, bool verbose, py::handle device) {
             // A name ("cpu", "cuda:1") reaches the Estimator as given, so a bad one is its error.
             const std::string where = device.is_none()                  ? std::string("cpu")
                                       : py::isinstance<py::str>(device) ? device.cast<std::string>()
                                                                         : device_from_python(device).str();
             auto out = std::make_unique<PyEstimator>();
             out->model = model;
             out->optimizer = optimizer;
             out->hooks.append(loss_fn);  // owned for the estimator's life
             out->est = std::make_unique<nn::Estimator>(
                 model.cast<ModuleBase&>(), tuple_loss_from_python(loss_fn.ptr()), optimizer.cast<optim::Optimizer&>(),
                 nn::EstimatorSpec{epochs, batchsize, seqsize, validation_split, patience, shuffle, seed, verbose, where});
             return out;
           }),
           py::arg("model"), py::arg("loss_fn"), py::arg("optimizer"), py::arg("epochs") = 10,
           py::arg("batchsize") = 32, py::arg("seqsize") = 0, py::arg("validation_split") = 0.0,
           py::arg("patience") = 0, py::arg("shuffle") = true, py::arg("seed") = 0, py::arg("verbose") = true,
           py::arg("device") = "cpu",
           "device: where training runs ('cpu', 'cuda', 'cuda:N'): the model is moved there now, each batch and "
           "series window when it is used; predictions come back as host arrays")
      .def("fit", &estimator_fit, py::arg("x"), py::arg("y") = py::none(), py::arg("num_inputs") = 1,
           "trains; one dict per epoch (epoch, loss, val_loss, samples_per_second, seconds). x and y: an array, or "
           "a tuple of arrays (the model called with every input, loss_fn(prediction, *targets)); numpy memmaps, "
           "h5py datasets and data.Dataset objects are read batch by batch (series: window by window), arrays in "
           "memory copied once. y=None: x is a data.Dataset whose first num_inputs fields are the inputs")
      .def("add_callback", [](PyEstimator& e, py::function callback) {
        e.hooks.append(callback);
        PyObject* fn = callback.ptr();  // owned by e.hooks for the estimator's life
        e.est->add_callback([fn](const nn::EpochLog& log) {
          py::gil_scoped_acquire gil;
          const py::object result = py::reinterpret_borrow<py::object>(fn)(epoch_log_dict(log));
          return result.is_none() || result.cast<bool>();
        });
      }, py::arg("callback"),
           "callback(log) after each epoch, log the dict fit() returns per epoch; returning False stops training")
      .def("on_sequence_start", [](PyEstimator& e, py::function reset) {
        e.hooks.append(reset);
        PyObject* fn = reset.ptr();
        e.est->on_sequence_start([fn] {
          py::gil_scoped_acquire gil;
          py::reinterpret_borrow<py::object>(fn)();
        });
      }, py::arg("reset"), "reset() whenever a new group of sequences starts (stateful recurrent models)")
      .def("predict", &estimator_predict, py::arg("x"), py::arg("out") = py::none(),
           "the model's predictions for x (an array, a tuple of arrays, a memmap, an h5py dataset or a "
           "data.Dataset); out=: a writable C-contiguous numpy array of the predictions' shape and dtype, "
           "written batch by batch (series: window by window) and returned (FluxUtils' predict!)");

  // --- operators ---
  ops.def("conv2d", [](py::handle input, py::handle weight, py::handle bias, py::handle stride, py::handle padding,
                       py::handle dilation, std::int64_t groups) {
            op::Conv2dOptions o{arr_of(stride, "stride"), arr_of(padding, "padding"), arr_of(dilation, "dilation"), groups};
            return op::conv2d(noderef_from_python(input), noderef_from_python(weight), optional_node(bias), o);
          }, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = 1,
          py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        "torch.nn.functional.conv2d over NCHW input: stride, padding, dilation, groups");
  ops.def("max_pool2d", [](py::handle input, py::handle k, py::handle stride, py::handle padding, py::handle dilation) {
            op::MaxPool2dOptions o;
            if (!stride.is_none()) o.stride = arr_of(stride, "stride");
            o.padding = arr_of(padding, "padding");
            o.dilation = arr_of(dilation, "dilation");
            return op::max_pool2d(noderef_from_python(input), arr_of(k, "kernel_size"), o);
          }, py::arg("input"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
          py::arg("dilation") = 1,
        "torch.nn.functional.max_pool2d over NCHW input");
  ops.def("avg_pool2d", [](py::handle input, py::handle k, py::handle stride, py::handle padding, bool cip) {
            op::AvgPool2dOptions o;
            if (!stride.is_none()) o.stride = arr_of(stride, "stride");
            o.padding = arr_of(padding, "padding");
            o.count_include_pad = cip;
            return op::avg_pool2d(noderef_from_python(input), arr_of(k, "kernel_size"), o);
          }, py::arg("input"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
          py::arg("count_include_pad") = true,
        "torch.nn.functional.avg_pool2d over NCHW input");
  ops.def("layer_norm", [](py::handle input, py::handle shape, py::handle weight, py::handle bias, double eps) {
            return op::layer_norm(noderef_from_python(input), shape_of(shape), optional_node(weight), optional_node(bias), eps);
          }, py::arg("input"), py::arg("normalized_shape"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
          py::arg("eps") = 1e-5,
        "torch.nn.functional.layer_norm over the trailing normalized_shape axes");
  ops.def("batch_norm", [](py::handle input, py::handle running_mean, py::handle running_var, py::handle weight,
                           py::handle bias, bool training, double momentum, double eps) {
            // Running statistics given as writable arrays are updated in place (training mode).
            Tensor rm = running_stat(running_mean, "running_mean", training);
            Tensor rv = running_stat(running_var, "running_var", training);
            return op::batch_norm(noderef_from_python(input), rm, rv, optional_node(weight), optional_node(bias), training,
                                  momentum, eps);
          }, py::arg("input"), py::arg("running_mean") = py::none(), py::arg("running_var") = py::none(),
          py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("training") = false,
          py::arg("momentum") = 0.1, py::arg("eps") = 1e-5,
        "torch.nn.functional.batch_norm; writable running statistics are updated in place in training mode");
  ops.def("dropout", [](py::handle input, double p, bool training) {
            return op::dropout(noderef_from_python(input), p, training, nn::default_generator());
          }, py::arg("input"), py::arg("p") = 0.5, py::arg("training") = true,
          "inverted dropout; the mask from nn's default generator (nn.manual_seed)");
  ops.def("bmm", [](py::handle a, py::handle b) { return op::bmm(noderef_from_python(a), noderef_from_python(b)); },
          py::arg("input"), py::arg("mat2"),
        "torch.bmm: (B, n, k) x (B, k, m) -> (B, n, m)");

  // --- data ---
  py::class_<data::Dataset, std::shared_ptr<data::Dataset>>(data, "Dataset", "indexable samples: len(d), d[i] -> list of arrays")
      .def("__len__", &data::Dataset::size)
      .def("__getitem__", [](const data::Dataset& d, std::int64_t i) {
        if (i < 0) i += d.size();
        return batch_to_list(d.get(i));
      })
      .def("get_batch", [](const data::Dataset& d, std::vector<std::int64_t> indices) {
        return batch_to_list(d.get_batch(indices));
      }, py::arg("indices"));
  py::class_<data::TensorDataset, data::Dataset, std::shared_ptr<data::TensorDataset>>(data, "TensorDataset", "samples from arrays sharing their first axis")
      .def(py::init([](const py::args& arrays) {
        std::vector<Tensor> ts;
        for (auto a : arrays) ts.push_back(tensor_from_python(a).clone());
        return std::make_shared<data::TensorDataset>(std::move(ts));
      }));
  py::class_<data::HDF5Dataset, data::Dataset, std::shared_ptr<data::HDF5Dataset>>(
      data, "HDF5Dataset", "samples read lazily from datasets of an HDF5 file: one read per dataset and batch")
      .def(py::init([](const std::string& path, std::vector<std::string> names) {
             return std::make_shared<data::HDF5Dataset>(path, std::move(names));
           }), py::arg("path"), py::arg("names"))
      .def_property_readonly("path", &data::HDF5Dataset::path)
      .def_property_readonly("names", &data::HDF5Dataset::names)
      .def("read_stats", [](const data::HDF5Dataset& d) {
        const auto r = d.read_stats();
        return py::make_tuple(r.reads, r.rows);
      }, "(reads, rows) since construction or reset_read_stats()")
      .def("reset_read_stats", &data::HDF5Dataset::reset_read_stats);
  py::class_<ArrayLikeDataset, data::Dataset, std::shared_ptr<ArrayLikeDataset>>(
      data, "ArrayDataset",
      "samples read lazily from array-likes sharing their first axis (numpy memmaps, h5py datasets, anything with "
      "shape, dtype and slicing): each batch is read through their own indexing when it is needed")
      .def(py::init([](const py::args& arrays) {
        std::vector<py::object> items;
        for (auto a : arrays) items.push_back(py::reinterpret_borrow<py::object>(a));
        return std::make_shared<ArrayLikeDataset>(items);
      }))
      .def_property_readonly("reads", &ArrayLikeDataset::reads,
                             "reads through the arrays' indexing so far (one per slice or fancy read)");
  data.def("write_hdf5", [](const std::string& path, const py::dict& arrays, std::int64_t chunk_rows) {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (auto [k, v] : arrays) tensors.emplace_back(k.cast<std::string>(), tensor_from_python(v));
    data::write_hdf5(path, tensors, {chunk_rows});
  }, py::arg("path"), py::arg("arrays"), py::arg("chunk_rows") = 0,
     "writes {name: array} as root datasets of a new HDF5 file, chunked by rows for HDF5Dataset");
  py::class_<LoaderIterator>(data, "_DataLoaderIterator")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &LoaderIterator::next);
  py::class_<data::DataLoader>(data, "DataLoader", "minibatches of a dataset, shuffled with a seed, as lists of arrays")
      .def(py::init([](const data::Dataset& d, std::int64_t batch_size, bool shuffle, bool drop_last, std::uint64_t seed,
                       bool pin_memory, py::object device) {
             return std::make_unique<data::DataLoader>(
                 d, data::DataLoaderOptions{batch_size, shuffle, drop_last, seed, pin_memory,
                                              device.is_none() ? Device::cpu() : device_from_python(device)});
           }),
           py::arg("dataset"), py::arg("batch_size") = 1, py::arg("shuffle") = false, py::arg("drop_last") = false,
           py::arg("seed") = 0, py::arg("pin_memory") = false, py::arg("device") = py::none(), py::keep_alive<1, 2>())
      .def("__iter__", [](py::object self) { return LoaderIterator(self, self.cast<data::DataLoader&>()); })
      .def("_iter_tensors", [](py::object self) { return LoaderIterator(self, self.cast<data::DataLoader&>(), true); })
      .def_property_readonly("pins", &data::DataLoader::pins,
                             "whether batches are pinned (pin_memory and a CUDA device answers)")
      .def("__len__", &data::DataLoader::size)
      .def_property_readonly("epoch", &data::DataLoader::epoch)
      .def("set_epoch", &data::DataLoader::set_epoch, py::arg("epoch"))
      .def("order", &data::DataLoader::order, py::arg("epoch"));
}

}  // namespace zkynet::python
