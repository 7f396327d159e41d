// NCCL collectives on CUDA tensors, behind the same operators as the staged ones.
//
// A communicator's NCCL side is made on its first NCCL collective (every rank is in that call:
// checked mode compared it): rank 0's ncclGetUniqueId reaches the others by MPI, then each
// rank joins with the tensor's device. NCCL runs non-blocking (config.blocking = 0) on zkynet's
// stream of that device, so it is ordered with the kernels that wrote the input and read the
// output; the host then polls NCCL's asynchronous error and the stream through the watch
// (complete_when), so a rank that never comes, a timeout or an NCCL failure is reported,
// naming the operation, instead of blocking forever inside NCCL. That wait gives up overlap of
// the collective with later host work (the staged path waits too); one NCCL communicator serves
// forward and backward: collectives are matched by order, which checked mode keeps equal.
#include "cuda_collectives.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace zkynet::dist {
namespace detail {
namespace {

struct NcclComm {
  ncclComm_t comm = nullptr;  // null once aborted after an error
  Device device;
  NcclComm(ncclComm_t c, Device d) : comm(c), device(d) {}
  ~NcclComm() {
    if (comm != nullptr) ncclCommDestroy(comm);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
};

std::mutex comms_mutex;
// Leaked on purpose: communicators destroyed by other statics' destructors still look here.
std::map<const Communicator::Impl*, std::shared_ptr<NcclComm>>& comms() {
  static auto* m = new std::map<const Communicator::Impl*, std::shared_ptr<NcclComm>>;
  return *m;
}

// "allreduce via NCCL (Allreduce SUM via NCCL #3 @world, collective call 5 on world, ...)".
std::string describe(std::string_view what) {
  std::string out = std::string(what) + " via NCCL";
  if (const Activity* a = Activity::current()) out += " (" + a->describe() + ")";
  return out;
}

[[noreturn]] void fail(ncclComm_t comm, ncclResult_t rc, std::string_view call, std::string_view what) {
  std::string text = "zkynet.distributed: " + describe(what) + ": " + std::string(call) + " failed: " +
                     ncclGetErrorString(rc);
  if (comm != nullptr) {
    const char* last = ncclGetLastError(comm);
    if (last != nullptr && *last != '\0') text += " (" + std::string(last) + ")";
  }
  throw Error(text);
}

// A non-blocking communicator answers ncclInProgress while a call is still being queued.
void check(ncclComm_t comm, ncclResult_t rc, std::string_view call, std::string_view what) {
  if (rc != ncclSuccess && rc != ncclInProgress) fail(comm, rc, call, what);
}

// Waits, watched, until NCCL has queued the call (async error no longer ncclInProgress) and the
// stream (null: none, for the communicator's setup) has run it. On an NCCL error the
// communicator is aborted: its other ranks' calls then fail too instead of waiting.
void finish(NcclComm& c, cudaStream_t stream, std::string_view call, std::string_view what) {
  complete_when(
      [&] {
        ncclResult_t async = ncclSuccess;
        check(c.comm, ncclCommGetAsyncError(c.comm, &async), "ncclCommGetAsyncError", what);
        if (async == ncclInProgress) return false;
        if (async != ncclSuccess) {
          const std::string last = ncclGetLastError(c.comm);
          ncclCommAbort(c.comm);
          c.comm = nullptr;
          throw Error("zkynet.distributed: " + describe(what) + ": " + std::string(call) + " failed: " +
                      ncclGetErrorString(async) + (last.empty() ? "" : " (" + last + ")") +
                      "; this communicator's NCCL side is aborted");
        }
        if (stream == nullptr) return true;
        const cudaError_t s = cudaStreamQuery(stream);
        if (s == cudaSuccess) return true;
        if (s == cudaErrorNotReady) return false;
        throw Error("zkynet.distributed: " + describe(what) + ": the device failed while running " + std::string(call) +
                    ": " + cudaGetErrorName(s) + " (" + cudaGetErrorString(s) + ")");
      },
      call);
}

std::shared_ptr<NcclComm> create(Communicator::Impl& comm, Device device, std::string_view what) {
  ncclUniqueId id{};
  if (comm.rank == 0) check(nullptr, ncclGetUniqueId(&id), "ncclGetUniqueId", what);
  ZKYNET_MPI(Bcast, Ibcast, &id, static_cast<int>(sizeof id), MPI_BYTE, 0, comm.forward);
  (void)cuda::stream(device.index);  // makes the device current: NCCL binds the communicator to it
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t raw = nullptr;
  const ncclResult_t rc = ncclCommInitRankConfig(&raw, comm.size, id, comm.rank, &config);
  if (rc != ncclSuccess && rc != ncclInProgress) {
    std::string text = "zkynet.distributed: " + describe(what) + ": ncclCommInitRankConfig on " + device.str() +
                       " (rank " + std::to_string(comm.rank) + " of " + comm.name + ") failed: " +
                       ncclGetErrorString(rc);
    if (raw != nullptr) ncclCommAbort(raw);
    throw Error(text + "; NCCL needs one device per rank (two ranks on one GPU are refused): use staged "
                       "collectives there");
  }
  auto made = std::make_shared<NcclComm>(raw, device);
  finish(*made, nullptr, "ncclCommInitRankConfig", what);
  return made;
}

// The communicator's NCCL side, made on first use, bound to the device of that first tensor.
std::shared_ptr<NcclComm> nccl_comm(Communicator::Impl& comm, Device device, std::string_view what) {
  {
    const std::lock_guard lock(comms_mutex);
    const auto it = comms().find(&comm);
    if (it != comms().end()) {
      const NcclComm& c = *it->second;
      if (c.comm == nullptr) {
        throw Error("zkynet.distributed: " + describe(what) + ": the NCCL side of " + comm.name +
                    " was aborted after an earlier error");
      }
      if (c.device != device) {
        throw UsageError("zkynet.distributed: " + describe(what) + ": the NCCL side of " + comm.name +
                         " is bound to " + c.device.str() + ", got a tensor on " + device.str() +
                         " (one device per rank and communicator)");
      }
      return it->second;
    }
  }
  std::shared_ptr<NcclComm> made = create(comm, device, what);
  const std::lock_guard lock(comms_mutex);
  comms()[&comm] = made;
  return made;
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Int64: return ncclInt64;
  }
  return ncclFloat64;
}

ncclRedOp_t nccl_op(ReduceOp op, DType dtype) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg:
      (void)mpi_op(op, dtype);  // the staged path's TypeError for an int64 AVG
      return ncclAvg;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
    case ReduceOp::Prod: return ncclProd;
  }
  return ncclSum;
}

