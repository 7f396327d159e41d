// Jobs that go wrong on purpose, run under mpiexec by check_fault.py, which requires each to
// end within seconds, with the status and the message it expects (never a hang):
//   fault_job throw                 rank 1 throws an exception nobody catches
//   fault_job exit                  rank 1 returns 3 from main
//   fault_job barrier_vs_allreduce  rank 0 calls barrier() while rank 1 calls allreduce_
//   fault_job finish_early          rank 1 returns 0 while rank 0 waits in allreduce_
//   fault_job skip_back             rank 1 skips back() and starts the next step
//   fault_job no_grad_collective    rank 1 computes a step's allreduce under no_grad, so its
//                                   back() has no communication while rank 0's has
//   fault_job skip_one              rank 1 skips the first of two identical allreduces
//   fault_job timeout               rank 0 waits in allreduce_, rank 1 computes for long;
//                                   the timeout comes from ZKYNET_DIST_TIMEOUT or, when unset, 1 s
//   fault_job timeout_recv          rank 0 waits in a recv from 1, rank 1 in barrier()
//   fault_job others_go_on          no fault (3 ranks): rank 2 finishes first while ranks 0 and 1
//                                   go on communicating without it, past the 1 s grace; exits 0
#include <zkynet/distributed/eager.h>
#include <zkynet/distributed/ops.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/session.h>
#include <zkynet/ops/ops.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

using namespace zkynet;

namespace {

// One training-like step: loss = sum(allreduce(x) * x), recorded in a module call. With
// `local_collective`, the allreduce is computed under no_grad: the graph keeps no
// communication node, so back() communicates nothing.
ModuleGraph step(const Tensor& x, bool local_collective = false) {
  Lambda loss({"x"}, [&](std::span<const NodeRef> in) {
    NodeRef total;
    if (local_collective) {
      NoGradGuard no_grad;
      total = dist::allreduce(in[0]);
    } else {
      total = dist::allreduce(in[0]);
    }
    return op::sum(op::mult(total, in[0]));
  }, "Loss");
  const std::vector<NodeRef> args{NodeRef(x)};
  return loss.invoke(args);
}

}  // namespace

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  const auto world = dist::world();
  const int rank = world.rank();
  const std::string mode = argc > 1 ? argv[1] : "throw";
  Tensor t = Tensor::ones({4});
  const Tensor x = Tensor::full({3}, rank + 1.0);

  if (mode == "throw" || mode == "exit") {
    if (rank == 1) {
      if (mode == "throw") throw std::runtime_error("rank 1 fails on purpose");
      return 3;
    }
    dist::allreduce_(t, dist::ReduceOp::Sum, world);  // never completes: rank 1 is gone
  } else if (mode == "barrier_vs_allreduce") {
    if (rank == 0) {
      world.barrier();
    } else {
      dist::allreduce_(t, dist::ReduceOp::Sum, world);
    }
  } else if (mode == "finish_early") {
    if (rank == 1) return 0;
    dist::allreduce_(t, dist::ReduceOp::Sum, world);
  } else if (mode == "skip_back" || mode == "no_grad_collective") {
    for (int i = 0; i < 2; ++i) {
      ModuleGraph g = step(x, mode == "no_grad_collective" && rank == 1);
      if (mode == "no_grad_collective" || rank == 0) g.back();
    }
  } else if (mode == "skip_one") {
    Lambda loss({"x"}, [&](std::span<const NodeRef> in) {
      NodeRef first = in[0];
      if (rank == 0) first = dist::allreduce(in[0]);  // rank 1 skips it
      const NodeRef second = dist::allreduce(op::mult(in[0], 2.0));
      return op::sum(op::mult(first, second));
    }, "TwoSums");
    const std::vector<NodeRef> args{NodeRef(x)};
    loss.invoke(args).back();
  } else if (mode == "timeout" || mode == "timeout_recv") {
    if (std::getenv("ZKYNET_DIST_TIMEOUT") == nullptr) dist::set_timeout(1.0);
    if (mode == "timeout") {
      if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(30));  // computing, for too long
      dist::allreduce_(t, dist::ReduceOp::Sum, world);
    } else if (rank == 0) {
      dist::recv(Tensor::zeros({2}), 1, 0, world);
    } else {
      world.barrier();
    }
  } else if (mode == "others_go_on") {
    const auto pair = world.split(rank < 2 ? 0 : 1);
    if (rank == 2) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    dist::allreduce_(t, dist::ReduceOp::Sum, pair);
    const Tensor got = rank == 0 ? dist::send(x, 1, 5, world).value() : dist::recv(x, 0, 5, world).value();
    std::printf("rank %d went on without rank 2: %g %g\n", rank, t.to_doubles()[0], got.to_doubles()[0]);
    return 0;
  } else {
    std::fprintf(stderr, "fault_job: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  std::printf("rank %d: unreachable, the job went on\n", rank);
  return 0;
}
