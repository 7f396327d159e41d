// MPI behind the public headers: communicator handles, datatype mapping, error checks,
// and the tensor-level collectives the graph operators are built from.
#pragma once

#include <zkynet/distributed/communicator.h>
#include <zkynet/framework/tensor.h>

#include <mpi.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace zkynet::dist {

struct Communicator::Impl {
  MPI_Comm forward = MPI_COMM_NULL;   // forward traffic
  MPI_Comm backward = MPI_COMM_NULL;  // gradients: a duplicate, so they never match forward messages
  bool owns_forward = false;
  int rank = 0;
  int size = 1;
  std::string name;
  std::uint64_t collectives = 0;  // per-rank sequence numbers that label collective nodes
  std::map<std::tuple<char, int, int>, std::uint64_t> messages;  // (direction, peer, tag) -> count

  Impl(MPI_Comm comm, bool owns, std::string comm_name);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // "Allreduce SUM #3 @world": the n-th collective on this communicator; DOT labels carry it
  // so tools/merge_rank_graphs.py can join the ranks' pictures.
  std::string collective_label(std::string_view what);
  std::string message_label(char direction, int peer, int tag);
};

namespace detail {

// Throws zkynet::Error naming `call` and MPI's own message when rc is not MPI_SUCCESS.
void check(int rc, std::string_view call);

// True when this node runs more ranks than it has CPUs (e.g. 4 ranks on 2 cores). MPI's
// blocking calls spin; oversubscribed ranks would then burn each other's time slices, so
// waits poll and sleep instead. ZKYNET_DIST_WAIT=spin or =sleep overrides the choice.
bool oversubscribed();
// Waits for `request`: MPI_Wait, or (oversubscribed) MPI_Test with short sleeps.
void complete(MPI_Request& request, std::string_view what, MPI_Status* status = MPI_STATUS_IGNORE);

// One MPI call: the blocking form normally, the non-blocking form plus complete() when
// oversubscribed. Both forms take the same arguments; the non-blocking one adds a request.
template <class Blocking, class NonBlocking>
void call(std::string_view what, Blocking&& blocking, NonBlocking&& nonblocking) {
  if (!oversubscribed()) {
    check(blocking(), what);
    return;
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check(nonblocking(&request), what);
  complete(request, what);
}

// ZKYNET_MPI(Allreduce, Iallreduce, args...): call() for MPI_Allreduce / MPI_Iallreduce.
#define ZKYNET_MPI(Name, IName, ...)                                                   \
  ::zkynet::dist::detail::call(                                                       \
      "MPI_" #Name, [&] { return MPI_##Name(__VA_ARGS__); },                           \
      [&](MPI_Request* zkynet_request) { return MPI_##IName(__VA_ARGS__, zkynet_request); })
MPI_Datatype mpi_type(DType dtype);
// MPI's operation for `op` (AVG: a sum, finished by finish_avg); AVG of int64 is a TypeError.
MPI_Op mpi_op(ReduceOp op, DType dtype);
// Divides an AVG's sum by the communicator's size; other operations are left as they are.
void finish_avg(Tensor& t, ReduceOp op, MPI_Comm comm);
// MPI counts are ints; bigger buffers are refused with a clear error.
int count_of(std::int64_t n, std::string_view what);

// Every rank contributes `value`; every rank gets all of them in rank order.
std::vector<std::int64_t> allgather_int(MPI_Comm comm, std::int64_t value);
// All ranks learn whether any rank failed a local check; all throw the same kind of error.
void agree(MPI_Comm comm, const std::string& local_problem, std::string_view what);
// Checked mode: compares (what, dtype, shape) across ranks, ignoring the size along
// `free_axis` (-1: none), and throws ShapeError on every rank listing each rank's call.
void check_same_call(const Communicator::Impl& comm, std::string_view what, const Tensor& x,
                     std::int64_t free_axis = -1);

// Tensor collectives on one MPI communicator (forward or backward twin). Results are fresh
// contiguous tensors; inputs are never written.
Tensor allreduce(MPI_Comm comm, const Tensor& x, ReduceOp op);
Tensor reduce(MPI_Comm comm, const Tensor& x, ReduceOp op, int root);  // non-root: zeros
Tensor bcast(MPI_Comm comm, const Tensor& x, int root);
Tensor gatherv(MPI_Comm comm, const Tensor& x, std::int64_t axis, int root);  // non-root: size 0 on axis
Tensor allgatherv(MPI_Comm comm, const Tensor& x, std::int64_t axis);
// Rank r receives its `counts[r]` entries along axis of the root's x; `like` gives the
// non-root ranks' shape and dtype.
Tensor scatterv(MPI_Comm comm, const Tensor& x, std::int64_t axis, const std::vector<std::int64_t>& counts,
                int root);
// The sum over ranks of each rank's own part along axis (parts of `counts` entries).
Tensor reduce_scatterv(MPI_Comm comm, const Tensor& x, std::int64_t axis, const std::vector<std::int64_t>& counts);
Tensor alltoallv(MPI_Comm comm, const Tensor& x, std::int64_t gather_axis, std::int64_t scatter_axis,
                 std::int64_t numelem);

std::int64_t normalize_axis(std::int64_t axis, std::int64_t ndim, std::string_view what);

}  // namespace detail
}  // namespace zkynet::dist
