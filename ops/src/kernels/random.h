// Counter-based random numbers: the n-th number of a stream depends only on (key, n), so the CPU
// loop and a CUDA kernel produce the same numbers in any order, in parallel. An operator takes
// one 64-bit key from its Generator per call (the generator moves on; the same seed gives the
// same keys) and the kernels below expand it.
#pragma once

#include <zkynet/framework/tensor.h>
#include <zkynet/internal/host_device.h>

#include <cstdint>

namespace zkynet::kernels {

// The n-th output of splitmix64 started at `key` (Steele, Lea and Flood, "Fast splittable
// pseudorandom number generators", 2014; it passes BigCrush): the 64-bit finalizer of
// key + (n + 1) * the golden gamma.
ZKYNET_HD inline std::uint64_t counter_random(std::uint64_t key, std::uint64_t n) {
  std::uint64_t z = key + (n + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits: exact in double on every device.
ZKYNET_HD inline double counter_uniform(std::uint64_t key, std::uint64_t n) {
  return static_cast<double>(counter_random(key, n) >> 11) * 0x1.0p-53;
}

// dropout's mask on `device`: element i is `scale` (rounded to dtype) where
// counter_uniform(key, i) < keep, else 0.
Tensor dropout_mask(const Shape& shape, DType dtype, Device device, double keep, double scale, std::uint64_t key);

}  // namespace zkynet::kernels
