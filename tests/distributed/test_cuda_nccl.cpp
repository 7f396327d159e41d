// NCCL collectives on CUDA tensors (Communicator::set_cuda_collectives(Nccl)): every value
// and gradient equals the same call's on the CPU (staged through MPI), on the rank's device.
// Each rank needs its own device (NCCL refuses two ranks on one GPU): rank r uses cuda:r, and
// the binary exits 77 (skipped) without NCCL in the build, without a device, or with fewer
// devices than ranks. tools/gpu_check.sh runs it on 1 rank and on 2 (skipped on one GPU).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <zkynet/distributed.h>
#include <zkynet/framework/cuda.h>
#include <zkynet/nn/linear.h>
#include <zkynet/ops/ops.h>

#include "distributed/helpers.h"

#include <cstdio>
#include <functional>
#include <vector>

namespace {

using namespace zkynet;
using Catch::Matchers::Contains;
using testing::rank;
using testing::size;
using testing::W;

Device gpu() { return Device::cuda(rank()); }

void require_same(const Tensor& on_gpu, const Tensor& on_cpu, const char* what) {
  INFO(what);
  REQUIRE(on_gpu.device() == gpu());
  REQUIRE(on_gpu.shape() == on_cpu.shape());
  const std::vector<double> a = on_gpu.to_doubles(), b = on_cpu.to_doubles();
  // NCCL's rings and trees add in another order than MPI: rounding only.
  const double tol = on_cpu.dtype() == DType::Float64 ? 1e-12 : 1e-5;
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(tol).margin(tol));
}

// The objective sum(f(x) * w), rank-dependent weights: value and gradient through NCCL on the
// device equal the CPU's through MPI.
void require_matches_cpu(const std::function<NodeRef(const NodeRef&)>& f, const Tensor& x) {
  Tensor out_cpu, out_gpu;
  const auto body = [&](Tensor& out) {
    return [&f, &out](const NodeRef& v) {
      const NodeRef y = f(v);
      out = y.value();
      const Tensor w = testing::rank_tensor(y.value().shape(), rank(), 7).to(y.value().device());
      return op::sum(op::mult(y, w));
    };
  };
  const Tensor g_cpu = testing::rank_grad(body(out_cpu), x);
  const Tensor g_gpu = testing::rank_grad(body(out_gpu), x.to(gpu()));
  require_same(out_gpu, out_cpu, "value");
  require_same(g_gpu, g_cpu, "gradient");
}

Tensor x_of(const Shape& shape) { return testing::rank_tensor(shape, rank()); }

}  // namespace

TEST_CASE("NCCL allreduce SUM: value and its allreduce-sum adjoint equal the CPU's") {
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v, dist::ReduceOp::Sum); }, x_of({3, 4}));
}

TEST_CASE("NCCL allreduce AVG in float32") {
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v, dist::ReduceOp::Avg); },
                      x_of({257}).to(DType::Float32));
}

TEST_CASE("NCCL allreduce MAX and PROD: forward in NCCL, the winners' routing staged") {
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v, dist::ReduceOp::Max); }, x_of({5}));
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v, dist::ReduceOp::Prod); }, x_of({5}));
}

TEST_CASE("NCCL reduce AVG to the last rank: non-root zeros on the device") {
  require_matches_cpu([](const NodeRef& v) { return dist::reduce(v, dist::ReduceOp::Avg, size() - 1); }, x_of({2, 3}));
}

TEST_CASE("NCCL bcast from rank 0 and its reduce adjoint") {
  require_matches_cpu([](const NodeRef& v) { return dist::bcast(v, 0); }, x_of({4}));
}

TEST_CASE("NCCL replicated_sum and copy_to_ranks") {
  require_matches_cpu([](const NodeRef& v) { return dist::replicated_sum(v); }, x_of({3}));
  require_matches_cpu([](const NodeRef& v) { return dist::copy_to_ranks(v); }, x_of({3}));
}

