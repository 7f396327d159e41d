#include <zkynet/framework/error.h>
#include <zkynet/nn/dropout.h>
#include <zkynet/nn/init.h>
#include <zkynet/ops/normalization.h>

#include <string>

namespace zkynet::nn {

Dropout::Dropout(double p, Generator* generator) : Module({Variable("x")}), p_(p), generator_(generator) {
  if (!(p >= 0.0 && p <= 1.0)) {
    throw UsageError("Dropout(" + std::to_string(p) + "): the probability p must lie in [0, 1]");
  }
}

NodeRef Dropout::call(const NodeRef& x) {
  return op::dropout(x, p_, is_training(), generator_ ? *generator_ : default_generator());
}

}  // namespace zkynet::nn
