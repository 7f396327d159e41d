// Collectives as graph operators: forward on the communicator, backward on its twin.
// Backward always communicates, whatever the local inputs need, so ranks stay matched.
#include "cuda_collectives.h"
#include "mpi_internal.h"

#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/strided.h>

#include <algorithm>
#include <array>
#include <numeric>

namespace zkynet::dist {
namespace {

using Impl = std::shared_ptr<Communicator::Impl>;

// f(a[i], b[i]) elementwise in a's floating dtype (kernels::map, b converted).
template <class F>
Tensor zip(const Tensor& a, const Tensor& b, F f) {
  return dispatch_floating(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return kernels::map<T, 2>({a, b}, [&](T x, T y) { return f(x, y); }, "distributed gradient");
  });
}

// The gradient of this rank's x, given the reduction `out` (as every rank sees it) and
// `summed`, the gradient of the objective with respect to `out`.
Tensor route(MPI_Comm back, ReduceOp op, const Tensor& x, const Tensor& out, const Tensor& summed) {
  const bool elementwise = op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::Prod;
  if (elementwise && !x.device().is_cpu()) {
    // zip is a host loop, and the tensors below go through MPI's host staging anyway.
    const Tensor g = route(back, op, detail::to_host(x), detail::to_host(out), detail::to_host(summed));
    return detail::to_device(g, x.device());
  }
  switch (op) {
    case ReduceOp::Sum: return summed;
    case ReduceOp::Avg: {
      int size = 1;
      MPI_Comm_size(back, &size);
      return kernels::scale(summed, 1.0 / size);
    }
    case ReduceOp::Max:
    case ReduceOp::Min: {
      // To the winners, split evenly between ties (as torch.amax does).
      const Tensor wins = zip(x, out, [](auto a, auto b) { return a == b ? 1 : 0; });
      const Tensor winners = detail::allreduce(back, wins, ReduceOp::Sum);
      return kernels::mul(summed, kernels::div(wins, winners));
    }
    case ReduceOp::Prod: {
      // d(prod)/dx_r = product of the other ranks' values, found without dividing by zero:
      // count zeros and multiply the non-zero values separately.
      const Tensor zero = zip(x, x, [](auto a, auto) { return a == 0 ? 1 : 0; });
      const Tensor nonzero = zip(x, x, [](auto a, auto) { return a == 0 ? decltype(a)(1) : a; });
      const Tensor zeros = detail::allreduce(back, zero, ReduceOp::Sum);
      const Tensor product = detail::allreduce(back, nonzero, ReduceOp::Prod);
      const Tensor others_zero = kernels::sub(zeros, zero);
      const Tensor others = zip(kernels::div(product, nonzero), others_zero,
                                [](auto p, auto z) { return z > 0 ? decltype(p)(0) : p; });
      return kernels::mul(summed, others);
    }
  }
  return summed;
}

// allreduce, reduce and bcast of a CUDA tensor go through NCCL where the communicator chose it
// (cuda_collectives.h), else through MPI on `twin` (forward or backward), staged.
Tensor allreduce_via(Communicator::Impl& comm, MPI_Comm twin, const Tensor& x, ReduceOp op) {
  return detail::nccl_for(comm, x) ? detail::nccl_allreduce(comm, x, op) : detail::allreduce(twin, x, op);
}

Tensor reduce_via(Communicator::Impl& comm, MPI_Comm twin, const Tensor& x, ReduceOp op, int root) {
  return detail::nccl_for(comm, x) ? detail::nccl_reduce(comm, x, op, root) : detail::reduce(twin, x, op, root);
}

Tensor bcast_via(Communicator::Impl& comm, MPI_Comm twin, const Tensor& x, int root) {
  return detail::nccl_for(comm, x) ? detail::nccl_bcast(comm, x, root) : detail::bcast(twin, x, root);
}

// Part of the call's text: checked mode then names a rank whose backend differs from the
// others' (the NCCL and MPI calls would never meet), and DOT labels show the backend.
std::string via(const Communicator& comm, const Tensor& x) {
  return detail::nccl_for(comm.impl(), x) ? " via NCCL" : "";
}

struct CommDef {
  static constexpr bool visit_without_gradient = true;
  Impl comm;
  std::string text;
  detail::CallSite site;  // where the forward ran: the reports of the backward name it
  std::string label() const { return text; }
};

// The backward of a collective is a collective call too, numbered and checked like the
// forward: a rank whose backward skips it (no back(), a step under no_grad, another graph)
// is caught at its next collective call instead of leaving the others waiting.
class BackwardCall {
 public:
  BackwardCall(const CommDef& def, const Tensor& grad, std::int64_t free_axis = -1)
      : what_("backward of " + def.text), activity_(*def.comm, what_, -1, &def.site) {
    detail::start_collective(activity_, &grad, free_axis);
  }

