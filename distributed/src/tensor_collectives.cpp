// Collectives on tensors, one MPI call each (plus the size exchanges that variable-size
// gathers need). Concatenation along an axis uses "axis-major" buffers: the axis moved to
// the front and made contiguous, so each rank's part is one contiguous block.
#include "mpi_internal.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/ops/kernels.h>

#include <algorithm>
#include <climits>
#include <numeric>
#include <sstream>

namespace zkynet::dist::detail {
namespace {

// Staged: the buffer MPI reads is on the host whatever x's device.
Tensor axis_major(const Tensor& x, std::int64_t axis) { return to_host(x).transpose(0, axis).contiguous(); }
// Inverse of axis_major (transposing twice is the identity).
Tensor from_axis_major(const Tensor& t, std::int64_t axis) { return t.transpose(0, axis).contiguous(); }

Shape with_axis(Shape shape, std::int64_t axis, std::int64_t size) {
  shape[static_cast<std::size_t>(axis)] = size;
  return shape;
}

// The shape of axis_major(x, axis) for x of `shape`.
Shape axis_major_shape(Shape shape, std::int64_t axis) {
  std::swap(shape[0], shape[static_cast<std::size_t>(axis)]);
  return shape;
}

// Elements per entry along `axis`.
std::int64_t inner(const Shape& shape, std::int64_t axis) {
  std::int64_t n = 1;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (static_cast<std::int64_t>(d) != axis) n *= shape[d];
  }
  return n;
}

struct Layout {
  std::vector<int> counts, displs;
};

Layout layout(const std::vector<std::int64_t>& entries, std::int64_t per_entry, std::string_view what) {
  Layout l;
  std::int64_t offset = 0;
  for (std::int64_t e : entries) {
    l.counts.push_back(count_of(e * per_entry, what));
    l.displs.push_back(count_of(offset, what));
    offset += e * per_entry;
  }
  return l;
}

int comm_rank(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

int comm_size(MPI_Comm comm) {
  int s = 1;
  MPI_Comm_size(comm, &s);
  return s;
}

}  // namespace

Tensor to_host(const Tensor& x) {
  if (x.device().is_cpu()) return x.contiguous();
  // A non-blocking copy lands in pinned memory; MPI reads it at once, so wait for it here.
  Tensor h = x.to(Device::cpu(), true);
  cuda::synchronize(x.device().index);
  return h;
}

Tensor host_buffer(const Tensor& x) {
  return x.device().is_cuda() ? Tensor::empty_pinned(x.shape(), x.dtype()) : Tensor::empty(x.shape(), x.dtype());
}

Tensor to_device(const Tensor& t, Device device) { return t.device() == device ? t : t.to(device); }

void write_back(Tensor& t, const Tensor& staged) {
  if (!t.device().is_cpu()) t.copy_(staged);
}

MPI_Op mpi_op(ReduceOp op, DType dtype) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Avg:
      if (!is_floating(dtype)) throw TypeError("zkynet.distributed: AVG needs a floating-point tensor, got int64");
      return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
    case ReduceOp::Prod: return MPI_PROD;
  }
  return MPI_SUM;
}

void finish_avg(Tensor& t, ReduceOp op, MPI_Comm comm) {
  if (op == ReduceOp::Avg) t = kernels::scale(t, 1.0 / comm_size(comm));
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
  }
  return MPI_BYTE;
}

int count_of(std::int64_t n, std::string_view what) {
  if (n > INT_MAX) {
    throw ShapeError("zkynet.distributed: " + std::string(what) + ": " + std::to_string(n) +
                     " elements exceed MPI's count limit (2^31 - 1); split the tensor");
  }
  return static_cast<int>(n);
}

std::int64_t normalize_axis(std::int64_t axis, std::int64_t ndim, std::string_view what) {
  const std::int64_t a = axis < 0 ? axis + ndim : axis;
  if (a < 0 || a >= ndim) {
    throw IndexError(std::string(what) + ": axis " + std::to_string(axis) + " out of range for a " +
                     std::to_string(ndim) + "-d tensor");
  }
  return a;
}

