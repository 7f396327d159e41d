#include <zkynet/framework/error.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/init.h>

#include <cmath>
#include <string>

namespace zkynet::nn {

namespace {

std::string pair_str(IntPair p) { return "(" + std::to_string(p.h) + ", " + std::to_string(p.w) + ")"; }

}  // namespace

Conv2d::Conv2d(std::int64_t in_channels, std::int64_t out_channels, IntPair kernel_size, Conv2dOptions options)
    : Module({Variable("x")}),
      in_(in_channels),
      out_(out_channels),
      kernel_(kernel_size),
      conv_{options.stride.array(), options.padding.array(), options.dilation.array(), options.groups},
      bias_(options.bias) {
  const std::string what = "Conv2d(" + std::to_string(in_channels) + ", " + std::to_string(out_channels) + ", " +
                           pair_str(kernel_size) + ")";
  if (in_channels <= 0 || out_channels <= 0) throw ShapeError(what + ": channel counts must be positive");
  if (kernel_.h <= 0 || kernel_.w <= 0) throw ShapeError(what + ": the kernel size must be positive");
  if (options.stride.h <= 0 || options.stride.w <= 0) throw ShapeError(what + ": the stride must be positive");
  if (options.padding.h < 0 || options.padding.w < 0) throw ShapeError(what + ": the padding must be non-negative");
  if (options.dilation.h <= 0 || options.dilation.w <= 0) throw ShapeError(what + ": the dilation must be positive");
  if (options.groups <= 0) throw ShapeError(what + ": groups must be positive");
  if (in_channels % options.groups != 0) throw ShapeError(what + ": in_channels must be divisible by groups");
  if (out_channels % options.groups != 0) throw ShapeError(what + ": out_channels must be divisible by groups");
  if (!is_floating(options.dtype)) throw TypeError(what + ": parameters must be float32 or float64");

  Generator& gen = options.generator ? *options.generator : default_generator();
  const Shape weight_shape{out_channels, in_channels / options.groups, kernel_.h, kernel_.w};
  // torch's reset_parameters(): kaiming_uniform_(weight, a=sqrt(5)), then the bias from
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  register_parameter("weight", init::kaiming_uniform(weight_shape, gen, {.a = std::sqrt(5.0), .dtype = options.dtype}));
  if (bias_) {
    const std::int64_t fan_in = init::calculate_fans(weight_shape).fan_in;
    register_parameter("bias", init::uniform({out_channels}, 1.0 / std::sqrt(static_cast<double>(fan_in)), gen,
                                             options.dtype))
        .is_bias(true);
  }
}

NodeRef Conv2d::call(const NodeRef& x) {
  return op::conv2d(x, param("weight"), bias_ ? NodeRef(param("bias")) : NodeRef(), conv_);
}

}  // namespace zkynet::nn