 private:
  std::string what_;
  detail::Activity activity_;
};

struct AllreduceDef : CommDef {
  static constexpr std::string_view name = "allreduce";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  ReduceOp op;
  Tensor forward(const Tensor& x) const { return allreduce_via(*comm, comm->forward, x, op); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    const BackwardCall call(*this, c.grad);
    const Tensor summed = allreduce_via(*comm, comm->backward, c.grad, ReduceOp::Sum);
    return {route(comm->backward, op, c.in(0), c.output, summed)};
  }
};

struct ReduceDef : CommDef {
  static constexpr std::string_view name = "reduce";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  ReduceOp op;
  int root;
  Tensor forward(const Tensor& x) const { return reduce_via(*comm, comm->forward, x, op, root); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    const BackwardCall call(*this, c.grad);
    const Tensor summed = bcast_via(*comm, comm->backward, c.grad, root);
    const bool needs_out = op == ReduceOp::Max || op == ReduceOp::Min;
    const Tensor out = needs_out ? bcast_via(*comm, comm->backward, c.output, root) : c.output;
    return {route(comm->backward, op, c.in(0), out, summed)};
  }
};

struct BcastDef : CommDef {
  static constexpr std::string_view name = "bcast";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  int root;
  Tensor forward(const Tensor& x) const { return bcast_via(*comm, comm->forward, x, root); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    const BackwardCall call(*this, c.grad);
    return {reduce_via(*comm, comm->backward, c.grad, ReduceOp::Sum, root)};
  }
};

struct GatherDef : CommDef {
  static constexpr std::string_view name = "gather";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  int root;
  Tensor forward(const Tensor& x) const { return detail::gatherv(comm->forward, x, axis, root); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    const BackwardCall call(*this, c.grad, axis);
    const auto counts = detail::allgather_int(comm->backward, c.in(0).size(axis));
    const Tensor g = comm->rank == root ? c.grad : Tensor::zeros(c.in(0).shape(), c.grad.dtype(), c.in(0).device());
    return {detail::scatterv(comm->backward, g, axis, counts, root, c.in(0).shape())};
  }
};

struct AllgatherDef : CommDef {
  static constexpr std::string_view name = "allgather";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  Tensor forward(const Tensor& x) const { return detail::allgatherv(comm->forward, x, axis); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    const BackwardCall call(*this, c.grad);
    const auto counts = detail::allgather_int(comm->backward, c.in(0).size(axis));
    return {detail::reduce_scatterv(comm->backward, c.grad, axis, counts)};
  }
};

struct ScatterDef : CommDef {
  static constexpr std::string_view name = "scatter";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  std::vector<std::int64_t> counts;
  int root;
  Shape shape;  // the root's x's: every rank's output has it, with its count on axis
  Tensor forward(const Tensor& x) const { return detail::scatterv(comm->forward, x, axis, counts, root, shape); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};  // the same dtype on every rank (checked)
    const BackwardCall call(*this, c.grad, axis);
    Tensor g = detail::gatherv(comm->backward, c.grad, axis, root);
    // The root: the gathered gradient; the others: zeros of their own x's shape (an anchor).
    return {comm->rank == root ? g : Tensor::zeros(c.in(0).shape(), c.in(0).dtype(), c.in(0).device())};
  }
};

