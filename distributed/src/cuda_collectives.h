// How collectives move CUDA tensors: staged through host memory and MPI (mpi_internal.h), or
// NCCL on the device. The choice belongs to a communicator (Communicator::set_cuda_collectives,
// default from ZKYNET_CUDA_COLLECTIVES); nccl.cpp implements the NCCL side, no_nccl.cpp stands
// in for builds without NCCL. No NCCL or CUDA header here.
//
// NOTE: the choice and the NCCL communicator would belong in Communicator::Impl; that struct is
// in mpi_internal.h, owned elsewhere while this was written, so they live in tables keyed by the
// Impl, which forgets its entry when it is destroyed (forget_cuda_collectives).
#pragma once

#include "mpi_internal.h"

#include <functional>
#include <string_view>

namespace zkynet::dist::detail {

// Reads ZKYNET_CUDA_COLLECTIVES (staged|nccl) once, from init(); a bad value, or nccl in a build
// without NCCL, aborts the job with status 2 (as a bad ZKYNET_DIST_TIMEOUT does).
void read_cuda_collectives_env();
// True when x is a CUDA tensor and comm has chosen NCCL: the collective runs in NCCL.
bool nccl_for(const Communicator::Impl& comm, const Tensor& x);
// Called by ~Impl: drops the choice and destroys the NCCL communicator, if any.
void forget_cuda_collectives(const Communicator::Impl* comm);

// NCCL collectives on the CUDA tensor x, on the device's zkynet stream; they return once the
// device has finished them (errors name `what`, NCCL's message and the activity). Results are
// fresh contiguous tensors on x's device; the reduce's non-root ranks get zeros, as staged.
// The communicator's NCCL side is created on its first use (every rank is in that call).
Tensor nccl_allreduce(Communicator::Impl& comm, const Tensor& x, ReduceOp op);
Tensor nccl_reduce(Communicator::Impl& comm, const Tensor& x, ReduceOp op, int root);
Tensor nccl_bcast(Communicator::Impl& comm, const Tensor& x, int root);
// In place on a contiguous CUDA tensor (the eager allreduce_ / bcast_).
void nccl_allreduce_(Communicator::Impl& comm, Tensor& t, ReduceOp op);
void nccl_bcast_(Communicator::Impl& comm, Tensor& t, int root);
void nccl_release(const Communicator::Impl* comm);

// complete() for waits that are not MPI requests (watch.cpp): polls `done` while answering
// other ranks, noticing finished ones and enforcing the timeout, exactly as complete() does.
// `call` names what is waited for in the reports.
void complete_when(const std::function<bool()>& done, std::string_view call);

}  // namespace zkynet::dist::detail
