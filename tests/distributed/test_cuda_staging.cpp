// Communication operators on CUDA tensors: MPI (Debian's MPICH, not CUDA-aware) gets host
// copies (distributed/src/mpi_internal.h: to_host / to_device), and every result and gradient
// comes back on the tensor's device with the CPU's values. Each case runs the same call on the
// CPU and on CUDA and compares values and gradients. Its own binary: without a device it exits
// 77 (CTest: skipped). Runs on 1 rank (a communicator of size 1 still stages every call) or
// under mpiexec -n N; tools/gpu_check.sh runs both where the bundle carries mpiexec.
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
using testing::rank;
using testing::size;
using testing::W;

const Device kGpu = Device::cuda();

void require_same(const Tensor& on_gpu, const Tensor& on_cpu, const char* what) {
  INFO(what);
  REQUIRE(on_gpu.device() == kGpu);
  REQUIRE(on_gpu.shape() == on_cpu.shape());
  const std::vector<double> a = on_gpu.to_doubles(), b = on_cpu.to_doubles();
  // float64: the CPU's numbers to rounding (device sums run in another order); float32: cuBLAS's.
  const double tol = on_cpu.dtype() == DType::Float64 ? 1e-12 : 1e-5;
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(tol).margin(tol));
}

// f(x) is a communication call; the objective is sum(f(x) * w) with rank-dependent weights on
// x's device. Value and gradient of the CUDA call must equal the CPU call's, on the device.
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
  const Tensor g_gpu = testing::rank_grad(body(out_gpu), x.to(kGpu));
  require_same(out_gpu, out_cpu, "value");
  require_same(g_gpu, g_cpu, "gradient");
}

Tensor x_of(const Shape& shape) { return testing::rank_tensor(shape, rank()); }

}  // namespace

TEST_CASE("allreduce SUM on CUDA: value and gradient on the device, the CPU's numbers") {
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v, dist::ReduceOp::Sum); }, x_of({3, 4}));
}

TEST_CASE("allreduce MAX on CUDA: the winners' gradient is routed through the host") {
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v, dist::ReduceOp::Max); }, x_of({5}));
}

TEST_CASE("allreduce PROD on CUDA: the others' product is formed through the host") {
  require_matches_cpu([](const NodeRef& v) { return dist::allreduce(v, dist::ReduceOp::Prod); }, x_of({5}));
}

TEST_CASE("reduce AVG to rank 0 on CUDA: non-root zeros on the device too") {
  require_matches_cpu([](const NodeRef& v) { return dist::reduce(v, dist::ReduceOp::Avg, 0); }, x_of({2, 3}));
}

TEST_CASE("bcast from the last rank on CUDA") {
  require_matches_cpu([](const NodeRef& v) { return dist::bcast(v, size() - 1); }, x_of({4}));
}

TEST_CASE("allgather on CUDA: its reduce-scatter adjoint lands on the device") {
  require_matches_cpu([](const NodeRef& v) { return dist::allgather(v, 1); }, x_of({2, 3}));
}

TEST_CASE("gather to rank 0 on CUDA: the scatter adjoint lands on the device") {
  require_matches_cpu([](const NodeRef& v) { return dist::gather(v, 0, 0); }, x_of({2, 3}));
}

TEST_CASE("scatter from rank 0 on CUDA") {
  require_matches_cpu([](const NodeRef& v) { return dist::scatter(v, 0, 2, 0); }, x_of({2 * size(), 3}));
}

TEST_CASE("alltoall on CUDA") {
  require_matches_cpu([](const NodeRef& v) { return dist::alltoall(v, 1, 0, 2); }, x_of({2 * size(), 3}));
}

TEST_CASE("isend / irecv / wait around the ring on CUDA: the message and its gradient return to the device") {
  const int next = (rank() + 1) % size(), prev = (rank() + size() - 1) % size();
  require_matches_cpu(
      [&](const NodeRef& v) {
        const dist::WaitHandle out = dist::isend(v, next, 5);
        const dist::WaitHandle in = dist::irecv(op::mult(v, NodeRef(Tensor::scalar(0.0).to(v.value().device()))), prev, 5);
        const NodeRef received = dist::wait(in);
        return dist::join_dummies(received, {dist::wait(out)});
      },
      x_of({3}));
}

TEST_CASE("send / recv between neighbours on CUDA (2 ranks or more)") {
  if (size() < 2) return;  // a blocking send to oneself waits for a receive that comes later
  require_matches_cpu(
      [](const NodeRef& v) {
        if (rank() % 2 == 0 && rank() + 1 < size()) return dist::send(v, rank() + 1, 3);
        if (rank() % 2 == 1) return dist::recv(v, rank() - 1, 3);
        return v;
      },
      x_of({4}));
}

TEST_CASE("allreduce_ and bcast_ write a CUDA tensor in place") {
  const Tensor x = x_of({6});
  Tensor on_gpu = x.to(kGpu), on_cpu = x.clone();
  dist::allreduce_(on_gpu, dist::ReduceOp::Avg, W());
  dist::allreduce_(on_cpu, dist::ReduceOp::Avg, W());
  require_same(on_gpu, on_cpu, "allreduce_ AVG");
  dist::bcast_(on_gpu, size() - 1, W());
  dist::bcast_(on_cpu, size() - 1, W());
  require_same(on_gpu, on_cpu, "bcast_");
}

TEST_CASE("DataParallel averages CUDA gradients through host buckets and leaves them on the device") {
  nn::manual_seed(3);
  nn::Linear on_cpu(4, 3);
  nn::manual_seed(3);
  nn::Linear on_gpu(4, 3);
  on_gpu.to(kGpu);
  dist::DataParallel dp_cpu(on_cpu), dp_gpu(on_gpu);
  const Tensor x = x_of({5, 4}).to(DType::Float32);  // Linear's dtype
  for (auto [model, input] : {std::pair<nn::Linear*, Tensor>{&on_cpu, x}, {&on_gpu, x.to(kGpu)}}) {
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
  zkynet::dist::init(&argc, &argv);
  if (!zkynet::cuda::is_available()) {
    if (W().rank() == 0) {
      std::printf("skipped: no CUDA device answers on this machine (built with CUDA: %s)\n",
                  zkynet::cuda::built() ? "yes" : "no");
    }
    return 77;
  }
  std::vector<char*> args(argv, argv + argc);
  char quiet[] = "--reporter=compact";
  if (W().rank() != 0) args.push_back(quiet);
  const int failed = Catch::Session().run(static_cast<int>(args.size()), args.data());
  zkynet::Tensor any = zkynet::Tensor::scalar(failed, zkynet::DType::Int64);
  zkynet::dist::allreduce_(any, zkynet::dist::ReduceOp::Max, W());
  return any.item() > 0 ? 1 : 0;
}
