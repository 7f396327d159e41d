#include <zkynet/framework/error.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/ops/ops.h>

#include <cmath>

namespace zkynet::nn {

Linear::Linear(std::int64_t in_features, std::int64_t out_features, LinearOptions options)
    : Module({Variable("x")}), in_(in_features), out_(out_features), bias_(options.bias) {
  if (in_features < 0 || out_features < 0) {
    throw ShapeError("Linear(" + std::to_string(in_features) + ", " + std::to_string(out_features) +
                     "): feature counts must not be negative");
  }
  checked_nbytes({out_features, in_features}, options.dtype,
                 "Linear(" + std::to_string(in_features) + ", " + std::to_string(out_features) + ")");
  Generator& gen = options.generator ? *options.generator : default_generator();
  register_parameter("weight", init::kaiming_uniform({out_features, in_features}, gen, options.dtype));
  if (bias_) {
    register_parameter("bias", init::uniform({out_features}, in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0, gen,
                                             options.dtype))
        .is_bias(true);
  }
}

NodeRef Linear::call(const NodeRef& x) {
  return bias_ ? op::linear(x, param("weight"), param("bias")) : op::linear(x, param("weight"));
}

}  // namespace zkynet::nn
