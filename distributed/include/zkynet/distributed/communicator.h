// Communicators: which processes take part in a distributed operator.
//
// MPI starts on first use (or with dist::init) and stops at exit. Under `mpiexec -n 4`,
// every process sees world().size() == 4 and its own world().rank().
//
//   auto world = dist::world();
//   auto rows = world.split(world.rank() / 2);   // two communicators of two ranks each
//
// Every communicator keeps a twin for backward traffic, so gradient messages never match
// forward ones whatever their tags. Errors from MPI become zkynet exceptions naming the call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace zkynet::dist {

enum class ReduceOp { Sum, Avg, Max, Min, Prod };
std::string_view reduce_op_name(ReduceOp op);

// Starts MPI (thread level "funneled": only the thread that started it calls MPI). Optional:
// the first communicator starts it too. Installs a terminate handler that aborts the whole
// job, so an uncaught exception on one rank ends every rank instead of leaving them waiting.
void init(int* argc = nullptr, char*** argv = nullptr);
bool initialized();
// Ends the whole job now with `code` on every rank (MPI_Abort), after printing `why`.
[[noreturn]] void abort(const std::string& why, int code = 1);

// Checked mode: before each collective call (operators and their backward, allreduce_ /
// bcast_, barrier, split) the ranks compare what they call: the operation, its number on the
// communicator, dtype and shape. On a mismatch all throw the same ShapeError listing each
// rank's call and where it was made, instead of hanging or pairing the wrong calls. So a rank
// whose backward skips communication (no back(), a step under no_grad) is caught at the next
// collective call. On by default (ZKYNET_DIST_CHECKED=0 turns it off); costs one small
// allreduce per call. Set it alike on every rank.
void set_checked(bool checked);
bool checked();

// Timeout (as torch.distributed has): a collective or message that does not complete within
// `seconds` aborts the whole job (MPI_Abort, status 1) with a message naming the operation,
// where it was called, and what the ranks it waits for are doing. 0 (the default) turns it
// off; ZKYNET_DIST_TIMEOUT=<seconds> sets it without code changes. Without a timeout, a rank
// still aborts the job when a rank it waits for has finished (its program ended normally).
void set_timeout(double seconds);
double timeout();

// How the collectives move CUDA tensors. Staged: copied to host memory, reduced by MPI, copied
// back (works with any MPI and any number of ranks per device). Nccl: NCCL reduces on the
// devices (allreduce, reduce, bcast, their backward and the eager allreduce_ / bcast_; the other
// collectives and the messages always stage). NCCL needs a build with it (nccl_built()) and
// one device per rank: it refuses two ranks on one GPU.
enum class CudaCollectives { Staged, Nccl };
std::string_view cuda_collectives_name(CudaCollectives backend);  // "staged", "nccl"
bool nccl_built();

class Communicator {
 public:
  struct Impl;  // defined in the implementation: MPI handles stay out of public headers

  int rank() const;
  int size() const;
  // "world", or "world/split(color 1)".
  const std::string& name() const;
  // Processes with the same color form a new communicator, ordered by key (then old rank).
  Communicator split(int color, int key = 0) const;
  void barrier() const;
  // The backend for CUDA tensors (PyTorch's backend choice, per communicator; split children
  // start from the default). Every rank must choose alike: checked mode names a rank that did
  // not. Default: ZKYNET_CUDA_COLLECTIVES=staged|nccl, else staged. Nccl in a build without
  // NCCL is a UsageError.
  void set_cuda_collectives(CudaCollectives backend) const;
  CudaCollectives cuda_collectives() const;

  Impl& impl() const { return *impl_; }
  const std::shared_ptr<Impl>& impl_ptr() const { return impl_; }
  explicit Communicator(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<Impl> impl_;
};

Communicator world();

}  // namespace zkynet::dist
