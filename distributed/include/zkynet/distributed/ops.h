// Differentiable MPI: collectives and point-to-point calls as graph operators.
//
// Convention (mpi4torch's): the objective is the sum over ranks of each rank's scalar root,
// and every rank calls back() on its own graph. Backward visits the communication nodes of
// a graph in reverse creation order, every one of them, also those no gradient reaches
// (they get zeros), so all ranks run matching backward calls and nothing needs JoinDummies
// just to be visited.
//
//   NodeRef total = dist::allreduce(op::sum(local_loss));        // same value on every rank
//   NodeRef y = dist::recv(x_like, /*source=*/0, /*tag=*/7);      // x_like: shape and dtype
//   dist::WaitHandle h = dist::isend(x, /*dest=*/1, /*tag=*/0);
//   NodeRef sent = dist::wait(h);
#pragma once

#include <zkynet/distributed/communicator.h>
#include <zkynet/framework/node.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace zkynet::dist {

// ---- collectives ------------------------------------------------------------------------
// Every rank gets the reduction. Backward: SUM / AVG sum the gradients (÷ size for AVG);
// MAX / MIN send the gradient to the winning elements (split evenly between ties);
// PROD gives product ÷ input, computed without dividing so zeros are handled.
NodeRef allreduce(const NodeRef& x, ReduceOp op = ReduceOp::Sum, const Communicator& comm = world());
// The root gets the reduction, the other ranks zeros of x's shape. Backward: the root's
// gradient, broadcast (and routed as for allreduce for MAX / MIN / PROD / AVG).
// Python's Reduce_ (mpi4torch's in-place name) is this function: x is never written, the
// result is a new value (mpi4torch overwrites x and leaves non-root contents undefined).
NodeRef reduce(const NodeRef& x, ReduceOp op, int root, const Communicator& comm = world());
// Every rank gets the root's x. Backward: the sum of all gradients on the root, zeros elsewhere.
// Python's Bcast_ is this function: functional too, x is never written (mpi4torch fills the
// non-root x in place); use the returned value. In place on plain tensors, outside any graph:
// allreduce_ / bcast_ (eager.h; Python's allreduce_array / bcast_array return a new array).
NodeRef bcast(const NodeRef& x, int root, const Communicator& comm = world());
// The root gets every rank's x concatenated along `axis` in rank order (sizes along the
// axis may differ); other ranks get x's shape with size 0 on the axis. Backward: scatter.
NodeRef gather(const NodeRef& x, std::int64_t axis, int root, const Communicator& comm = world());
// gather, with the result on every rank. Backward: a reduce-scatter (sum over ranks of each
// rank's own part), correct for any number of ranks.
NodeRef allgather(const NodeRef& x, std::int64_t axis, const Communicator& comm = world());
// The root's x is cut along `axis`; each rank receives `numelem` entries (its own count; the
// counts must add up to the root's size on the axis): the root's shape with numelem on the
// axis. As in mpi4torch, a non-root x only anchors the gradient: its values and shape are
// ignored (a 1-element tensor will do), but its dtype must be the root's (a TypeError on
// every rank otherwise, naming the ranks and both dtypes). The root's axis is used (a
// negative one counts from the root's last dimension); a rank that passes another is a
// ShapeError. Backward: the root gets the gradients gathered; other ranks zeros of their
// own x's shape.
NodeRef scatter(const NodeRef& x, std::int64_t axis, std::int64_t numelem, int root,
                const Communicator& comm = world());
// x is cut along `scatter_axis` (rank j receives its `numelem` entries) and the parts each
// rank receives are concatenated along `gather_axis` in rank order. Backward: alltoall with
// the axes swapped.
NodeRef alltoall(const NodeRef& x, std::int64_t gather_axis, std::int64_t scatter_axis, std::int64_t numelem,
                 const Communicator& comm = world());

// For values every rank holds alike (Megatron's pair). replicated_sum: the sum over ranks,
// whose backward is the identity, so a loss replicated this way counts once, not size times,
// in the objective. copy_to_ranks: the identity, whose backward sums the ranks' gradients.
NodeRef replicated_sum(const NodeRef& x, const Communicator& comm = world());
NodeRef copy_to_ranks(const NodeRef& x, const Communicator& comm = world());

// ---- point to point -----------------------------------------------------------------------
// send returns x (identity); its backward receives the gradient from `dest`.
NodeRef send(const NodeRef& x, int dest, int tag = 0, const Communicator& comm = world());
// recv returns a fresh tensor of x's shape and dtype filled by `source`; its backward sends
// the gradient back to `source`. x itself gets a zero gradient.
NodeRef recv(const NodeRef& x, int source, int tag = 0, const Communicator& comm = world());

// A pending isend / irecv: a node in the graph plus the request. wait() completes it.
class WaitHandle {
 public:
  struct State;
  WaitHandle(NodeRef node, std::shared_ptr<State> state) : node_(std::move(node)), state_(std::move(state)) {}
  const NodeRef& node() const { return node_; }
  const std::shared_ptr<State>& state() const { return state_; }

 private:
  NodeRef node_;
  std::shared_ptr<State> state_;
};

WaitHandle isend(const NodeRef& x, int dest, int tag = 0, const Communicator& comm = world());
WaitHandle irecv(const NodeRef& x, int source, int tag = 0, const Communicator& comm = world());
// isend: returns x once sent; irecv: returns the received tensor. A handle is waited once.
NodeRef wait(const WaitHandle& handle);

// x unchanged, with explicit dependencies on `dummies` (they get zero gradients): orders
// operations, and joins results such as sends into a root (mpi4torch's JoinDummies).
NodeRef join_dummies(const NodeRef& x, const std::vector<NodeRef>& dummies);
WaitHandle join_dummies_handle(const WaitHandle& handle, const std::vector<NodeRef>& dummies);

}  // namespace zkynet::dist
