#include <zkynet/nn/init.h>

#include <cmath>

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

Tensor kaiming_uniform(const Shape& shape, Generator& gen, DType dtype) {
  const std::int64_t fan_in = shape.empty() ? 1 : shape.back();
  return uniform(shape, fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0, gen, dtype);
}

}  // namespace init
}  // namespace zkynet::nn
