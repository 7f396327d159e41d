// Dual numbers: exact forward-mode derivatives of code written generically over its scalar.
//
//   Dual<double, 1> x(2.0, {1.0});
//   auto y = x * x + sin(x);        // y.v = 4 + sin 2,  y.d[0] = 4 + cos 2
//
// Jacobian-based operators evaluate their forward on these; the functions are host/device
// so the same functor can later run in CUDA kernels.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include <zkynet/framework/host_device.h>

#define ZKYNET_HOST_DEVICE ZKYNET_HD  // the older name

namespace zkynet {

// slope * tangent, but exactly 0 for a zero tangent, whatever the slope. A zero tangent means
// "does not depend on this direction": an infinite or NaN slope of another operand (1/b at
// b = 0, pow's derivatives at overflow, sqrt at 0) must not turn it into inf * 0 = NaN. With
// N directions, every partial would otherwise catch the other operands' infinities.
namespace detail {
template <class T>
ZKYNET_HOST_DEVICE constexpr T scaled(T slope, T tangent) {
  return tangent == T(0) ? T(0) : slope * tangent;
}
}  // namespace detail

template <class T, std::size_t N>
struct Dual {
  T v{};                 // value
  std::array<T, N> d{};  // partial derivatives along N tangent directions

  constexpr Dual() = default;
  template <class U, class = std::enable_if_t<std::is_arithmetic_v<U>>>
  ZKYNET_HOST_DEVICE constexpr Dual(U value) : v(static_cast<T>(value)) {}  // NOLINT: constants
  ZKYNET_HOST_DEVICE constexpr Dual(T value, const std::array<T, N>& tangent) : v(value), d(tangent) {}

  // A Dual whose derivative is `slope` times this one's (the chain rule for unary functions).
  ZKYNET_HOST_DEVICE constexpr Dual chain(T value, T slope) const {
    Dual r(value, {});
    for (std::size_t i = 0; i < N; ++i) r.d[i] = detail::scaled(slope, d[i]);
    return r;
  }
};

template <class T>
struct is_dual : std::false_type {};
template <class T, std::size_t N>
struct is_dual<Dual<T, N>> : std::true_type {};

#define ZKYNET_DUAL_BINARY(op, value_expr, da_expr, db_expr)                                   \
  template <class T, std::size_t N>                                                          \
  ZKYNET_HOST_DEVICE constexpr Dual<T, N> operator op(const Dual<T, N>& a, const Dual<T, N>& b) { \
    Dual<T, N> r(value_expr, {});                                                            \
    for (std::size_t i = 0; i < N; ++i) {                                                    \
      r.d[i] = detail::scaled<T>(da_expr, a.d[i]) + detail::scaled<T>(db_expr, b.d[i]);       \
    }                                                                                        \
    return r;                                                                                \
  }                                                                                          \
  template <class T, std::size_t N, class U, class = std::enable_if_t<std::is_arithmetic_v<U>>> \
  ZKYNET_HOST_DEVICE constexpr Dual<T, N> operator op(const Dual<T, N>& a, U b) {            \
    return a op Dual<T, N>(b);                                                               \
  }                                                                                          \
  template <class T, std::size_t N, class U, class = std::enable_if_t<std::is_arithmetic_v<U>>> \
  ZKYNET_HOST_DEVICE constexpr Dual<T, N> operator op(U a, const Dual<T, N>& b) {            \
    return Dual<T, N>(a) op b;                                                               \
  }

ZKYNET_DUAL_BINARY(+, a.v + b.v, T(1), T(1))
ZKYNET_DUAL_BINARY(-, a.v - b.v, T(1), T(-1))
ZKYNET_DUAL_BINARY(*, a.v * b.v, b.v, a.v)
ZKYNET_DUAL_BINARY(/, a.v / b.v, T(1) / b.v, -a.v / (b.v * b.v))
#undef ZKYNET_DUAL_BINARY

template <class T, std::size_t N>
ZKYNET_HOST_DEVICE constexpr Dual<T, N> operator-(const Dual<T, N>& a) { return a.chain(-a.v, T(-1)); }

#define ZKYNET_DUAL_COMPARE(op)                                                                   \
  template <class T, std::size_t N>                                                               \
  ZKYNET_HOST_DEVICE constexpr bool operator op(const Dual<T, N>& a, const Dual<T, N>& b) { return a.v op b.v; } \
  template <class T, std::size_t N, class U, class = std::enable_if_t<std::is_arithmetic_v<U>>>   \
  ZKYNET_HOST_DEVICE constexpr bool operator op(const Dual<T, N>& a, U b) { return a.v op static_cast<T>(b); } \
  template <class T, std::size_t N, class U, class = std::enable_if_t<std::is_arithmetic_v<U>>>   \
  ZKYNET_HOST_DEVICE constexpr bool operator op(U a, const Dual<T, N>& b) { return static_cast<T>(a) op b.v; }
ZKYNET_DUAL_COMPARE(<)
ZKYNET_DUAL_COMPARE(>)
ZKYNET_DUAL_COMPARE(<=)
ZKYNET_DUAL_COMPARE(>=)
#undef ZKYNET_DUAL_COMPARE

template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> exp(const Dual<T, N>& a) {
  const T e = std::exp(a.v);
  return a.chain(e, e);
}
template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> log(const Dual<T, N>& a) { return a.chain(std::log(a.v), T(1) / a.v); }
template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> sqrt(const Dual<T, N>& a) {
  const T s = std::sqrt(a.v);
  return a.chain(s, T(0.5) / s);
}
template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> tanh(const Dual<T, N>& a) {
  const T t = std::tanh(a.v);
  return a.chain(t, T(1) - t * t);
}
template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> sin(const Dual<T, N>& a) { return a.chain(std::sin(a.v), std::cos(a.v)); }
template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> cos(const Dual<T, N>& a) { return a.chain(std::cos(a.v), -std::sin(a.v)); }
// |x| with derivative sign(x), 0 at 0 (PyTorch's convention).
template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> abs(const Dual<T, N>& a) {
  return a.chain(std::abs(a.v), static_cast<T>((a.v > T(0)) - (a.v < T(0))));
}
// torch's derivatives: b a^(b-1) (0 where b = 0), and a^b log(a) (0 where a = 0 and b >= 0;
// NaN for a negative base, where the real power has no derivative in the exponent).
template <class T, std::size_t N>
ZKYNET_HOST_DEVICE Dual<T, N> pow(const Dual<T, N>& a, const Dual<T, N>& b) {
  const T p = std::pow(a.v, b.v);
  Dual<T, N> r(p, {});
  const T da = b.v == T(0) ? T(0) : b.v * std::pow(a.v, b.v - T(1));
  const T db = a.v == T(0) && b.v >= T(0) ? T(0) : p * std::log(a.v);
  for (std::size_t i = 0; i < N; ++i) r.d[i] = detail::scaled(da, a.d[i]) + detail::scaled(db, b.d[i]);
  return r;
}
template <class T, std::size_t N, class U, class = std::enable_if_t<std::is_arithmetic_v<U>>>
ZKYNET_HOST_DEVICE Dual<T, N> pow(const Dual<T, N>& a, U b) {
  return pow(a, Dual<T, N>(b));
}

}  // namespace zkynet