std::vector<std::int64_t> allgather_int(MPI_Comm comm, std::int64_t value) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(comm_size(comm)));
  ZKYNET_MPI(Allgather, Iallgather, &value, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, comm);
  return all;
}

void agree(MPI_Comm comm, const std::string& local_problem, std::string_view what) {
  int bad = local_problem.empty() ? 0 : 1;
  int any = 0;
  ZKYNET_MPI(Allreduce, Iallreduce, &bad, &any, 1, MPI_INT, MPI_MAX, comm);
  if (!any) return;
  if (bad) throw ShapeError(std::string(what) + ": " + local_problem);
  throw ShapeError(std::string(what) + ": another rank's arguments do not fit (see its error)");
}

namespace {

// Every rank's text, in rank order (ranks known to be in the same call).
std::vector<std::string> allgather_text(MPI_Comm comm, const std::string& mine) {
  const std::vector<std::int64_t> lengths = allgather_int(comm, static_cast<std::int64_t>(mine.size()));
  const Layout l = layout(lengths, 1, "checked mode");
  std::string all(static_cast<std::size_t>(std::accumulate(lengths.begin(), lengths.end(), std::int64_t{0})), '\0');
  ZKYNET_MPI(Allgatherv, Iallgatherv, mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(),
             l.counts.data(), l.displs.data(), MPI_CHAR, comm);
  std::vector<std::string> out;
  for (std::size_t r = 0; r < lengths.size(); ++r) {
    out.push_back(all.substr(static_cast<std::size_t>(l.displs[r]), static_cast<std::size_t>(l.counts[r])));
  }
  return out;
}

}  // namespace

void start_collective(Activity& activity, const Tensor* x, std::int64_t free_axis) {
  Communicator::Impl& comm = activity.comm;
  activity.call = static_cast<std::int64_t>(comm.calls++);
  if (!checked()) return;
  // Signature: one hash of the call's text, its number, dtype (-1: no tensor), ndim and dims
  // (the free axis masked). A MAX-allreduce of (sig, -sig) gives every rank the extremes.
  std::uint64_t h = std::hash<std::string_view>{}(activity.what);
  const auto mix = [&h](std::int64_t v) {  // splitmix64's finalizer: every input bit moves every output bit
    h ^= static_cast<std::uint64_t>(v) + 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    h ^= h >> 31;
  };
  mix(activity.call);
  mix(x ? static_cast<std::int64_t>(x->dtype()) : -1);
  mix(x ? x->dim() : -1);
  for (std::int64_t d = 0; x && d < x->dim(); ++d) mix(d == free_axis ? -1 : x->shape()[d]);
  const auto sig = static_cast<std::int64_t>(h >> 2);  // 62 bits: -sig cannot overflow
  std::int64_t both[2] = {sig, -sig}, extremes[2];
  // Non-blocking whatever the mode: this is where a missing rank would leave the others waiting.
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Iallreduce(both, extremes, 2, MPI_INT64_T, MPI_MAX, comm.forward, &request), "MPI_Iallreduce");
  complete(request, "MPI_Iallreduce");
  const bool same = extremes[0] == -extremes[1];
  if (same) return;
  // Every rank saw the mismatch: gather what each called, so that all report the same thing.
  std::ostringstream mine;
  mine << activity.what;
  if (x) mine << " " << dtype_name(x->dtype()) << " " << shape_str(x->shape());
  mine << " [call " << activity.call << "]";
  if (const std::string site = activity.site_text(); !site.empty()) mine << " at " << site;
  const std::vector<std::string> calls = allgather_text(comm.forward, mine.str());
  // The ranks' numbers may have drifted apart (say, a backward against a forward): take the
  // largest, so that a program which catches the error goes on with matching numbers.
  std::int64_t counters[2] = {static_cast<std::int64_t>(comm.collectives), static_cast<std::int64_t>(comm.calls)};
  ZKYNET_MPI(Allreduce, Iallreduce, MPI_IN_PLACE, counters, 2, MPI_INT64_T, MPI_MAX, comm.forward);
  comm.collectives = static_cast<std::uint64_t>(counters[0]);
  comm.calls = static_cast<std::uint64_t>(counters[1]);
  std::ostringstream os;
  os << "zkynet.distributed: the ranks' collective calls on " << comm.name << " differ (checked mode):";
  for (int r = 0; r < comm.size; ++r) {
    os << " rank " << r << ": " << calls[static_cast<std::size_t>(r)] << (r + 1 < comm.size ? ";" : "");
  }
  if (free_axis >= 0) os << " (the size on axis " << free_axis << " may differ)";
  throw ShapeError(os.str());
}

