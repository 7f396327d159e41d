// Seeded parameter initializers with PyTorch's defaults.
//
//   nn::manual_seed(0);                                  // reproducible layers
//   Tensor w = nn::init::kaiming_uniform({out, in}, gen);   // U(-1/sqrt(in), 1/sqrt(in)): nn.Linear's default
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstdint>

namespace zkynet::nn {

// The generator layers draw from when none is given; manual_seed resets it.
Generator& default_generator();
void manual_seed(std::uint64_t seed);

namespace init {
// PyTorch's nn.Linear default: kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// fan_in being the last dimension of `shape`.
Tensor kaiming_uniform(const Shape& shape, Generator& gen, DType dtype = DType::Float32);
// U(-bound, bound).
Tensor uniform(const Shape& shape, double bound, Generator& gen, DType dtype = DType::Float32);
}  // namespace init

}  // namespace zkynet::nn
