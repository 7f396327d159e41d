// The CUDA suite's entry: without a device (no GPU, no driver, or a build without CUDA) it
// reports "skipped" through CTest's SKIP_RETURN_CODE, never "passed".
#define CATCH_CONFIG_RUNNER
#include <zkynet/framework/cuda.h>

#include <catch2/catch.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (!zkynet::cuda::is_available()) {
    std::printf("skipped: no CUDA device answers on this machine (built with CUDA: %s)\n",
                zkynet::cuda::built() ? "yes" : "no");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
