#include <zkynet/framework/error.h>
#include <zkynet/nn/pooling.h>

#include <string>

namespace zkynet::nn {

namespace {

void check_kernel(const char* layer, IntPair kernel) {
  if (kernel.h <= 0 || kernel.w <= 0) {
    throw ShapeError(std::string(layer) + "(" + std::to_string(kernel.h) + ", " + std::to_string(kernel.w) +
                     "): the kernel size must be positive");
  }
}

// An unset stride is op's unset stride (the kernel size); a given one, 0 included, is passed on.
op::PoolStride pool_stride(const std::optional<IntPair>& stride) {
  return stride ? op::PoolStride(stride->array()) : op::PoolStride();
}

}  // namespace

MaxPool2d::MaxPool2d(IntPair kernel_size, MaxPool2dOptions options)
    : Module({Variable("x")}),
      kernel_(kernel_size),
      options_{pool_stride(options.stride), options.padding.array(), options.dilation.array()} {
  check_kernel("MaxPool2d", kernel_);
}

NodeRef MaxPool2d::call(const NodeRef& x) { return op::max_pool2d(x, kernel_.array(), options_); }

AvgPool2d::AvgPool2d(IntPair kernel_size, AvgPool2dOptions options)
    : Module({Variable("x")}),
      kernel_(kernel_size),
      options_{pool_stride(options.stride), options.padding.array(), options.count_include_pad} {
  check_kernel("AvgPool2d", kernel_);
}

NodeRef AvgPool2d::call(const NodeRef& x) { return op::avg_pool2d(x, kernel_.array(), options_); }

}  // namespace zkynet::nn
