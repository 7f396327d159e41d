#include <zkynet/framework/error.h>
#include <zkynet/nn/init.h>

#include <cmath>
#include <string>

namespace zkynet::nn {

Generator& default_generator() {
  thread_local Generator gen(0);
  return gen;
}

void manual_seed(std::uint64_t seed) { default_generator() = Generator(seed); }

namespace init {

Tensor uniform(const Shape& shape, double bound, Generator& gen, DType dtype) {
  return Tensor::uniform(shape, -bound, bound, gen, dtype);
}

Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype) {
  if (!(std >= 0.0)) throw UsageError("init::normal: std must be non-negative, got " + std::to_string(std));
  Tensor t = Tensor::randn(shape, gen, dtype);  // draws as Tensor::randn does: normal(0, 1) == randn
  if (mean == 0.0 && std == 1.0) return t;
  if (dtype == DType::Float32) {
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(mean + std * p[i]);
  } else {
    double* p = t.data<double>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = mean + std * p[i];
  }
  return t;
}

Tensor kaiming_uniform(const Shape& shape, Generator& gen, DType dtype) {
  const std::int64_t fan_in = shape.empty() ? 1 : shape.back();
  return uniform(shape, fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0, gen, dtype);
}

double calculate_gain(Nonlinearity nonlinearity, std::optional<double> param) {
  switch (nonlinearity) {
    case Nonlinearity::Linear:
    case Nonlinearity::Sigmoid:
      return 1.0;
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::ReLU:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU: {
      const double slope = param.value_or(0.01);
      return std::sqrt(2.0 / (1.0 + slope * slope));
    }
    case Nonlinearity::SELU:
      return 3.0 / 4.0;
  }
  throw UsageError("init::calculate_gain: unknown nonlinearity");
}

Fans calculate_fans(const Shape& shape) {
  if (shape.size() < 2) {
    throw ShapeError("init: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions (shape " +
                     shape_str(shape) + ")");
  }
  std::int64_t receptive_field = 1;
  for (std::size_t i = 2; i < shape.size(); ++i) receptive_field *= shape[i];
  return {shape[1] * receptive_field, shape[0] * receptive_field};
}

namespace {

double kaiming_std(const Shape& shape, const KaimingOptions& options, const char* what) {
  const Fans fans = calculate_fans(shape);
  const std::int64_t fan = options.mode == FanMode::FanIn ? fans.fan_in : fans.fan_out;
  if (fan == 0) {
    // torch warns "Initializing zero-element tensors is a no-op" and leaves them empty
    if (shape_numel(shape) == 0) return 0.0;
    throw ShapeError(std::string("init::") + what + ": zero fan for shape " + shape_str(shape));
  }
  return calculate_gain(options.nonlinearity, options.a) / std::sqrt(static_cast<double>(fan));
}

double xavier_std(const Shape& shape, double gain, const char* what) {
  const Fans fans = calculate_fans(shape);
  if (fans.fan_in + fans.fan_out == 0) {
    if (shape_numel(shape) == 0) return 0.0;
    throw ShapeError(std::string("init::") + what + ": zero fans for shape " + shape_str(shape));
  }
  return gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out));
}

}  // namespace

Tensor kaiming_uniform(const Shape& shape, Generator& gen, const KaimingOptions& options) {
  return uniform(shape, std::sqrt(3.0) * kaiming_std(shape, options, "kaiming_uniform"), gen, options.dtype);
}

Tensor kaiming_normal(const Shape& shape, Generator& gen, const KaimingOptions& options) {
  return normal(shape, 0.0, kaiming_std(shape, options, "kaiming_normal"), gen, options.dtype);
}

Tensor xavier_uniform(const Shape& shape, Generator& gen, double gain, DType dtype) {
  return uniform(shape, std::sqrt(3.0) * xavier_std(shape, gain, "xavier_uniform"), gen, dtype);
}

Tensor xavier_normal(const Shape& shape, Generator& gen, double gain, DType dtype) {
  return normal(shape, 0.0, xavier_std(shape, gain, "xavier_normal"), gen, dtype);
}

}  // namespace init
}  // namespace zkynet::nn
