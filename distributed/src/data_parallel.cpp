#include <zkynet/distributed/data_parallel.h>
#include <zkynet/distributed/eager.h>
#include <zkynet/framework/error.h>
#include <zkynet/nn/estimator.h>
#include <zkynet/ops/kernels.h>

#include <algorithm>

namespace zkynet::dist {

DataParallel::DataParallel(ModuleBase& model, Communicator comm, DataParallelOptions options)
    : model_(model), comm_(std::move(comm)), options_(options) {
  if (options_.root < 0 || options_.root >= comm_.size()) {
    throw IndexError("DataParallel: root " + std::to_string(options_.root) + " is not a rank of " + comm_.name());
  }
  plan_buckets();
  broadcast_state();
}

// Parameters in registration order, grouped by dtype into buckets of about bucket_bytes.
// Every rank builds the same model, so every rank plans the same buckets.
void DataParallel::plan_buckets() {
  buckets_.clear();
  for (const auto& [name, p] : model_.named_parameters()) {
    if (!p.requires_grad()) continue;
    const DType dtype = p.value().dtype();
    auto it = std::find_if(buckets_.rbegin(), buckets_.rend(), [&](const Bucket& b) { return b.dtype == dtype; });
    const auto bytes = [&](const Bucket& b) { return static_cast<std::size_t>(b.numel) * dtype_size(dtype); };
    if (it == buckets_.rend() || bytes(*it) >= options_.bucket_bytes) {
      buckets_.push_back({dtype, {}, 0});
      it = buckets_.rbegin();
    }
    it->params.push_back(p);
    it->numel += p.value().numel();
  }
}

void DataParallel::broadcast_state() {
  for (const auto& [name, p] : model_.named_parameters()) {
    Tensor value = p.value();
    if (!value.is_contiguous()) {
      value = value.contiguous();
      Parameter(p).set_value(value);
    }
    bcast_(value, options_.root, comm_);
  }
  for (auto& [name, buffer] : model_.named_buffers()) {
    Tensor b = buffer;
    if (!b.is_contiguous()) throw UsageError("DataParallel: buffer '" + name + "' is not contiguous");
    bcast_(b, options_.root, comm_);
  }
}

namespace {

// Copies the gradients into one flat buffer; a missing gradient counts as zeros.
void pack(const std::vector<Parameter>& params, Tensor& flat) {
  std::int64_t at = 0;
  for (const Parameter& p : params) {
    const std::int64_t n = p.value().numel();
    Tensor part = flat.slice(0, at, at + n).reshape(p.value().shape());
    if (p.grad().defined()) {
      part.copy_(p.grad());
    } else {
      part.fill_(0.0);
    }
    at += n;
  }
}

void scale_in_place(Tensor& flat, double factor) {
  if (!flat.device().is_cpu()) {
    flat = kernels::scale(flat, factor);
    return;
  }
  dispatch_floating(flat.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = flat.data<T>();
    const T f = static_cast<T>(factor);
    for (std::int64_t i = 0; i < flat.numel(); ++i) p[i] *= f;
  });
}

// Copies the averaged values back into each parameter's gradient (allocating it if missing).
void unpack(const Tensor& flat, std::vector<Parameter>& params) {
  std::int64_t at = 0;
  for (Parameter& p : params) {
    const std::int64_t n = p.value().numel();
    const Tensor mean = flat.slice(0, at, at + n).reshape(p.value().shape());
    if (p.grad().defined() && p.grad().shape() == p.value().shape() && p.grad().is_contiguous()) {
      Tensor(p.grad()).copy_(mean);
    } else {
      p.zero_grad();
      p.accumulate_grad(mean.to(p.value().device()));
    }
    at += n;
  }
}

}  // namespace

void DataParallel::average_gradients(std::int64_t local_rows) {
  if (comm_.size() == 1) return;  // the mean over one rank is its own gradient
  // Each rank's weight in the mean: its share of the rows (equal shards: plain mean).
  double weight = 1.0, total = comm_.size();
  if (local_rows >= 0) {
    Tensor rows = Tensor::scalar(static_cast<double>(local_rows));
    Tensor most = rows.clone();
    allreduce_(rows, ReduceOp::Sum, comm_);
    allreduce_(most, ReduceOp::Max, comm_);
    if (rows.item() == 0) return;
    if (most.item() * comm_.size() != rows.item()) {  // unequal shards: weight by rows
      weight = static_cast<double>(local_rows);
      total = rows.item();
    }
  }
  for (Bucket& bucket : buckets_) {
    // Staged, the bucket lives on the host whatever the parameters' device: pack's copies are
    // the staging MPI needs (mpi_internal.h), one per gradient, and unpack's copy them back.
    // With NCCL it stays on the parameters' device.
    Tensor flat = Tensor::empty({bucket.numel}, bucket.dtype, bucket_device(bucket));
    pack(bucket.params, flat);
    if (weight != 1.0) scale_in_place(flat, weight);
    allreduce_(flat, ReduceOp::Sum, comm_);
    scale_in_place(flat, 1.0 / total);
    unpack(flat, bucket.params);
  }
}

Device DataParallel::bucket_device(const Bucket& bucket) const {
  if (comm_.cuda_collectives() != CudaCollectives::Nccl || bucket.params.empty()) return Device::cpu();
  const Device first = bucket.params.front().value().device();
  const bool one_device = std::all_of(bucket.params.begin(), bucket.params.end(),
                                      [&](const Parameter& p) { return p.value().device() == first; });
  return one_device && first.is_cuda() ? first : Device::cpu();
}

std::pair<std::int64_t, std::int64_t> DataParallel::shard(std::int64_t rows) const {
  const std::int64_t size = comm_.size();
  const std::int64_t rank = comm_.rank();
  const std::int64_t base = rows / size;
  const std::int64_t extra = rows % size;
  const std::int64_t begin = rank * base + std::min(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

void DataParallel::attach(nn::Estimator& estimator) {
  nn::EstimatorParallelism p;
  p.shard = [this](std::int64_t rows) { return shard(rows); };
  p.combine_gradients = [this](std::int64_t local_rows) { average_gradients(local_rows); };
  p.sum_over_processes = [this](double v) {
    Tensor t = Tensor::scalar(v);
    allreduce_(t, ReduceOp::Sum, comm_);
    return t.item();
  };
  p.prints = comm_.rank() == options_.root;
  estimator.set_parallelism(std::move(p));
}

}  // namespace zkynet::dist
