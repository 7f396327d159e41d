// bench_allreduce --device cuda[:N]: allreduce (SUM, float32) of a CUDA tensor staged through
// host memory and MPI against NCCL on the device, both through zkynet's operators, on the ranks
// it is launched with (tools/gpu_check.sh: 1 rank on its one GPU; NCCL needs a device per rank).
//   bench_allreduce --device cuda [--samples 10] [--warmup 2] [--max-mb 256] [--sizes 1K,1M,...]
// Per size (1 KB to 256 MB in powers of 4), interleaved sample by sample in a seeded order:
//   staged_eager / nccl_eager   dist::allreduce_(t) in place on the device
//   staged_op / nccl_op         dist::allreduce(NodeRef(x)) (forward, no graph; allocates its output)
// Each call returns once the result is on the device (both backends wait for it), so a sample
// is wall time: `calls` back-to-back calls after a barrier, divided by `calls`, the slowest
// rank's. Reported in us (median / min / max) and nccl_speedup_SIZE = staged_eager / nccl_eager
// (medians). Results are checked against the expected sums before timing. One JSON line on rank 0;
// without NCCL in the build only the staged figures, without a device a JSON line saying so.
#include "bench_common.h"

#include <zkynet/distributed/communicator.h>
#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/framework/cuda.h>

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

std::string size_name(std::int64_t bytes) {
  if (bytes >= (1 << 20)) return std::to_string(bytes >> 20) + "MB";
  return std::to_string(bytes >> 10) + "KB";
}

void expect_all(const Tensor& t, float want, const std::string& what) {
  const Tensor h = t.cpu();
  const float* p = h.data<float>();
  for (std::int64_t i = 0; i < h.numel(); ++i) {
    if (p[i] != want) {
      std::fprintf(stderr, "bench_allreduce: FAILED: %s: element %lld is %g, expected %g\n", what.c_str(),
                   static_cast<long long>(i), static_cast<double>(p[i]), static_cast<double>(want));
      dist::abort("bench_allreduce failed", 1);
    }
  }
}

struct Variant {
  std::string name;
  std::function<void()> call;
};

}  // namespace

int run_cuda(int argc, char** argv, const std::vector<std::int64_t>& requested) {
  const auto world = dist::world();
  const int rank = world.rank(), size = world.size();
  const Device device = Device::parse(zb::arg_str(argc, argv, "--device", "cuda"));
  zb::Object res, meta;
  meta.add_number("ranks", size).add_string("device", device.str()).add_string("dtype", "float32");
  if (!cuda::is_available() || device.index >= cuda::device_count()) {
    meta.add_string("skipped", "no CUDA device " + device.str() + " answers on this machine");
    if (rank == 0) zb::emit("zkynet_allreduce_cuda", res, meta);
    return 0;
  }
  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 10));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 2));
  const long max_mb = zb::arg_long(argc, argv, "--max-mb", 256);
  std::vector<std::int64_t> sizes = requested;
  if (sizes.empty()) {
    for (std::int64_t b = 1024; b <= max_mb * (1 << 20); b *= 4) sizes.push_back(b);
  }
  // Two communicators of the same ranks: one stages, one runs NCCL (where built).
  const dist::Communicator staged = world.split(0);
  const dist::Communicator nccl = world.split(0);
  const bool with_nccl = dist::nccl_built();
  if (with_nccl) nccl.set_cuda_collectives(dist::CudaCollectives::Nccl);

  std::string size_list;
  for (const std::int64_t bytes : sizes) {
    const std::int64_t n = bytes / 4;
    const std::string sz = size_name(bytes);
    const float want = static_cast<float>(size * (size + 1) / 2);
    const Tensor x = Tensor::full({n}, rank + 1.0, DType::Float32).to(device);
    Tensor eager_staged = Tensor::zeros({n}, DType::Float32, device);  // zeros stay zeros: no overflow
    Tensor eager_nccl = Tensor::zeros({n}, DType::Float32, device);

    expect_all(dist::allreduce(NodeRef(x), dist::ReduceOp::Sum, staged).value(), want, "staged " + sz);
    std::vector<Variant> variants{
        {"staged_eager", [&] { dist::allreduce_(eager_staged, dist::ReduceOp::Sum, staged); }},
        {"staged_op", [&] { NodeRef y = dist::allreduce(NodeRef(x), dist::ReduceOp::Sum, staged); }},
    };
    if (with_nccl) {
      expect_all(dist::allreduce(NodeRef(x), dist::ReduceOp::Sum, nccl).value(), want, "nccl " + sz);
      variants.push_back({"nccl_eager", [&] { dist::allreduce_(eager_nccl, dist::ReduceOp::Sum, nccl); }});
      variants.push_back({"nccl_op", [&] { NodeRef y = dist::allreduce(NodeRef(x), dist::ReduceOp::Sum, nccl); }});
    }
    const int calls = static_cast<int>(std::max<std::int64_t>(1, (256 << 10) / bytes));
    std::map<std::string, std::vector<double>> local;
    std::vector<std::size_t> order(variants.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937 shuffle_gen(12345);  // the same sequence on every rank
    for (int s = 0; s < warmup + samples; ++s) {
      std::shuffle(order.begin(), order.end(), shuffle_gen);
      for (const std::size_t k : order) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = zb::now_us();
        for (int c = 0; c < calls; ++c) variants[k].call();
        if (s >= warmup) local[variants[k].name].push_back((zb::now_us() - t0) / calls);
      }
    }
    std::map<std::string, zb::Stats> st;
    for (const Variant& v : variants) {
      std::vector<double>& mine = local[v.name];
      std::vector<double> slowest(mine.size());
      MPI_Reduce(mine.data(), slowest.data(), static_cast<int>(mine.size()), MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      st[v.name] = zb::stats(slowest);
      res.add(v.name + "_us_" + sz, st[v.name]);
    }
    if (with_nccl) res.add_number("nccl_speedup_" + sz, st["staged_eager"].median / st["nccl_eager"].median);
    size_list += (size_list.empty() ? "" : ",") + zb::quoted(sz);
    if (rank == 0) {
      std::fprintf(stderr, "bench_allreduce cuda: %s staged %.1f us, nccl %.1f us\n", sz.c_str(),
                   st["staged_eager"].median, with_nccl ? st["nccl_eager"].median : 0.0);
    }
  }
  meta.add("sizes", "[" + size_list + "]")
      .add_number("samples", samples)
      .add_number("warmup", warmup)
      .add_number("nccl_built", with_nccl ? 1 : 0)
      .add_string("op", "SUM")
      .add_string("figure", "slowest rank's wall time per call until the result is on the device, us")
      .add("env", zb::env_json());
  if (rank == 0) zb::emit("zkynet_allreduce_cuda", res, meta);
  return 0;
}