TEST_CASE("NCCL allreduce_ and bcast_ in place on the device; int64 SUM too") {
  const Tensor x = x_of({6});
  Tensor on_gpu = x.to(gpu()), on_cpu = x.clone();
  dist::allreduce_(on_gpu, dist::ReduceOp::Avg, W());
  dist::allreduce_(on_cpu, dist::ReduceOp::Avg, W());
  require_same(on_gpu, on_cpu, "allreduce_ AVG");
  dist::bcast_(on_gpu, size() - 1, W());
  dist::bcast_(on_cpu, size() - 1, W());
  require_same(on_gpu, on_cpu, "bcast_");
  Tensor n = Tensor::full({2}, rank() + 1.0).to(DType::Int64);
  Tensor n_gpu = n.to(gpu());
  dist::allreduce_(n, dist::ReduceOp::Sum, W());
  dist::allreduce_(n_gpu, dist::ReduceOp::Sum, W());
  REQUIRE(n_gpu.to_doubles() == n.to_doubles());
}

TEST_CASE("NCCL: an empty tensor, and an int64 AVG refused as staged") {
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v); }, Tensor::zeros({0, 3}));
  Tensor n = Tensor::zeros({2}, DType::Int64, gpu());
  REQUIRE_THROWS_AS(dist::allreduce_(n, dist::ReduceOp::Avg, W()), TypeError);
}

TEST_CASE("NCCL: a tensor on another device than the communicator's is a UsageError naming both") {
  if (cuda::device_count() < size() + 1) return;  // needs a spare device
  Tensor mine = Tensor::ones({2}).to(gpu());
  dist::allreduce_(mine, dist::ReduceOp::Sum, W());  // binds the NCCL side to gpu(), if not yet
  Tensor other = Tensor::ones({2}).to(Device::cuda(size()));
  // Every rank takes the same path, so the error is every rank's and nobody waits.
  REQUIRE_THROWS_WITH(dist::allreduce_(other, dist::ReduceOp::Sum, W()),
                      Contains("bound to " + gpu().str()) && Contains("cuda:" + std::to_string(size())));
}

TEST_CASE("DataParallel with NCCL reduces the buckets on the device: the CPU's gradients") {
  nn::manual_seed(3);
  nn::Linear on_cpu(4, 3);
  nn::manual_seed(3);
  nn::Linear on_gpu(4, 3);
  on_gpu.to(gpu());
  dist::DataParallel dp_cpu(on_cpu), dp_gpu(on_gpu);
  const Tensor x = x_of({5, 4}).to(DType::Float32);
  for (auto [model, input] : {std::pair<nn::Linear*, Tensor>{&on_cpu, x}, {&on_gpu, x.to(gpu())}}) {
    ModuleGraph out = (*model)(input);
    ModuleGraph loss(op::sum(op::mult(out.root(), out.root())));
    loss.back();
  }
  dp_cpu.average_gradients();
  dp_gpu.average_gradients();
  const auto a = on_gpu.parameters(), b = on_cpu.parameters();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) require_same(a[i].grad(), b[i].grad(), "parameter gradient");
}

int main(int argc, char** argv) {
  using namespace zkynet;
  dist::init(&argc, &argv);
  const char* why = nullptr;
  if (!dist::nccl_built()) {
    why = "this build has no NCCL";
  } else if (!cuda::is_available()) {
    why = "no CUDA device answers on this machine";
  } else if (cuda::device_count() < W().size()) {
    why = "fewer CUDA devices than ranks (NCCL needs one device per rank)";
  }
  if (why != nullptr) {
    if (W().rank() == 0) std::printf("skipped: %s (%d rank(s))\n", why, W().size());
    return 77;
  }
  W().set_cuda_collectives(dist::CudaCollectives::Nccl);
  std::vector<char*> args(argv, argv + argc);
  char quiet[] = "--reporter=compact";
  if (W().rank() != 0) args.push_back(quiet);
  const int failed = Catch::Session().run(static_cast<int>(args.size()), args.data());
  Tensor any = Tensor::scalar(failed, DType::Int64);
  dist::allreduce_(any, dist::ReduceOp::Max, W());  // a CPU tensor: MPI
  return any.item() > 0 ? 1 : 0;
}
