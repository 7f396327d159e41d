// distributed/'s training drivers: DataParallel (gradients averaged over ranks, Horovod / DDP
// style) and Pipeline (a Sequential cut into one stage per rank, GPipe micro-batches).
// zkynet/distributed.py re-exports them.
#include "convert.h"

#include <zkynet/distributed/communicator.h>
#include <zkynet/distributed/data_parallel.h>
#include <zkynet/distributed/pipeline.h>
#include <zkynet/framework/error.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/nn/sequential.h>

#include <pybind11/stl.h>

#include <limits>
#include <memory>
#include <optional>
#include <string>

namespace zkynet::python {
namespace {

using dist::Communicator;
using dist::DataParallel;
using dist::Pipeline;

// COMM_WORLD when no communicator is given: a default argument would start MPI as soon as
// the extension is imported, and importing it must not.
Communicator comm_or_world(const std::optional<Communicator>& comm) { return comm ? *comm : dist::world(); }

std::string type_name(py::handle obj) { return py::str(obj.get_type().attr("__name__")); }

// A loss given as a Python callable (output, target) -> node: a function of the user's or a
// zkynet loss such as op.cross_entropy. It is called on the last stage, inside train_step,
// which runs with the GIL released.
Pipeline::Loss pipeline_loss(py::object callable) {
  if (!PyCallable_Check(callable.ptr())) {
    throw TypeError("Pipeline.train_step: loss must be a callable (output, target) -> node, got '" +
                    type_name(callable) + "'");
  }
  return python::loss_from_python(std::move(callable));
}

// A copy of the batch (as the Estimator takes it): Python code may write into its arrays while
// the step runs without the GIL. None, for a stage that does not read it, gives no tensor.
Tensor batch_from_python(py::handle obj) { return obj.is_none() ? Tensor() : tensor_from_python(obj).clone(); }

void require_batch(const Tensor& t, bool needed, const char* method, const char* reader) {
  if (needed && !t.defined()) throw UsageError(std::string("Pipeline.") + method + ": " + reader + ", got None");
}

nn::Estimator& estimator_of(py::handle obj) {
  try {
    return estimator_from_python(obj);
  } catch (const py::cast_error&) {
    throw TypeError("DataParallel.attach: expected an nn.Estimator, got '" + type_name(obj) + "'");
  }
}

void bind_data_parallel(py::module_& m) {
  py::class_<DataParallel>(m, "DataParallel",
                           "Data-parallel training: every rank holds the whole model and trains on its shard "
                           "of each batch; average_gradients() makes the gradients every rank's mean.")
      .def(py::init([](ModuleBase& model, std::optional<Communicator> comm, std::size_t bucket_bytes, int root) {
             Communicator on = comm_or_world(comm);
             // The constructor broadcasts root's state: it waits for every rank.
             py::gil_scoped_release release;
             return std::make_unique<DataParallel>(model, std::move(on), dist::DataParallelOptions{bucket_bytes, root});
           }),
           py::arg("model"), py::arg("comm") = py::none(), py::arg("bucket_bytes") = std::size_t{25} << 20,
           py::arg("root") = 0, py::keep_alive<1, 2>(),
           "Copies root's parameters and buffers to every rank. comm: COMM_WORLD when None.")
      .def("broadcast_state", &DataParallel::broadcast_state, py::call_guard<py::gil_scoped_release>(),
           "Copies every parameter and buffer from the root rank again.")
      .def("average_gradients", &DataParallel::average_gradients, py::arg("local_rows") = -1,
           py::call_guard<py::gil_scoped_release>(),
           "Replaces each gradient by its mean over ranks, weighted by each rank's local_rows when given "
           "(exact for mean-reduced losses when a batch does not split evenly). Every rank calls it.")
      .def("shard", &DataParallel::shard, py::arg("rows"),
           "This rank's rows (begin, end) of a batch of `rows`: contiguous, sizes differ by at most one.")
      // The estimator calls back into this object during fit(): it keeps it alive.
      .def("attach", [](DataParallel& dp, py::handle estimator) { dp.attach(estimator_of(estimator)); },
           py::arg("estimator"), py::keep_alive<2, 1>(),
           "Makes estimator.fit() train data-parallel: each rank takes its shard of every minibatch, "
           "gradients are averaged before each step, only the root rank prints.")
      .def_property_readonly("bucket_count", &DataParallel::bucket_count,
                             "How many allreduce calls average_gradients makes (one per bucket).")
      .def_property_readonly("comm", &DataParallel::comm);
}

// A rank number given from Python, checked before it narrows to int (a huge one would wrap
// into a valid rank).
int rank_argument(std::int64_t rank, const char* method, const char* argument) {
  if (rank < std::numeric_limits<int>::min() || rank > std::numeric_limits<int>::max()) {
    throw UsageError(std::string("Pipeline.") + method + ": " + argument + " " + std::to_string(rank) +
                     " is not a rank");
  }
  return static_cast<int>(rank);
}

py::object numpy_or_none(const Tensor& t) { return t.defined() ? py::object(tensor_to_numpy(t)) : py::none(); }

void bind_pipeline(py::module_& m) {
  py::class_<Pipeline> pipeline(
      m, "Pipeline",
      "Pipeline-parallel training: a Sequential built identically on every rank, cut into one stage per rank; "
      "micro-batches flow on a GPipe schedule. Pipeline.ALL_RANKS and Pipeline.LAST_STAGE name where "
      "predict() and gradients() deliver their result.");
  pipeline.attr("ALL_RANKS") = Pipeline::kAllRanks;
  pipeline.attr("LAST_STAGE") = Pipeline::kLastStage;
  pipeline
      .def(py::init([](nn::Sequential& model, std::int64_t micro_batches,
                       std::optional<std::vector<std::size_t>> stage_starts, std::optional<Communicator> comm,
                       bool input_requires_grad) {
             dist::PipelineOptions options{micro_batches, stage_starts.value_or(std::vector<std::size_t>{}),
                                           input_requires_grad};
             return std::make_unique<Pipeline>(model, std::move(options), comm_or_world(comm));
           }),
           py::arg("model"), py::arg("micro_batches") = 4, py::arg("stage_starts") = py::none(),
           py::arg("comm") = py::none(), py::arg("input_requires_grad") = false, py::keep_alive<1, 2>(),
           "stage_starts: the first layer of each stage after the first (None or []: layers split evenly). "
           "comm: COMM_WORLD when None. input_requires_grad: keep the gradient with respect to train_step's x "
           "(input_grad()); off, it costs nothing.")
      .def("train_step", [](Pipeline& pipe, py::handle x, py::handle y, py::object loss) {
             const Tensor inputs = batch_from_python(x), targets = batch_from_python(y);
             require_batch(inputs, pipe.is_first(), "train_step", "the first stage reads x");
             require_batch(targets, pipe.is_last(), "train_step", "the last stage reads y");
             const Pipeline::Loss loss_fn = pipeline_loss(std::move(loss));
             py::gil_scoped_release release;
             return pipe.train_step(inputs, targets, loss_fn);
           },
           py::arg("x"), py::arg("y"), py::arg("loss"),
           "Forward and backward of one batch; gradients accumulate into this stage's parameters. x is read "
           "on the first stage, y on the last (None elsewhere is fine); loss(output, target) -> node is "
           "called once on the last stage, on the whole batch's output (the micro-batches' outputs joined), so "
           "the loss and gradients are the plain model's whatever its reduction. Returns the loss on every rank.")
      .def("input_grad", [](const Pipeline& pipe) { return numpy_or_none(pipe.input_grad()); },
           "The gradient of the last train_step's loss with respect to its x (the plain model's graph.grad(x), "
           "x's shape) on the first stage; None on the others. Needs input_requires_grad=True and a train_step "
           "first (RuntimeError otherwise).")
      .def("gradients", [](Pipeline& pipe, std::int64_t root) -> py::object {
             const int to = rank_argument(root, "gradients", "root");
             std::optional<Pipeline::NamedGradients> gathered;
             {
               py::gil_scoped_release release;
               gathered = pipe.gradients(to);
             }
             if (!gathered) return py::none();
             py::dict named;
             for (const auto& [name, grad] : *gathered) named[py::str(name)] = tensor_to_numpy(grad);
             return named;
           },
           py::arg("root") = Pipeline::kAllRanks,
           "Every parameter's gradient of the whole model as a dict keyed and ordered as the plain model's "
           "named_parameters() ('0.weight', '0.bias', ...), copied from the stage that holds it (zeros for a "
           "parameter without a gradient). On rank `root` (None on the others), or on every rank with "
           "Pipeline.ALL_RANKS (the default). Every rank calls it.")
      .def("predict", [](Pipeline& pipe, py::handle x, std::int64_t deliver_to) -> py::object {
             const int to = rank_argument(deliver_to, "predict", "deliver_to");
             const Tensor inputs = batch_from_python(x);
             require_batch(inputs, pipe.is_first(), "predict", "the first stage reads x");
             Tensor output;
             {
               py::gil_scoped_release release;
               output = pipe.predict(inputs, to);
             }
             return numpy_or_none(output);
           },
           py::arg("x"), py::arg("deliver_to") = Pipeline::kLastStage,
           "Forward only, the whole batch at once: the model's output on rank `deliver_to` (by default "
           "Pipeline.LAST_STAGE, where it is computed; Pipeline.ALL_RANKS: every rank), None on the others. "
           "x is read on the first stage. Every rank calls it.")
      .def_property_readonly("stage", &Pipeline::stage)
      .def_property_readonly("stages", &Pipeline::stages)
      .def_property_readonly("is_first", &Pipeline::is_first)
      .def_property_readonly("is_last", &Pipeline::is_last)
      .def_property_readonly("layers", &Pipeline::layers, "This stage's layers (begin, end) of the Sequential.")
      .def("parameters", &Pipeline::parameters, "This stage's parameters (for its optimizer).")
      .def_property_readonly("last_graph", [](const Pipeline& pipe) -> py::object {
        const auto& graph = pipe.last_graph();
        return graph ? py::cast(*graph) : py::none();
      }, "This rank's graph of the last train_step (None before the first).");
}

}  // namespace

void init_distributed_training(py::module_& m) {
  bind_data_parallel(m);
  bind_pipeline(m);
}

}  // namespace zkynet::python
