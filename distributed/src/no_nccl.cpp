// Builds without NCCL: nothing chooses it (set_cuda_collectives and ZKYNET_CUDA_COLLECTIVES
// refuse it first), so the NCCL calls below are unreachable and say so if ever reached.
#include "cuda_collectives.h"

#include <zkynet/framework/error.h>

namespace zkynet::dist {
namespace detail {
namespace {

[[noreturn]] void unreachable(std::string_view what) {
  throw UsageError("zkynet.distributed: " + std::string(what) + ": this build has no NCCL");
}

}  // namespace

Tensor nccl_allreduce(Communicator::Impl&, const Tensor&, ReduceOp) { unreachable("allreduce via NCCL"); }
Tensor nccl_reduce(Communicator::Impl&, const Tensor&, ReduceOp, int) { unreachable("reduce via NCCL"); }
Tensor nccl_bcast(Communicator::Impl&, const Tensor&, int) { unreachable("bcast via NCCL"); }
void nccl_allreduce_(Communicator::Impl&, Tensor&, ReduceOp) { unreachable("allreduce_ via NCCL"); }
void nccl_bcast_(Communicator::Impl&, Tensor&, int) { unreachable("bcast_ via NCCL"); }
void nccl_release(const Communicator::Impl*) {}

}  // namespace detail

bool nccl_built() { return false; }

}  // namespace zkynet::dist