Tensor allreduce(MPI_Comm comm, const Tensor& x, ReduceOp op) {
  const Tensor in = to_host(x);
  Tensor out = host_buffer(x);
  const MPI_Op mop = mpi_op(op, x.dtype());
  ZKYNET_MPI(Allreduce, Iallreduce, in.raw_data(), out.raw_data(), count_of(x.numel(), "allreduce"), mpi_type(x.dtype()), mop,
                      comm);
  finish_avg(out, op, comm);
  return to_device(out, x.device());
}

Tensor reduce(MPI_Comm comm, const Tensor& x, ReduceOp op, int root) {
  const Tensor in = to_host(x);
  const bool is_root = comm_rank(comm) == root;
  Tensor out = is_root ? host_buffer(x) : Tensor::zeros(x.shape(), x.dtype());
  const MPI_Op mop = mpi_op(op, x.dtype());
  ZKYNET_MPI(Reduce, Ireduce, in.raw_data(), is_root ? out.raw_data() : nullptr, count_of(x.numel(), "reduce"),
                   mpi_type(x.dtype()), mop, root, comm);
  if (is_root) finish_avg(out, op, comm);
  return to_device(out, x.device());
}

Tensor bcast(MPI_Comm comm, const Tensor& x, int root) {
  // On the CPU to_host may be x itself, which the result must not alias; from a GPU it is a copy.
  Tensor out = comm_rank(comm) != root ? host_buffer(x) : x.device().is_cpu() ? to_host(x).clone() : to_host(x);
  ZKYNET_MPI(Bcast, Ibcast, out.raw_data(), count_of(x.numel(), "bcast"), mpi_type(x.dtype()), root, comm);
  return to_device(out, x.device());
}

Tensor gatherv(MPI_Comm comm, const Tensor& x, std::int64_t axis, int root) {
  const std::vector<std::int64_t> sizes = allgather_int(comm, x.size(axis));
  const Tensor in = axis_major(x, axis);
  const std::int64_t per = inner(x.shape(), axis);
  const bool is_root = comm_rank(comm) == root;
  const Layout l = layout(sizes, per, "gather");
  const std::int64_t total = std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0});
  Tensor buffer = Tensor::empty(is_root ? with_axis(in.shape(), 0, total) : in.shape(), x.dtype());
  ZKYNET_MPI(Gatherv, Igatherv, in.raw_data(), count_of(in.numel(), "gather"), mpi_type(x.dtype()),
                    is_root ? buffer.raw_data() : nullptr, l.counts.data(), l.displs.data(), mpi_type(x.dtype()),
                    root, comm);
  if (!is_root) return Tensor::zeros(with_axis(x.shape(), axis, 0), x.dtype(), x.device());
  return to_device(from_axis_major(buffer, axis), x.device());
}

Tensor allgatherv(MPI_Comm comm, const Tensor& x, std::int64_t axis) {
  const std::vector<std::int64_t> sizes = allgather_int(comm, x.size(axis));
  const Tensor in = axis_major(x, axis);
  const Layout l = layout(sizes, inner(x.shape(), axis), "allgather");
  const std::int64_t total = std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0});
  Tensor buffer = Tensor::empty(with_axis(in.shape(), 0, total), x.dtype());
  ZKYNET_MPI(Allgatherv, Iallgatherv, in.raw_data(), count_of(in.numel(), "allgather"), mpi_type(x.dtype()), buffer.raw_data(),
                       l.counts.data(), l.displs.data(), mpi_type(x.dtype()), comm);
  return to_device(from_axis_major(buffer, axis), x.device());
}

