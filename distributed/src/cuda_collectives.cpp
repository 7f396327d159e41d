// The choice between staged (MPI through host memory) and NCCL collectives for CUDA tensors.
//
// The default is staged, even in builds with NCCL: NCCL refuses two ranks on one device (the
// usual test setup, and the only one on a one-GPU machine), costs a communicator's setup and
// device memory on first use, and cannot be watched while it blocks inside a kernel the way an
// MPI request can. Staged always works; NCCL is the fast path users opt into per communicator
// or with ZKYNET_CUDA_COLLECTIVES=nccl, as torch.distributed users pick their backend.
#include "cuda_collectives.h"

#include <zkynet/framework/error.h>

#include <cstdlib>
#include <map>
#include <mutex>

namespace zkynet::dist {
namespace detail {
namespace {

std::mutex choices_mutex;
CudaCollectives default_choice = CudaCollectives::Staged;

// Leaked on purpose: communicators destroyed by other statics' destructors still look here.
std::map<const Communicator::Impl*, CudaCollectives>& choices() {
  static auto* m = new std::map<const Communicator::Impl*, CudaCollectives>;
  return *m;
}

std::string no_nccl_text(std::string_view who) {
  return std::string(who) + ": this build has no NCCL (configure with -DZKYNET_NCCL=ON and CUDA, with nccl.h and " +
         "libnccl found); use staged collectives (CudaCollectives::Staged / \"staged\")";
}

CudaCollectives choice_of(const Communicator::Impl& comm) {
  const std::lock_guard lock(choices_mutex);
  const auto it = choices().find(&comm);
  return it == choices().end() ? default_choice : it->second;
}

}  // namespace

void read_cuda_collectives_env() {
  const char* env = std::getenv("ZKYNET_CUDA_COLLECTIVES");
  if (env == nullptr || *env == '\0') return;
  const std::string value(env);
  if (value == "staged") {
    default_choice = CudaCollectives::Staged;
  } else if (value == "nccl") {
    if (!nccl_built()) abort(no_nccl_text("ZKYNET_CUDA_COLLECTIVES=nccl"), 2);
    default_choice = CudaCollectives::Nccl;
  } else {
    abort("ZKYNET_CUDA_COLLECTIVES=" + value + ": expected staged or nccl", 2);
  }
}

bool nccl_for(const Communicator::Impl& comm, const Tensor& x) {
  return x.device().is_cuda() && choice_of(comm) == CudaCollectives::Nccl;
}

void forget_cuda_collectives(const Communicator::Impl* comm) {
  {
    const std::lock_guard lock(choices_mutex);
    choices().erase(comm);
  }
  nccl_release(comm);
}

}  // namespace detail

std::string_view cuda_collectives_name(CudaCollectives backend) {
  return backend == CudaCollectives::Nccl ? "nccl" : "staged";
}

void Communicator::set_cuda_collectives(CudaCollectives backend) const {
  if (backend == CudaCollectives::Nccl && !nccl_built()) {
    throw UsageError(detail::no_nccl_text("Communicator.set_cuda_collectives(nccl) on " + impl_->name));
  }
  const std::lock_guard lock(detail::choices_mutex);
  detail::choices()[impl_.get()] = backend;
}

CudaCollectives Communicator::cuda_collectives() const { return detail::choice_of(*impl_); }

}  // namespace zkynet::dist
