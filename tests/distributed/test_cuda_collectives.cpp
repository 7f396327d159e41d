// The choice of backend for CUDA tensors' collectives (Communicator::set_cuda_collectives),
// on the CPU: what it reports, what it refuses, and that CPU tensors never leave MPI. The NCCL
// collectives themselves need a device each: tests/distributed/test_cuda_nccl.cpp.
#include <catch2/catch.hpp>

#include <zkynet/distributed.h>
#include <zkynet/ops/ops.h>

#include "distributed/helpers.h"

namespace {

using namespace zkynet;
using Catch::Matchers::Contains;
using testing::rank;
using testing::W;

// Restores the staged default, whatever the case did.
struct StagedAfter {
  dist::Communicator comm;
  ~StagedAfter() { comm.set_cuda_collectives(dist::CudaCollectives::Staged); }
};

}  // namespace

TEST_CASE("CUDA collectives default to staged, on the world and on a split") {
  REQUIRE(W().cuda_collectives() == dist::CudaCollectives::Staged);
  REQUIRE(W().split(rank() % 2).cuda_collectives() == dist::CudaCollectives::Staged);
  REQUIRE(dist::cuda_collectives_name(dist::CudaCollectives::Staged) == "staged");
  REQUIRE(dist::cuda_collectives_name(dist::CudaCollectives::Nccl) == "nccl");
}

TEST_CASE("choosing NCCL: kept per communicator where built, a UsageError naming the communicator elsewhere") {
  const dist::Communicator half = W().split(rank() % 2);
  const StagedAfter restore{half};
  if (!dist::nccl_built()) {
    REQUIRE_THROWS_AS(half.set_cuda_collectives(dist::CudaCollectives::Nccl), UsageError);
    REQUIRE_THROWS_WITH(half.set_cuda_collectives(dist::CudaCollectives::Nccl),
                        Contains("set_cuda_collectives(nccl) on " + half.name()) && Contains("has no NCCL"));
    REQUIRE(half.cuda_collectives() == dist::CudaCollectives::Staged);
    return;
  }
  half.set_cuda_collectives(dist::CudaCollectives::Nccl);
  REQUIRE(half.cuda_collectives() == dist::CudaCollectives::Nccl);
  REQUIRE(W().cuda_collectives() == dist::CudaCollectives::Staged);  // the choice is the communicator's
}

TEST_CASE("CPU tensors stay on MPI whatever the choice: allreduce value and gradient as staged") {
  const dist::Communicator half = W().split(rank() % 2);
  const StagedAfter restore{half};
  if (dist::nccl_built()) half.set_cuda_collectives(dist::CudaCollectives::Nccl);
  const Tensor x = testing::rank_tensor({3}, rank());
  const auto f = [&](const NodeRef& v) { return op::sum(op::mult(dist::allreduce(v, dist::ReduceOp::Sum, half), v)); };
  // d/dx_r of sum_q <S, x_q> with S = sum_q x_q: S + sum_q x_q = 2 S on every rank.
  Tensor s = x.clone();
  dist::allreduce_(s, dist::ReduceOp::Sum, half);
  const Tensor g = testing::rank_grad(f, x);
  for (std::int64_t i = 0; i < 3; ++i) CHECK(g.at({i}) == Approx(2 * s.at({i})).epsilon(1e-14));
}