Tensor scatterv(MPI_Comm comm, const Tensor& x, std::int64_t axis, const std::vector<std::int64_t>& counts,
                int root, const Shape& shape) {
  const int rank = comm_rank(comm);
  const bool is_root = rank == root;
  const Tensor in = is_root ? axis_major(x, axis) : Tensor();
  const Layout l = layout(counts, inner(shape, axis), "scatter");
  const Shape mine = with_axis(shape, axis, counts[static_cast<std::size_t>(rank)]);
  Tensor buffer = Tensor::empty(axis_major_shape(mine, axis), x.dtype());
  ZKYNET_MPI(Scatterv, Iscatterv, is_root ? in.raw_data() : nullptr, l.counts.data(), l.displs.data(), mpi_type(x.dtype()),
                     buffer.raw_data(), l.counts[static_cast<std::size_t>(rank)], mpi_type(x.dtype()), root, comm);
  return to_device(from_axis_major(buffer, axis), x.device());
}

Tensor reduce_scatterv(MPI_Comm comm, const Tensor& x, std::int64_t axis, const std::vector<std::int64_t>& counts) {
  const int rank = comm_rank(comm);
  const Tensor in = axis_major(x, axis);
  const Layout l = layout(counts, inner(x.shape(), axis), "reduce_scatter");
  Tensor buffer = Tensor::empty(with_axis(in.shape(), 0, counts[static_cast<std::size_t>(rank)]), x.dtype());
  ZKYNET_MPI(Reduce_scatter, Ireduce_scatter, in.raw_data(), buffer.raw_data(), l.counts.data(), mpi_type(x.dtype()), MPI_SUM, comm);
  return to_device(from_axis_major(buffer, axis), x.device());
}

Tensor alltoallv(MPI_Comm comm, const Tensor& x, std::int64_t gather_axis, std::int64_t scatter_axis,
                 std::int64_t numelem) {
  const std::vector<std::int64_t> keep = allgather_int(comm, numelem);          // per rank, along scatter_axis
  const std::vector<std::int64_t> pieces = allgather_int(comm, x.size(gather_axis));  // per rank, along gather_axis
  const int size = comm_size(comm);
  // Send: the parts along scatter_axis, one contiguous block per destination.
  const Tensor send = axis_major(x, scatter_axis);
  const Layout send_l = layout(keep, inner(x.shape(), scatter_axis), "alltoall");
  // Receive: from rank i, a block of x's shape with scatter_axis = numelem, gather_axis = pieces[i].
  const Shape base = with_axis(x.shape(), scatter_axis, numelem);
  std::vector<std::int64_t> recv_numel;
  for (int i = 0; i < size; ++i) recv_numel.push_back(shape_numel(with_axis(base, gather_axis, pieces[i])));
  const Layout recv_l = layout(recv_numel, 1, "alltoall");
  Tensor received = Tensor::empty({std::accumulate(recv_numel.begin(), recv_numel.end(), std::int64_t{0})}, x.dtype());
  ZKYNET_MPI(Alltoallv, Ialltoallv, send.raw_data(), send_l.counts.data(), send_l.displs.data(), mpi_type(x.dtype()),
                      received.raw_data(), recv_l.counts.data(), recv_l.displs.data(), mpi_type(x.dtype()), comm);
  // Each block arrived axis-major in scatter_axis; put it in place along gather_axis.
  const std::int64_t total = std::accumulate(pieces.begin(), pieces.end(), std::int64_t{0});
  Tensor out = Tensor::empty(with_axis(base, gather_axis, total), x.dtype());
  std::int64_t offset = 0, at = 0;
  for (int i = 0; i < size; ++i) {
    const Shape block = with_axis(base, gather_axis, pieces[i]);
    const Tensor piece = received.slice(0, offset, offset + recv_numel[i])
                             .reshape(axis_major_shape(block, scatter_axis))
                             .transpose(0, scatter_axis);
    out.slice(gather_axis, at, at + pieces[i]).copy_(piece);
    offset += recv_numel[i];
    at += pieces[i];
  }
  return to_device(out, x.device());
}

}  // namespace zkynet::dist::detail