void require_cuda(const Tensor& x, std::string_view what) {
  if (!x.device().is_cuda()) {
    throw UsageError("zkynet.distributed: " + describe(what) + ": needs a CUDA tensor, got one on " +
                     x.device().str());
  }
}

// One NCCL call on x's device: `launch(comm, stream)` queues it; returns once it has run.
template <class Launch>
void run(Communicator::Impl& comm, const Tensor& x, std::string_view call, std::string_view what, Launch&& launch) {
  require_cuda(x, what);
  const std::shared_ptr<NcclComm> c = nccl_comm(comm, x.device(), what);
  if (x.numel() == 0) return;
  const auto stream = static_cast<cudaStream_t>(cuda::stream(x.device().index));
  check(c->comm, launch(c->comm, stream), call, what);
  finish(*c, stream, call, what);
}

}  // namespace

Tensor nccl_allreduce(Communicator::Impl& comm, const Tensor& x, ReduceOp op) {
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const ncclRedOp_t nop = nccl_op(op, x.dtype());
  run(comm, x, "ncclAllReduce", "allreduce", [&](ncclComm_t c, cudaStream_t s) {
    return ncclAllReduce(in.device_raw_data(), out.device_raw_data(), static_cast<std::size_t>(x.numel()),
                         nccl_type(x.dtype()), nop, c, s);
  });
  return out;
}

Tensor nccl_reduce(Communicator::Impl& comm, const Tensor& x, ReduceOp op, int root) {
  const Tensor in = x.contiguous();
  const bool is_root = comm.rank == root;
  // NCCL fills the root's buffer only; the others pass a scratch one (never read) and get
  // zeros, as the staged reduce gives them.
  const Tensor buffer = Tensor::empty(x.shape(), x.dtype(), x.device());
  const ncclRedOp_t nop = nccl_op(op, x.dtype());
  run(comm, x, "ncclReduce", "reduce", [&](ncclComm_t c, cudaStream_t s) {
    return ncclReduce(in.device_raw_data(), buffer.device_raw_data(), static_cast<std::size_t>(x.numel()),
                      nccl_type(x.dtype()), nop, root, c, s);
  });
  return is_root ? buffer : Tensor::zeros(x.shape(), x.dtype(), x.device());
}

Tensor nccl_bcast(Communicator::Impl& comm, const Tensor& x, int root) {
  Tensor out = comm.rank == root ? x.contiguous().clone() : Tensor::empty(x.shape(), x.dtype(), x.device());
  run(comm, x, "ncclBroadcast", "bcast", [&](ncclComm_t c, cudaStream_t s) {
    return ncclBroadcast(out.device_raw_data(), out.device_raw_data(), static_cast<std::size_t>(x.numel()),
                         nccl_type(x.dtype()), root, c, s);
  });
  return out;
}

void nccl_allreduce_(Communicator::Impl& comm, Tensor& t, ReduceOp op) {
  const ncclRedOp_t nop = nccl_op(op, t.dtype());
  run(comm, t, "ncclAllReduce", "allreduce_", [&](ncclComm_t c, cudaStream_t s) {
    return ncclAllReduce(t.device_raw_data(), t.device_raw_data(), static_cast<std::size_t>(t.numel()),
                         nccl_type(t.dtype()), nop, c, s);
  });
  t.bump_version();
}

void nccl_bcast_(Communicator::Impl& comm, Tensor& t, int root) {
  run(comm, t, "ncclBroadcast", "bcast_", [&](ncclComm_t c, cudaStream_t s) {
    return ncclBroadcast(t.device_raw_data(), t.device_raw_data(), static_cast<std::size_t>(t.numel()),
                         nccl_type(t.dtype()), root, c, s);
  });
  t.bump_version();
}

void nccl_release(const Communicator::Impl* comm) {
  std::shared_ptr<NcclComm> gone;  // destroyed outside the lock
  const std::lock_guard lock(comms_mutex);
  const auto it = comms().find(comm);
  if (it == comms().end()) return;
  gone = std::move(it->second);
  comms().erase(it);
}

}  // namespace detail

bool nccl_built() { return true; }

}  // namespace zkynet::dist
