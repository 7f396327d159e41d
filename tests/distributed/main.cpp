// Catch2 under mpiexec: every rank runs the same cases in the same order; the job fails
// when any rank fails. Ranks other than 0 report only failures.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

// The umbrella header: it must compile on its own.
#include <zkynet/distributed.h>

#include <vector>

int main(int argc, char** argv) {
  zkynet::dist::init(&argc, &argv);
  const auto world = zkynet::dist::world();
  std::vector<char*> args(argv, argv + argc);
  char quiet[] = "--reporter=compact";
  if (world.rank() != 0) args.push_back(quiet);
  const int failed = Catch::Session().run(static_cast<int>(args.size()), args.data());
  zkynet::Tensor any = zkynet::Tensor::scalar(failed, zkynet::DType::Int64);
  zkynet::dist::allreduce_(any, zkynet::dist::ReduceOp::Max, world);
  return any.item() > 0 ? 1 : 0;
}