struct AlltoallDef : CommDef {
  static constexpr std::string_view name = "alltoall";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t gather_axis, scatter_axis, numelem;
  Tensor forward(const Tensor& x) const {
    return detail::alltoallv(comm->forward, x, gather_axis, scatter_axis, numelem);
  }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    const BackwardCall call(*this, c.grad, scatter_axis);
    return {detail::alltoallv(comm->backward, c.grad, scatter_axis, gather_axis, c.in(0).size(gather_axis))};
  }
};

// Megatron's pair for values replicated on every rank: a sum whose backward is the identity,
// and an identity whose backward is a sum.
struct ReplicatedSumDef : CommDef {
  static constexpr std::string_view name = "replicated_sum";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return allreduce_via(*comm, comm->forward, x, ReduceOp::Sum); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {c.grad}; }
};

struct CopyToRanksDef : CommDef {
  static constexpr std::string_view name = "copy_to_ranks";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  Tensor forward(const Tensor& x) const { return x; }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    const BackwardCall call(*this, c.grad);
    return {allreduce_via(*comm, comm->backward, c.grad, ReduceOp::Sum)};
  }
};

// What each rank brings to a scatter: every rank's numelem, dtype and axis, and the root's
// shape (any rank's x is sent; the root's is the one used). Fixed size: one allgather.
struct ScatterArgs {
  std::int64_t numelem, dtype, axis, ndim;
  std::array<std::int64_t, Shape::kMaxDims> dims;
};

std::vector<ScatterArgs> allgather_args(const Communicator& comm, const ScatterArgs& mine) {
  constexpr int n = sizeof(ScatterArgs) / sizeof(std::int64_t);
  static_assert(sizeof(ScatterArgs) == n * sizeof(std::int64_t));
  std::vector<ScatterArgs> all(static_cast<std::size_t>(comm.size()));
  ZKYNET_MPI(Allgather, Iallgather, &mine, n, MPI_INT64_T, all.data(), n, MPI_INT64_T, comm.impl().forward);
  return all;
}

void check_root(const Communicator& comm, int root, std::string_view what) {
  if (root < 0 || root >= comm.size()) {
    throw IndexError(std::string(what) + ": root " + std::to_string(root) + " is not a rank of " + comm.name() +
                     " (size " + std::to_string(comm.size()) + ")");
  }
}

std::string with_op(std::string_view what, ReduceOp op) { return std::string(what) + " " + std::string(reduce_op_name(op)); }

// A forward collective call: labelled ("Allreduce SUM #3 @world"), numbered and checked, and
// this rank's activity until the operator has run.
class ForwardCall {
 public:
  ForwardCall(const Communicator& comm, const std::string& what, const Tensor& x, std::int64_t free_axis = -1)
      : ForwardCall(comm, what, &x, free_axis) {}
  // x null: checked mode compares the call's text and number only (scatter checks the rest).
  ForwardCall(const Communicator& comm, const std::string& what, const Tensor* x, std::int64_t free_axis = -1)
      : comm_(comm.impl_ptr()), label_(comm.impl().collective_label(what)), activity_(comm.impl(), label_) {
    detail::start_collective(activity_, x, free_axis);
  }
  CommDef def() const { return {comm_, label_, detail::CallSite::here()}; }
  const std::string& label() const { return label_; }

 private:
  Impl comm_;
  std::string label_;
  detail::Activity activity_;
};

// An eager collective call: numbered and checked, and this rank's activity until it returns.
class EagerCall {
 public:
  EagerCall(const Communicator& comm, const std::string& what, const Tensor& t)
      : what_(what + " @" + comm.name()), activity_(comm.impl(), what_) {
    detail::start_collective(activity_, &t);
  }

 private:
  std::string what_;
  detail::Activity activity_;
};

}  // namespace

NodeRef allreduce(const NodeRef& x, ReduceOp op, const Communicator& comm) {
  const std::string what = with_op("Allreduce", op) + via(comm, x.value());
  const ForwardCall call(comm, what, x.value());
  return apply(AllreduceDef{call.def(), op}, x);
}

NodeRef reduce(const NodeRef& x, ReduceOp op, int root, const Communicator& comm) {
  const std::string what = with_op("Reduce", op) + " to " + std::to_string(root) + via(comm, x.value());
  check_root(comm, root, what);
  const ForwardCall call(comm, what, x.value());
  return apply(ReduceDef{call.def(), op, root}, x);
}

