// Jacobian-based functors written as a user would, registered for CUDA in user_functors.cu and
// called from the operator table (test_operators.cpp): the same type on both sides.
#pragma once

#include <zkynet/framework/host_device.h>
#include <zkynet/framework/shape.h>

#include <array>
#include <cmath>
#include <string_view>

namespace zkynet_test {

struct Softplus {
  static constexpr std::string_view name = "softplus";
  template <class S>
  ZKYNET_HD S operator()(S x) const {
    using std::exp;
    using std::log;
    return log(S(1) + exp(x));
  }
};

struct MulAdd {
  static constexpr std::string_view name = "mul_add";
  template <class S>
  ZKYNET_HD S operator()(S x, S y, S z) const {
    return x * y + z;
  }
};

// sum_i a_i * b_i, written over whole buffers (a general functor).
struct InnerProduct {
  static constexpr std::string_view name = "inner_product";
  zkynet::Shape output_shape(const std::array<zkynet::Shape, 2>&) const { return {}; }
  template <class S>
  ZKYNET_HD void operator()(const std::array<const S*, 2>& in, const std::array<zkynet::Shape, 2>& shapes, S* out) const {
    S acc(0);
    for (std::int64_t i = 0; i < shapes[0][0]; ++i) acc = acc + in[0][i] * in[1][i];
    out[0] = acc;
  }
};

// Running sums along a vector: every output depends on a prefix of the input.
struct CumSum {
  static constexpr std::string_view name = "cumsum";
  zkynet::Shape output_shape(const std::array<zkynet::Shape, 1>& shapes) const { return shapes[0]; }
  template <class S>
  ZKYNET_HD void operator()(const std::array<const S*, 1>& in, const std::array<zkynet::Shape, 1>& shapes, S* out) const {
    S acc(0);
    for (std::int64_t i = 0; i < shapes[0][0]; ++i) {
      acc = acc + in[0][i];
      out[i] = acc;
    }
  }
};

}  // namespace zkynet_test
