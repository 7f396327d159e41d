// distributed/: MPI communicators and differentiable communication, under mpi4torch's names
// (Allreduce, Bcast_, Isend, Wait, JoinDummies ...). zkynet/distributed.py re-exports them.
#include "convert.h"

#include <zkynet/distributed/communicator.h>
#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>

#include <pybind11/stl.h>

#include <string>
#include <vector>

namespace zkynet::python {
namespace {

using dist::Communicator;
using dist::ReduceOp;
using dist::WaitHandle;

// Runs a communication call with the GIL released: it blocks until the peers take part, and
// other Python threads (which must not call MPI: MPI runs "funneled") may go on meanwhile.
// Python values are converted before, with the GIL held.
template <class F>
auto blocking(F&& f) {
  py::gil_scoped_release release;
  return f();
}

std::vector<NodeRef> nodes_of(const py::iterable& values) {
  std::vector<NodeRef> out;
  for (auto v : values) out.push_back(noderef_from_python(v));
  return out;
}

void bind_collectives(py::class_<Communicator>& c) {
  c.def("Allreduce", [](const Communicator& comm, py::handle x, ReduceOp op) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::allreduce(in, op, comm); });
       }, py::arg("x"), py::arg("op"),
       "The reduction of every rank's x, on every rank. Backward: the gradients summed over ranks "
       "(routed to the winners for MAX / MIN, times the others' product for PROD).");
  c.def("Reduce_", [](const Communicator& comm, py::handle x, ReduceOp op, int root) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::reduce(in, op, root, comm); });
       }, py::arg("x"), py::arg("op"), py::arg("root"),
       "The reduction on root, zeros of x's shape elsewhere (x itself is never written). "
       "Backward: root's gradient, broadcast.");
  c.def("Bcast_", [](const Communicator& comm, py::handle x, int root) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::bcast(in, root, comm); });
       }, py::arg("x"), py::arg("root"),
       "root's x on every rank (x itself is never written). Backward: the sum of all gradients "
       "on root, zeros elsewhere.");
  c.def("Gather", [](const Communicator& comm, py::handle x, std::int64_t gatheraxis, int root) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::gather(in, gatheraxis, root, comm); });
       }, py::arg("x"), py::arg("gatheraxis"), py::arg("root"),
       "Every rank's x concatenated along gatheraxis in rank order, on root; elsewhere x's shape "
       "with size 0 on that axis.");
  c.def("Allgather", [](const Communicator& comm, py::handle x, std::int64_t gatheraxis) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::allgather(in, gatheraxis, comm); });
       }, py::arg("x"), py::arg("gatheraxis"), "Gather, with the result on every rank.");
  c.def("Scatter", [](const Communicator& comm, py::handle x, std::int64_t scatteraxis, std::int64_t numelem, int root) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::scatter(in, scatteraxis, numelem, root, comm); });
       }, py::arg("x"), py::arg("scatteraxis"), py::arg("numelem"), py::arg("root"),
       "This rank's numelem entries along scatteraxis of root's x (the ranks' numelem add up to "
       "root's size there); elsewhere x only anchors the gradient (values and shape ignored, "
       "mpi4torch's rand(1) will do) and must have root's dtype.");
  c.def("Alltoall", [](const Communicator& comm, py::handle x, std::int64_t gatheraxis, std::int64_t scatteraxis,
                       std::int64_t numelem) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::alltoall(in, gatheraxis, scatteraxis, numelem, comm); });
       }, py::arg("x"), py::arg("gatheraxis"), py::arg("scatteraxis"), py::arg("numelem"),
       "x cut along scatteraxis (rank j gets its numelem entries); the parts received are "
       "concatenated along gatheraxis in rank order.");
}

void bind_point_to_point(py::class_<Communicator>& c) {
  c.def("Send", [](const Communicator& comm, py::handle x, int dest, int tag) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::send(in, dest, tag, comm); });
       }, py::arg("x"), py::arg("dest"), py::arg("tag") = 0,
       "Sends x to dest and returns x. Backward: receives the gradient from dest.");
  c.def("Recv", [](const Communicator& comm, py::handle x, int source, int tag) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::recv(in, source, tag, comm); });
       }, py::arg("x"), py::arg("source"), py::arg("tag") = 0,
       "A tensor of x's shape and dtype received from source. Backward: sends the gradient back.");
  c.def("Isend", [](const Communicator& comm, py::handle x, int dest, int tag) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::isend(in, dest, tag, comm); });
       }, py::arg("x"), py::arg("dest"), py::arg("tag") = 0, "Starts sending x to dest; Wait(handle) completes it.");
  c.def("Irecv", [](const Communicator& comm, py::handle x, int source, int tag) {
         const NodeRef in = noderef_from_python(x);
         return blocking([&] { return dist::irecv(in, source, tag, comm); });
       }, py::arg("x"), py::arg("source"), py::arg("tag") = 0,
       "Starts receiving a tensor of x's shape and dtype from source; Wait(handle) returns it.");
  c.def("Wait", [](const Communicator&, const WaitHandle& handle) { return blocking([&] { return dist::wait(handle); }); },
        py::arg("handle"), "Completes an Isend (returns x) or an Irecv (returns the received tensor).");
}

