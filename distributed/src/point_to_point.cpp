// Send / Recv, Isend / Irecv / Wait and JoinDummies as graph operators. Gradients travel
// the opposite way on the communicator's backward twin, with the forward tag.
#include "mpi_internal.h"

#include <zkynet/distributed/ops.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>

#include <cstdio>

namespace zkynet::dist {

struct WaitHandle::State {
  enum class Kind { Send, Recv };
  Kind kind = Kind::Send;
  std::shared_ptr<Communicator::Impl> comm;
  int peer = 0;
  int tag = 0;
  Tensor buffer;  // isend: what is being sent; irecv: where it arrives (both on the host: staged)
  Device device;  // x's: wait's output goes there (on a device: a copy of the host buffer)
  MPI_Request request = MPI_REQUEST_NULL;
  bool waited = false;
  // Backward: the gradient message, posted by wait's backward and completed by the
  // isend / irecv node's backward (which comes later in reverse order).
  Tensor grad_buffer;
  MPI_Request grad_request = MPI_REQUEST_NULL;

  ~State() {
    if (!initialized()) return;
    for (MPI_Request* r : {&request, &grad_request}) {
      if (*r == MPI_REQUEST_NULL) continue;
      // Never waited: cancel rather than leave MPI writing into freed memory.
      MPI_Cancel(r);
      MPI_Wait(r, MPI_STATUS_IGNORE);
    }
  }
};

namespace {

using Impl = std::shared_ptr<Communicator::Impl>;

std::string peer_text(std::string_view what, int peer, int tag, const Communicator::Impl& comm) {
  return std::string(what) + " " + std::to_string(peer) + " (tag " + std::to_string(tag) + ", " + comm.name + ")";
}

void check_peer(const Communicator& comm, int peer, int tag, std::string_view what) {
  if (peer < 0 || peer >= comm.size()) {
    throw IndexError(std::string(what) + ": rank " + std::to_string(peer) + " is not in " + comm.name() + " (size " +
                     std::to_string(comm.size()) + ")");
  }
  if (tag < 0) throw IndexError(std::string(what) + ": tag " + std::to_string(tag) + " is negative");
}

// The message that arrived must fill `buffer` exactly: a sender with another shape is an error.
void check_arrival(const MPI_Status& status, const Tensor& buffer, std::string_view what) {
  int count = 0;
  MPI_Get_count(&status, detail::mpi_type(buffer.dtype()), &count);
  if (count != buffer.numel()) {
    throw ShapeError(std::string(what) + ": expected " + std::to_string(buffer.numel()) + " " +
                     std::string(dtype_name(buffer.dtype())) + " values (shape " + shape_str(buffer.shape()) +
                     "), the message has " + std::to_string(count));
  }
}

// Messages are always posted non-blocking and waited for by complete(): a peer that never
// comes is reported (finished, or the timeout), not waited for forever. The current activity
// (the caller's) says what the wait is for.
void blocking_send(MPI_Comm comm, const Tensor& t, int peer, int tag, std::string_view what) {
  const Tensor c = detail::to_host(t);
  MPI_Request request = MPI_REQUEST_NULL;
  detail::check(MPI_Isend(c.raw_data(), detail::count_of(c.numel(), what), detail::mpi_type(c.dtype()), peer, tag, comm,
                          &request),
                what);
  detail::complete(request, what);
}

// The message arrives in host memory and is returned on `device`.
Tensor blocking_recv(MPI_Comm comm, const Shape& shape, DType dtype, Device device, int peer, int tag,
                     std::string_view what) {
  Tensor out = Tensor::empty(shape, dtype);
  MPI_Request request = MPI_REQUEST_NULL;
  detail::check(MPI_Irecv(out.raw_data(), detail::count_of(out.numel(), what), detail::mpi_type(dtype), peer, tag, comm,
                          &request),
                what);
  MPI_Status status;
  detail::complete(request, what, &status);
  check_arrival(status, out, what);
  return detail::to_device(out, device);
}

struct P2PDef {
  static constexpr bool visit_without_gradient = true;
  Impl comm;
  int peer;
  int tag;
  std::string text;
  detail::CallSite site;  // where the forward ran: the reports of the backward name it
  std::string label() const { return text; }
};

struct SendDef : P2PDef {
  static constexpr std::string_view name = "send";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const {
    const std::string what = peer_text("send to", peer, tag, *comm);
    const detail::Activity activity(*comm, what, peer);
    blocking_send(comm->forward, x, peer, tag, what);
    return x;
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const std::string what = peer_text("send's backward: gradient from", peer, tag, *comm);
    const detail::Activity activity(*comm, what, peer, &site);
    const Tensor back =
        blocking_recv(comm->backward, c.in(0).shape(), c.in(0).dtype(), c.in(0).device(), peer, tag, what);
    return {kernels::add(c.grad, back)};
  }
};

struct RecvDef : P2PDef {
  static constexpr std::string_view name = "recv";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const {
    const std::string what = peer_text("recv from", peer, tag, *comm);
    const detail::Activity activity(*comm, what, peer);
    return blocking_recv(comm->forward, x.shape(), x.dtype(), x.device(), peer, tag, what);
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const std::string what = peer_text("recv's backward: gradient to", peer, tag, *comm);
    const detail::Activity activity(*comm, what, peer, &site);
    blocking_send(comm->backward, c.grad, peer, tag, what);
    return {Tensor()};
  }
};

struct ISendDef : P2PDef {
  static constexpr std::string_view name = "isend";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::shared_ptr<WaitHandle::State> state;
  Tensor forward(const Tensor& x) const {
    state->buffer = detail::to_host(x);
    state->device = x.device();
    detail::check(MPI_Isend(state->buffer.raw_data(), detail::count_of(x.numel(), "isend"), detail::mpi_type(x.dtype()),
                            peer, tag, comm->forward, &state->request),
                  peer_text("isend to", peer, tag, *comm));
    return x;
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const std::string what = peer_text("isend's backward: gradient from", peer, tag, *comm);
    const detail::Activity activity(*comm, what, peer, &site);
    Tensor received;
    if (state->grad_request == MPI_REQUEST_NULL) {  // never waited: receive the gradient now
      received = blocking_recv(comm->backward, c.in(0).shape(), c.in(0).dtype(), c.in(0).device(), peer, tag, what);
    } else {
      MPI_Status status;
      detail::complete(state->grad_request, "isend's backward: MPI_Wait", &status);
      check_arrival(status, state->grad_buffer, what);
      received = detail::to_device(state->grad_buffer, c.in(0).device());
    }
    return {kernels::add(c.grad, received)};
  }
};

struct IRecvDef : P2PDef {
  static constexpr std::string_view name = "irecv";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::shared_ptr<WaitHandle::State> state;
  Tensor forward(const Tensor& x) const {
    state->buffer = Tensor::empty(x.shape(), x.dtype());
    state->device = x.device();
    detail::check(MPI_Irecv(state->buffer.raw_data(), detail::count_of(x.numel(), "irecv"),
                            detail::mpi_type(x.dtype()), peer, tag, comm->forward, &state->request),
                  peer_text("irecv from", peer, tag, *comm));
    // NOTE: on a device, the data is in wait's output only (it is copied there on arrival).
    return x.device().is_cpu() ? state->buffer : Tensor::empty(x.shape(), x.dtype(), x.device());
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>&) const {
    const std::string what = peer_text("irecv's backward: gradient to", peer, tag, *comm);
    const detail::Activity activity(*comm, what, peer, &site);
    if (state->grad_request == MPI_REQUEST_NULL) {  // never waited: the sender still expects a gradient
      blocking_send(comm->backward, Tensor::zeros(state->buffer.shape(), state->buffer.dtype()), peer, tag, what);
    } else {
      detail::complete(state->grad_request, "irecv's backward: MPI_Wait");
    }
    return {Tensor()};
  }
};

struct WaitDef {
  static constexpr bool visit_without_gradient = true;
  static constexpr std::string_view name = "wait";
  static constexpr std::array<std::string_view, 1> inputs{"handle"};
  std::shared_ptr<WaitHandle::State> state;
  std::string text;
  std::string label() const { return text; }

