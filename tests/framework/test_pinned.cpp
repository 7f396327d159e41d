// Tensor::pin_memory / is_pinned / to(device, non_blocking) where no CUDA device answers (this
// machine, CI): PyTorch's behaviour, a clear error and nothing pinned. The GPU half is in
// tests/cuda/test_pinned.cpp.
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/tensor.h>

#include <catch2/catch.hpp>

#include <string>

using namespace zkynet;

TEST_CASE("pin_memory without a CUDA device throws a clear error", "[pinned]") {
  if (cuda::is_available()) return;  // the CUDA suite checks the GPU side
  const Tensor x = {{1.0, 2.0}, {3.0, 4.0}};
  try {
    (void)x.pin_memory();
    FAIL("pin_memory succeeded without a device");
  } catch (const UsageError& e) {
    CHECK_THAT(e.what(), Catch::Matchers::StartsWith("pin_memory needs a CUDA device: "));
  }
}

TEST_CASE("is_pinned is false for ordinary and undefined tensors", "[pinned]") {
  CHECK_FALSE(Tensor({1.0, 2.0}).is_pinned());
  CHECK_FALSE(Tensor().is_pinned());
  CHECK_FALSE(Tensor::zeros({0}).is_pinned());
}

TEST_CASE("a non-blocking copy to the host's own device is the tensor itself", "[pinned]") {
  const Tensor x = {1.0, 2.0, 3.0};
  const Tensor y = x.to(Device::cpu(), true);
  CHECK(y.shares_storage_with(x));
}

TEST_CASE("a non-blocking copy to a missing CUDA device fails like the blocking one", "[pinned]") {
  if (cuda::is_available()) return;
  const Tensor x = {1.0, 2.0};
  CHECK_THROWS_AS(x.to(Device::cuda(), true), Error);
}
