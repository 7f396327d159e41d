// A job where one rank fails while the others wait in a collective: run under mpiexec by
// check_fault.py, which requires the whole job to end non-zero within seconds.
//   fault_rank_fails throw      rank 1 throws an exception nobody catches
//   fault_rank_fails exit       rank 1 returns 3 from main
#include <zkynet/distributed/eager.h>

#include <stdexcept>
#include <string>

int main(int argc, char** argv) {
  zkynet::dist::init(&argc, &argv);
  const auto world = zkynet::dist::world();
  const std::string mode = argc > 1 ? argv[1] : "throw";
  if (world.rank() == 1) {
    if (mode == "throw") throw std::runtime_error("rank 1 fails on purpose");
    return 3;
  }
  zkynet::Tensor t = zkynet::Tensor::ones({4});
  zkynet::dist::allreduce_(t, zkynet::dist::ReduceOp::Sum, world);  // never completes: rank 1 is gone
  return 0;
}
