// MPI behind the public headers: communicator handles, datatype mapping, error checks,
// and the tensor-level collectives the graph operators are built from.
#pragma once

#include <zkynet/distributed/communicator.h>
#include <zkynet/framework/tensor.h>

#include <mpi.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace zkynet {
class Tape;
}

namespace zkynet::dist {

struct Communicator::Impl {
  MPI_Comm forward = MPI_COMM_NULL;   // forward traffic
  MPI_Comm backward = MPI_COMM_NULL;  // gradients: a duplicate, so they never match forward messages
  bool owns_forward = false;
  int rank = 0;
  int size = 1;
  std::string name;
  std::vector<int> world_ranks;   // each member's rank in the world, for the reports of faults
  std::uint64_t collectives = 0;  // per-rank sequence numbers that label collective nodes
  // Every collective call (forward, backward, eager, barrier, split) on this communicator:
  // checked mode compares the numbers across ranks.
  std::uint64_t calls = 0;
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

// Where an operation was called: the module invocation that was running, kept by graph
// operators for the reports of their backward (which runs outside any module call).
struct CallSite {
  std::weak_ptr<const Tape> tape;
  int invocation = -1;
  static CallSite here();
  std::string text() const;  // "MLP.l1 (Linear)"; "" at top level
};

// What this rank does in MPI, from an entry point (allreduce, recv, barrier, a backward ...)
// until it returns: the waits read it to report faults and timeouts, and tell other ranks
// that ask. Scopes nest; the innermost is current.
class Activity {
 public:
  // peer: the other rank (in comm) of a message; -1 for a collective of all comm's ranks.
  // site: null for "the current module path" (forward calls).
  Activity(Communicator::Impl& comm, std::string_view what, int peer = -1, const CallSite* site = nullptr);
  ~Activity();
  Activity(const Activity&) = delete;
  Activity& operator=(const Activity&) = delete;
  static const Activity* current();

  std::string site_text() const;
  // "Allreduce SUM #3 @world (collective call 5 on world, called at MLP.l1 (Linear))"
  std::string describe() const;

  Communicator::Impl& comm;
  const std::string_view what;
  const int peer;
  const CallSite* const site;
  std::int64_t call = -1;  // this collective call's number on comm (start_collective), -1: none

 private:
  const Activity* previous_;
};

// Numbers a collective call on its communicator and, in checked mode, compares the call
// across ranks: its text, dtype and shape (x; null for none, e.g. a barrier) and number; the
// size along `free_axis` (-1: none) may differ. On a mismatch every rank throws the same
// ShapeError listing each rank's call and where it was made. Every collective starts here.
void start_collective(Activity& activity, const Tensor* x, std::int64_t free_axis = -1);

// Waits for `request`, polling it: meanwhile the rank answers other ranks' questions, and the
// job is aborted, with a message naming the operation and the ranks concerned, when a rank
// the operation needs has finished or when the timeout (set_timeout) passes. Oversubscribed
// nodes sleep between polls. `call` names the MPI call for errors ("MPI_Iallreduce").
void complete(MPI_Request& request, std::string_view call, MPI_Status* status = MPI_STATUS_IGNORE);

// True when every rank is known to be in the same collective call (checked mode compared the
// calls, so none is missing) and the node is not oversubscribed: the blocking MPI call is safe
// and fastest. Otherwise collectives are posted non-blocking and waited for by complete().
inline bool arrived() { return checked() && !oversubscribed(); }

// One collective MPI call: blocking when arrived(), else non-blocking plus complete(). Both
// forms take the same arguments; the non-blocking one adds a request.
template <class Blocking, class NonBlocking>
void call(std::string_view what, Blocking&& blocking, NonBlocking&& nonblocking) {
  if (arrived()) {
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

// The fault watch (watch.cpp): a private duplicate of the world communicator on which ranks
// say that they finish and ask each other what they wait for. Started by init when zkynet
// started MPI; farewell() is the finishing rank's part, at exit, before MPI_Finalize.
void start_watch();
void farewell();
// Staging: MPI reads and writes host memory only (Debian's MPICH is not CUDA-aware), so every
// tensor a kernel hands to MPI goes through to_host() and every result goes back with
// to_device(). On the CPU both are free (to_host is contiguous(); to_device returns t). For a
// CUDA tensor the host side is pinned memory from the framework's pool (Tensor::pin_memory),
// so the copies go straight to and from it, without the driver's pageable bounce buffer.
Tensor to_host(const Tensor& x);                 // contiguous, on the CPU (pinned for a CUDA x)
Tensor to_device(const Tensor& t, Device device);  // t itself when it is there already
// An uninitialised host buffer shaped like x, for MPI to write: pinned when x is on a GPU.
Tensor host_buffer(const Tensor& x);
// An in-place eager call: MPI writes `staged` (to_host(t)); a device tensor gets it back.
void write_back(Tensor& t, const Tensor& staged);
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
// Tensor collectives on one MPI communicator (forward or backward twin). Results are fresh
// contiguous tensors; inputs are never written.
Tensor allreduce(MPI_Comm comm, const Tensor& x, ReduceOp op);
Tensor reduce(MPI_Comm comm, const Tensor& x, ReduceOp op, int root);  // non-root: zeros
Tensor bcast(MPI_Comm comm, const Tensor& x, int root);
Tensor gatherv(MPI_Comm comm, const Tensor& x, std::int64_t axis, int root);  // non-root: size 0 on axis
Tensor allgatherv(MPI_Comm comm, const Tensor& x, std::int64_t axis);
// Rank r receives its `counts[r]` entries along axis of the root's x. `shape` (known to
// every rank) gives the dimensions other than axis, the root's; only the root's x's values
// are read, and every rank's x must have the root's dtype.
Tensor scatterv(MPI_Comm comm, const Tensor& x, std::int64_t axis, const std::vector<std::int64_t>& counts,
                int root, const Shape& shape);
// The sum over ranks of each rank's own part along axis (parts of `counts` entries).
Tensor reduce_scatterv(MPI_Comm comm, const Tensor& x, std::int64_t axis, const std::vector<std::int64_t>& counts);
Tensor alltoallv(MPI_Comm comm, const Tensor& x, std::int64_t gather_axis, std::int64_t scatter_axis,
                 std::int64_t numelem);

std::int64_t normalize_axis(std::int64_t axis, std::int64_t ndim, std::string_view what);

}  // namespace detail
}  // namespace zkynet::dist
