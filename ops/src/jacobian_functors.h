// The built-in Jacobian-based operators' functors: the forward alone, generic over the scalar,
// shared by unary.cpp (CPU, and the calls) and kernels/cuda/jacobian.cu (their CUDA kernels).
// A named namespace: the CUDA registration finds them by type, across files.
#pragma once

#include <zkynet/framework/host_device.h>

#include <array>
#include <cmath>
#include <string_view>

namespace zkynet::op::jacobian_functors {

struct Pow {
  static constexpr std::string_view name = "pow";
  static constexpr std::array<std::string_view, 2> inputs{"base", "exponent"};
  template <class S>
  ZKYNET_HD S operator()(S base, S exponent) const {
    using std::pow;
    return pow(base, exponent);
  }
};

struct Abs {
  static constexpr std::string_view name = "abs";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  template <class S>
  ZKYNET_HD S operator()(S x) const {
    using std::abs;
    return abs(x);
  }
};

struct TanhDual {
  static constexpr std::string_view name = "tanh_dual";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  template <class S>
  ZKYNET_HD S operator()(S x) const {
    using std::tanh;
    return tanh(x);
  }
};

}  // namespace zkynet::op::jacobian_functors
