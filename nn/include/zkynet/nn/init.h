// Seeded parameter initializers with PyTorch's defaults and torch.nn.init's rules.
//
//   nn::manual_seed(0);                                  // reproducible layers
//   Tensor w = nn::init::kaiming_uniform({out, in}, gen);   // U(-1/sqrt(in), 1/sqrt(in)): nn.Linear's default
//   Tensor c = nn::init::kaiming_normal({16, 3, 3, 3}, gen, {.mode = nn::init::FanMode::FanOut,
//                                                           .nonlinearity = nn::init::Nonlinearity::ReLU});
//   Tensor x = nn::init::xavier_uniform({256, 128}, gen, nn::init::calculate_gain(nn::init::Nonlinearity::Tanh));
//
// Fans follow torch.nn.init._calculate_fan_in_and_fan_out: for a shape (O, I, k1, k2, ...)
// (a Linear's (out, in) or a convolution's (out, in / groups, kH, kW)), fan_in = I * k1 * k2 ...
// and fan_out = O * k1 * k2 ...; fewer than 2 dimensions is a ShapeError, as in torch.
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstdint>
#include <optional>

namespace zkynet::nn {

// The generator layers draw from when none is given; manual_seed resets it.
Generator& default_generator();
void manual_seed(std::uint64_t seed);

namespace init {

// PyTorch's nn.Linear default: kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// fan_in being the last dimension of `shape` (torch's fan_in for 2-d shapes; for convolution
// weights use the KaimingOptions overload, which computes torch's fans).
Tensor kaiming_uniform(const Shape& shape, Generator& gen, DType dtype = DType::Float32);
// U(-bound, bound).
Tensor uniform(const Shape& shape, double bound, Generator& gen, DType dtype = DType::Float32);
// N(mean, std^2).
Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype = DType::Float32);

// torch.nn.init.calculate_gain's nonlinearities (Linear also stands for the conv*/identity ones).
enum class Nonlinearity { Linear, Sigmoid, Tanh, ReLU, LeakyReLU, SELU };
enum class FanMode { FanIn, FanOut };

// torch.nn.init.calculate_gain: Linear and Sigmoid 1, Tanh 5/3, ReLU sqrt(2), SELU 3/4,
// LeakyReLU sqrt(2 / (1 + slope^2)) with slope = `param` (0.01 when not given).
double calculate_gain(Nonlinearity nonlinearity, std::optional<double> param = std::nullopt);

struct Fans {
  std::int64_t fan_in = 0;
  std::int64_t fan_out = 0;
};
// torch.nn.init._calculate_fan_in_and_fan_out (see above).
Fans calculate_fans(const Shape& shape);

// torch.nn.init.kaiming_uniform_ / kaiming_normal_ (He et al. 2015) with torch's defaults:
// std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a), fan = fan_in or fan_out.
struct KaimingOptions {
  double a = 0.0;  // the negative slope of the rectifier after this layer (LeakyReLU only)
  FanMode mode = FanMode::FanIn;
  Nonlinearity nonlinearity = Nonlinearity::LeakyReLU;
  DType dtype = DType::Float32;
};
// U(-bound, bound) with bound = sqrt(3) * std. With {.a = std::sqrt(5.0)} this is the default
// initialization of torch's nn.Linear and nn.Conv2d weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
// (Write the options out: `kaiming_uniform(shape, gen, {})` is ambiguous with the dtype overload.)
Tensor kaiming_uniform(const Shape& shape, Generator& gen, const KaimingOptions& options);
// N(0, std^2).
Tensor kaiming_normal(const Shape& shape, Generator& gen, const KaimingOptions& options = {});

// torch.nn.init.xavier_uniform_ / xavier_normal_ (Glorot & Bengio 2010):
// std = gain * sqrt(2 / (fan_in + fan_out)); uniform on [-sqrt(3) std, sqrt(3) std], or N(0, std^2).
Tensor xavier_uniform(const Shape& shape, Generator& gen, double gain = 1.0, DType dtype = DType::Float32);
Tensor xavier_normal(const Shape& shape, Generator& gen, double gain = 1.0, DType dtype = DType::Float32);

}  // namespace init

}  // namespace zkynet::nn