NodeRef bcast(const NodeRef& x, int root, const Communicator& comm) {
  const std::string what = "Bcast from " + std::to_string(root) + via(comm, x.value());
  check_root(comm, root, what);
  const ForwardCall call(comm, what, x.value());
  return apply(BcastDef{call.def(), root}, x);
}

NodeRef gather(const NodeRef& x, std::int64_t axis, int root, const Communicator& comm) {
  const std::string what = "Gather to " + std::to_string(root);
  check_root(comm, root, what);
  const std::int64_t a = detail::normalize_axis(axis, x.value().dim(), what);
  const ForwardCall call(comm, what, x.value(), a);
  return apply(GatherDef{call.def(), a, root}, x);
}

NodeRef allgather(const NodeRef& x, std::int64_t axis, const Communicator& comm) {
  const std::string what = "Allgather";
  const std::int64_t a = detail::normalize_axis(axis, x.value().dim(), what);
  const ForwardCall call(comm, what, x.value(), a);
  return apply(AllgatherDef{call.def(), a}, x);
}

NodeRef scatter(const NodeRef& x, std::int64_t axis, std::int64_t numelem, int root, const Communicator& comm) {
  const std::string what = "Scatter from " + std::to_string(root);
  check_root(comm, root, what);
  // mpi4torch's Scatter: a non-root x only anchors the gradient, its values and shape are
  // ignored; the root's number of dimensions and shape reach every rank. So checked mode
  // compares the calls without x, and one allgather of every rank's arguments (the root's
  // shape among them) lets every rank check the same facts and throw the same error.
  const ForwardCall call(comm, what, static_cast<const Tensor*>(nullptr));
  const Tensor& v = x.value();
  ScatterArgs mine{numelem, static_cast<std::int64_t>(v.dtype()), axis, v.dim(), {}};
  std::copy(v.shape().begin(), v.shape().end(), mine.dims.begin());
  const std::vector<ScatterArgs> args = allgather_args(comm, mine);
  const ScatterArgs& at_root = args[static_cast<std::size_t>(root)];
  const Shape shape(at_root.dims.begin(), at_root.dims.begin() + at_root.ndim);
  const auto dtype = static_cast<DType>(at_root.dtype);
  const std::string label = call.label();
  const std::string root_x = "the root's x, " + std::string(dtype_name(dtype)) + " " + shape_str(shape);
  const std::int64_t a = detail::normalize_axis(at_root.axis, at_root.ndim, label + " (" + root_x + ")");
  std::string dtypes, axes, negative;
  std::vector<std::int64_t> counts;
  for (std::size_t r = 0; r < args.size(); ++r) {
    const ScatterArgs& ar = args[r];
    const std::string rank = "rank " + std::to_string(r);
    const auto join = [](std::string& list, const std::string& item) { list += (list.empty() ? "" : ", ") + item; };
    if (ar.dtype != at_root.dtype) join(dtypes, rank + "'s x is " + std::string(dtype_name(static_cast<DType>(ar.dtype))));
    if ((ar.axis < 0 ? ar.axis + at_root.ndim : ar.axis) != a) join(axes, rank + " passes " + std::to_string(ar.axis));
    if (ar.numelem < 0) join(negative, rank + "'s is " + std::to_string(ar.numelem));
    counts.push_back(ar.numelem);
  }
  if (!dtypes.empty()) {
    throw TypeError(label + ": the output takes the root's dtype " + std::string(dtype_name(dtype)) + " (rank " +
                    std::to_string(root) + "), but " + dtypes +
                    "; a non-root rank's x only anchors the gradient (its values and shape are ignored), but its "
                    "dtype must be the root's");
  }
  if (!axes.empty()) {
    throw ShapeError(label + ": the ranks' scatter axes differ: the root passes " + std::to_string(at_root.axis) +
                     " (axis " + std::to_string(a) + " of " + root_x + "), " + axes);
  }
  if (!negative.empty()) throw ShapeError(label + ": numelem must not be negative: " + negative);
  const std::int64_t total = std::accumulate(counts.begin(), counts.end(), std::int64_t{0});
  if (total != shape[static_cast<std::size_t>(a)]) {
    std::string each;
    for (std::int64_t n : counts) each += (each.empty() ? "" : ", ") + std::to_string(n);
    throw ShapeError(label + ": the ranks' numelem (" + each + ") add up to " + std::to_string(total) + " but " +
                     root_x + " has " + std::to_string(shape[static_cast<std::size_t>(a)]) + " on axis " +
                     std::to_string(a));
  }
  return apply(ScatterDef{call.def(), a, std::move(counts), root, shape}, x);
}