  Tensor forward(const Tensor&) const {
    if (state->waited) throw UsageError(text + ": this handle was already waited on");
    const detail::Activity activity(*state->comm, text, state->peer);
    MPI_Status status;
    detail::complete(state->request, text, &status);
    state->waited = true;
    if (state->kind == WaitHandle::State::Kind::Recv) check_arrival(status, state->buffer, text);
    return detail::to_device(state->buffer, state->device);
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    const auto& comm = *state->comm;
    if (state->kind == WaitHandle::State::Kind::Send) {
      // The gradient of what was sent comes back from the destination.
      state->grad_buffer = Tensor::empty(state->buffer.shape(), state->buffer.dtype());
      detail::check(MPI_Irecv(state->grad_buffer.raw_data(), detail::count_of(state->grad_buffer.numel(), text),
                              detail::mpi_type(state->grad_buffer.dtype()), state->peer, state->tag, comm.backward,
                              &state->grad_request),
                    text + " backward");
      return {c.grad};
    }
    // Received data: send its gradient back to the source.
    state->grad_buffer = detail::to_host(c.grad).clone();
    detail::check(MPI_Isend(state->grad_buffer.raw_data(), detail::count_of(state->grad_buffer.numel(), text),
                            detail::mpi_type(state->grad_buffer.dtype()), state->peer, state->tag, comm.backward,
                            &state->grad_request),
                  text + " backward");
    return {Tensor()};
  }
};

}  // namespace

NodeRef send(const NodeRef& x, int dest, int tag, const Communicator& comm) {
  check_peer(comm, dest, tag, "send");
  const std::string label = comm.impl().message_label('s', dest, tag);
  return apply(SendDef{{comm.impl_ptr(), dest, tag, label, detail::CallSite::here()}}, x);
}

NodeRef recv(const NodeRef& x, int source, int tag, const Communicator& comm) {
  check_peer(comm, source, tag, "recv");
  const std::string label = comm.impl().message_label('r', source, tag);
  return apply(RecvDef{{comm.impl_ptr(), source, tag, label, detail::CallSite::here()}}, x);
}

namespace {

std::shared_ptr<WaitHandle::State> pending(WaitHandle::State::Kind kind, const Communicator& comm, int peer, int tag) {
  auto state = std::make_shared<WaitHandle::State>();
  state->kind = kind;
  state->comm = comm.impl_ptr();
  state->peer = peer;
  state->tag = tag;
  return state;
}

}  // namespace

WaitHandle isend(const NodeRef& x, int dest, int tag, const Communicator& comm) {
  check_peer(comm, dest, tag, "isend");
  auto state = pending(WaitHandle::State::Kind::Send, comm, dest, tag);
  const std::string label = "I" + comm.impl().message_label('s', dest, tag);
  return WaitHandle(apply(ISendDef{{comm.impl_ptr(), dest, tag, label, detail::CallSite::here()}, state}, x), state);
}

WaitHandle irecv(const NodeRef& x, int source, int tag, const Communicator& comm) {
  check_peer(comm, source, tag, "irecv");
  auto state = pending(WaitHandle::State::Kind::Recv, comm, source, tag);
  const std::string label = "I" + comm.impl().message_label('r', source, tag);
  return WaitHandle(apply(IRecvDef{{comm.impl_ptr(), source, tag, label, detail::CallSite::here()}, state}, x), state);
}

NodeRef wait(const WaitHandle& handle) {
  const auto& s = *handle.state();
  const std::string text = std::string("Wait (") + (s.kind == WaitHandle::State::Kind::Send ? "isend to " : "irecv from ") +
                           std::to_string(s.peer) + " tag " + std::to_string(s.tag) + ")";
  return apply(WaitDef{handle.state(), text}, handle.node());
}

namespace {

const std::shared_ptr<const DynamicOperator>& join_operator(std::size_t arity) {
  // One definition per arity, kept for the process (the operator is immutable).
  static std::vector<std::shared_ptr<const DynamicOperator>> cache;
  while (cache.size() <= arity) {
    auto op = std::make_shared<DynamicOperator>();
    op->name = "join_dummies";
    op->arity = cache.size();
    op->forward = [](std::span<const Tensor> in) { return in[0]; };
    op->vjp = [](const Tensor& grad, const Tensor&, std::span<const Tensor> in, std::span<const bool>) {
      std::vector<Tensor> out(in.size());
      out[0] = grad;
      return out;
    };
    cache.push_back(std::move(op));
  }
  return cache[arity];
}

}  // namespace

NodeRef join_dummies(const NodeRef& x, const std::vector<NodeRef>& dummies) {
  std::vector<NodeRef> operands{x};
  operands.insert(operands.end(), dummies.begin(), dummies.end());
  return apply_dynamic(join_operator(operands.size()), operands);
}

WaitHandle join_dummies_handle(const WaitHandle& handle, const std::vector<NodeRef>& dummies) {
  return WaitHandle(join_dummies(handle.node(), dummies), handle.state());
}

}  // namespace zkynet::dist
