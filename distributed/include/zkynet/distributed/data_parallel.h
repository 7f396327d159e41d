// Data-parallel training (Horovod / DistributedDataParallel style) on an MPI communicator.
//
//   dist::DataParallel dp(model);          // broadcasts parameters and buffers from rank 0
//   for (auto& batch : loader) {
//     auto [begin, end] = dp.shard(batch[0].size(0));   // this rank's rows of the batch
//     optimizer.zero_grad();
//     objective(batch[0].slice(0, begin, end), batch[1].slice(0, begin, end)).back();
//     dp.average_gradients(end - begin);   // one allreduce per bucket of gradients
//     optimizer.step();
//   }
//
// or, with the Estimator: dp.attach(estimator); estimator.fit(x, y); under mpiexec.
#pragma once

#include <zkynet/distributed/communicator.h>
#include <zkynet/framework/module.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace zkynet::nn {
class Estimator;
}

namespace zkynet::dist {

struct DataParallelOptions {
  std::size_t bucket_bytes = std::size_t{25} << 20;  // PyTorch DDP's default bucket size
  int root = 0;                                       // the rank whose initial state everyone takes
};

class DataParallel {
 public:
  explicit DataParallel(ModuleBase& model, Communicator comm = world(), DataParallelOptions options = {});

  // Copies every parameter and buffer from the root rank (the constructor does this once).
  void broadcast_state();
  // Replaces each parameter's gradient by its mean over ranks. With local_rows, the mean is
  // weighted by each rank's rows, which is exact for mean-reduced losses when a batch does
  // not split evenly. Parameters without a gradient on some rank count as zeros there.
  void average_gradients(std::int64_t local_rows = -1);
  // This rank's rows [begin, end) of a batch of `rows`: contiguous, sizes differ by at most one.
  std::pair<std::int64_t, std::int64_t> shard(std::int64_t rows) const;
  // Makes est.fit() train data-parallel: each rank takes its shard of every minibatch (or its
  // streams of every series window: a stream's carried state stays on the rank that trains
  // it), gradients are averaged before each step, and only the root rank prints progress.
  void attach(nn::Estimator& estimator);

  std::size_t bucket_count() const { return buckets_.size(); }
  const Communicator& comm() const { return comm_; }
  ModuleBase& module() { return model_; }

 private:
  struct Bucket {
    DType dtype;
    std::vector<Parameter> params;
    std::int64_t numel = 0;
  };
  void plan_buckets();
  Device bucket_device(const Bucket& bucket) const;  // where the bucket is reduced

  ModuleBase& model_;
  Communicator comm_;
  DataParallelOptions options_;
  std::vector<Bucket> buckets_;
};

}  // namespace zkynet::dist