void bind_communicator(py::module_& m) {
  py::class_<Communicator> c(m, "Communicator",
                             "The processes that take part in a communication: COMM_WORLD, or a split of it.");
  c.def_property_readonly("rank", &Communicator::rank)
      .def_property_readonly("size", &Communicator::size)
      .def_property_readonly("name", &Communicator::name)
      .def("split", [](const Communicator& comm, int color, int key) { return blocking([&] { return comm.split(color, key); }); },
           py::arg("color"), py::arg("key") = 0,
           "Ranks calling with the same color form a new communicator, ordered by key, then rank.")
      .def("barrier", [](const Communicator& comm) { blocking([&] { comm.barrier(); }); })
      .def_property(
          "cuda_collectives",
          [](const Communicator& comm) { return std::string(dist::cuda_collectives_name(comm.cuda_collectives())); },
          [](const Communicator& comm, const std::string& backend) {
            if (backend != "staged" && backend != "nccl") {
              throw py::value_error("Communicator.cuda_collectives: expected 'staged' or 'nccl', got '" + backend + "'");
            }
            comm.set_cuda_collectives(backend == "nccl" ? dist::CudaCollectives::Nccl : dist::CudaCollectives::Staged);
          },
          "How collectives move CUDA tensors: 'staged' (host copies through MPI, the default; "
          "ZKYNET_CUDA_COLLECTIVES sets it) or 'nccl' (allreduce, reduce, bcast on the devices; needs "
          "nccl_built() and one device per rank). Set it alike on every rank.")
      .def("__repr__", [](const Communicator& comm) {
        return "Communicator('" + comm.name() + "', rank " + std::to_string(comm.rank()) + " of " +
               std::to_string(comm.size()) + ")";
      });
  bind_collectives(c);
  bind_point_to_point(c);
}

void bind_tensor_collectives(py::module_& m) {
  // Plain arrays, outside any graph (averaging gradients, broadcasting initial weights): the
  // result is a fresh array, the argument is not written.
  m.def("allreduce_array", [](py::handle x, ReduceOp op, const Communicator& comm) {
         Tensor t = tensor_from_python(x).contiguous().clone();
         blocking([&] { dist::allreduce_(t, op, comm); });
         return tensor_to_numpy(t);
       }, py::arg("x"), py::arg("op"), py::arg("comm"));
  m.def("bcast_array", [](py::handle x, int root, const Communicator& comm) {
         Tensor t = tensor_from_python(x).contiguous().clone();
         blocking([&] { dist::bcast_(t, root, comm); });
         return tensor_to_numpy(t);
       }, py::arg("x"), py::arg("root"), py::arg("comm"));
}

}  // namespace

void init_distributed(py::module_& m) {
  py::enum_<ReduceOp>(m, "ReduceOp", "How Allreduce and Reduce_ combine the ranks' tensors.")
      .value("SUM", ReduceOp::Sum)
      .value("AVG", ReduceOp::Avg)
      .value("MAX", ReduceOp::Max)
      .value("MIN", ReduceOp::Min)
      .value("PROD", ReduceOp::Prod);

  py::class_<WaitHandle>(m, "WaitHandle", "A pending Isend or Irecv; Wait(handle) completes it, once.")
      .def_property_readonly("dummy", &WaitHandle::node,
                             "The handle's node in the graph, to pass to JoinDummies as a dependency.");

  bind_communicator(m);
  bind_tensor_collectives(m);

  m.def("world", [] { return blocking([] { return dist::world(); }); }, "COMM_WORLD: every process of the job.");
  m.def("JoinDummies", [](py::handle x, const py::iterable& dummies) {
         return dist::join_dummies(noderef_from_python(x), nodes_of(dummies));
       }, py::arg("x"), py::arg("dummies"),
       "x unchanged, depending on dummies (they get zero gradients): orders operations.");
  m.def("JoinDummiesHandle", [](const WaitHandle& handle, const py::iterable& dummies) {
         return dist::join_dummies_handle(handle, nodes_of(dummies));
       }, py::arg("handle"), py::arg("dummies"), "The handle, its Wait depending on dummies.");
  m.def("set_checked", &dist::set_checked, py::arg("checked"),
        "Checked mode (default on): every collective call (operators, their backward, the array "
        "collectives, barrier, split) compares its operation, number on the communicator, dtype and "
        "shape across ranks first and raises ValueError on all ranks when they differ, instead of "
        "hanging or pairing the wrong calls. Set it alike on every rank.");
  m.def("checked", &dist::checked);
  m.def("set_timeout", &dist::set_timeout, py::arg("seconds"),
        "A communication that does not complete within `seconds` aborts the whole job (status 1), "
        "naming the operation, where it was called and what the ranks it waits for are doing. "
        "0 (the default) turns it off; the environment variable ZKYNET_DIST_TIMEOUT sets it too.");
  m.def("timeout", &dist::timeout, "The timeout in seconds; 0: none.");
  m.def("nccl_built", &dist::nccl_built, "This build can run CUDA tensors' collectives in NCCL.");
  m.def("initialized", &dist::initialized, "MPI started and not yet finalized.");
  m.def("abort", [](const std::string& why, int code) { dist::abort(why, code); }, py::arg("why"),
        py::arg("code") = 1, "Ends the whole job now with code on every rank (MPI_Abort), after printing why.");
}

}  // namespace zkynet::python
