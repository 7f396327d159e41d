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

// Checked mode: before each collective the ranks compare the operation, dtype and shapes
// they call it with, and all throw the same ShapeError on a mismatch instead of hanging or
// corrupting memory. On by default; costs one small allreduce per collective.
void set_checked(bool checked);
bool checked();

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

  Impl& impl() const { return *impl_; }
  const std::shared_ptr<Impl>& impl_ptr() const { return impl_; }
  explicit Communicator(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<Impl> impl_;
};

Communicator world();

}  // namespace zkynet::dist