NodeRef alltoall(const NodeRef& x, std::int64_t gather_axis, std::int64_t scatter_axis, std::int64_t numelem,
                 const Communicator& comm) {
  const std::string what = "Alltoall";
  const std::int64_t g = detail::normalize_axis(gather_axis, x.value().dim(), what);
  const std::int64_t s = detail::normalize_axis(scatter_axis, x.value().dim(), what);
  if (g == s) throw ShapeError(what + ": gather axis and scatter axis must differ (both " + std::to_string(g) + ")");
  const ForwardCall call(comm, what, x.value(), g);
  const auto counts = detail::allgather_int(comm.impl().forward, numelem);
  const std::int64_t total = std::accumulate(counts.begin(), counts.end(), std::int64_t{0});
  std::string problem;
  if (total != x.value().size(s)) {
    problem = "the ranks' numelem add up to " + std::to_string(total) + " but x " + shape_str(x.value().shape()) +
              " has " + std::to_string(x.value().size(s)) + " on the scatter axis " + std::to_string(s);
  }
  detail::agree(comm.impl().forward, problem, what);
  return apply(AlltoallDef{call.def(), g, s, numelem}, x);
}

NodeRef replicated_sum(const NodeRef& x, const Communicator& comm) {
  const std::string what = "Replicated sum" + via(comm, x.value());
  const ForwardCall call(comm, what, x.value());
  return apply(ReplicatedSumDef{call.def()}, x);
}

NodeRef copy_to_ranks(const NodeRef& x, const Communicator& comm) {
  // No forward communication, but its backward allreduce is a collective: label it as one.
  const std::string label = comm.impl().collective_label("Copy to ranks" + via(comm, x.value()));
  return apply(CopyToRanksDef{{comm.impl_ptr(), label, detail::CallSite::here()}}, x);
}

// ---- eager ------------------------------------------------------------------------------

void allreduce_(Tensor& t, ReduceOp op, const Communicator& comm) {
  if (!t.is_contiguous()) throw UsageError("dist::allreduce_: needs a contiguous tensor, got " + shape_str(t.shape()));
  const MPI_Op mop = detail::mpi_op(op, t.dtype());
  const EagerCall call(comm, with_op("allreduce_", op) + via(comm, t), t);
  if (detail::nccl_for(comm.impl(), t)) {
    detail::nccl_allreduce_(comm.impl(), t, op);
    return;
  }
  Tensor staged = detail::to_host(t);  // t itself on the CPU
  ZKYNET_MPI(Allreduce, Iallreduce, MPI_IN_PLACE, staged.raw_data(), detail::count_of(t.numel(), "allreduce_"),
             detail::mpi_type(t.dtype()), mop, comm.impl().forward);
  if (op == ReduceOp::Avg) staged.copy_(kernels::scale(staged, 1.0 / comm.size()));
  detail::write_back(t, staged);
}

void bcast_(Tensor& t, int root, const Communicator& comm) {
  if (!t.is_contiguous()) throw UsageError("dist::bcast_: needs a contiguous tensor, got " + shape_str(t.shape()));
  check_root(comm, root, "bcast_");
  const EagerCall call(comm, "bcast_ from " + std::to_string(root) + via(comm, t), t);
  if (detail::nccl_for(comm.impl(), t)) {
    detail::nccl_bcast_(comm.impl(), t, root);
    return;
  }
  Tensor staged = detail::to_host(t);  // t itself on the CPU
  ZKYNET_MPI(Bcast, Ibcast, staged.raw_data(), detail::count_of(t.numel(), "bcast_"), detail::mpi_type(t.dtype()), root,
             comm.impl().forward);
  detail::write_back(t, staged);
}

}  // namespace zkynet::dist
