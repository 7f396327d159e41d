// The scalar functions of the elementwise kernels, written once for the CPU loops and the CUDA
// kernels (ZKYNET_HD). Adding an elementwise kernel: a functor here, a line in its list below;
// both devices then have it.
#pragma once

#include <zkynet/internal/host_device.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace zkynet::kernels::fn {

struct Add { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x + y; } };
struct Sub { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x - y; } };
struct Mul { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x * y; } };
struct Div { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x / y; } };
struct Pow {
  static constexpr bool floating = true;  // no integer instantiation
  template <class T> ZKYNET_HD T operator()(T x, T y) const { using std::pow; return pow(x, y); }
};
// g (1 - y^2): tanh's derivative from its output.
struct TanhBackward { template <class T> ZKYNET_HD T operator()(T g, T y) const { return g * (T(1) - y * y); } };
// From the output, so it stays finite where sigmoid is flat (the derivative of the formula,
// e^-x / (1 + e^-x)^2, is inf / inf = NaN from x = -710 in float64, -89 in float32).
struct SigmoidBackward { template <class T> ZKYNET_HD T operator()(T g, T y) const { return g * (y * (T(1) - y)); } };
// torch's threshold_backward: 0 where relu's input is <= 0, the gradient elsewhere (NaN included).
struct ReluBackward { template <class T> ZKYNET_HD T operator()(T g, T x) const { return x <= T(0) ? T(0) : g; } };

struct Neg { template <class T> ZKYNET_HD T operator()(T x) const { return -x; } };
struct Square { template <class T> ZKYNET_HD T operator()(T x) const { return x * x; } };
struct Exp { static constexpr bool floating = true; template <class T> ZKYNET_HD T operator()(T x) const { using std::exp; return exp(x); } };
struct Log { static constexpr bool floating = true; template <class T> ZKYNET_HD T operator()(T x) const { using std::log; return log(x); } };
struct Sqrt { static constexpr bool floating = true; template <class T> ZKYNET_HD T operator()(T x) const { using std::sqrt; return sqrt(x); } };
struct Tanh { static constexpr bool floating = true; template <class T> ZKYNET_HD T operator()(T x) const { using std::tanh; return tanh(x); } };
// NaN stays NaN (torch's relu), hence `x <= 0 ? 0 : x` rather than `x > 0 ? x : 0`.
struct Relu { template <class T> ZKYNET_HD T operator()(T x) const { return x <= T(0) ? T(0) : x; } };
// 1 / (1 + e^-x): 0 for x -> -inf (e^-x = inf), 1 for x -> inf, NaN for NaN, as torch.
struct Sigmoid {
  static constexpr bool floating = true;
  template <class T> ZKYNET_HD T operator()(T x) const { using std::exp; return T(1) / (T(1) + exp(-x)); }
};
struct Sign { template <class T> ZKYNET_HD T operator()(T x) const { return static_cast<T>((x > T(0)) - (x < T(0))); } };
// x * factor, the factor in double (rounded once into T).
struct Scale {
  double factor;
  template <class T> ZKYNET_HD T operator()(T x) const { return static_cast<T>(x * factor); }
};

// ---- selection (../select.cpp): where, clamp, maximum, minimum, var and their gradients ----

template <class T> ZKYNET_HD bool is_nan(T v) { return v != v; }  // NOLINT: false for integers

// Comparisons as masks in the operands' dtype: 1 where the relation holds, else 0 (false for
// NaN, but not_equal, as IEEE says).
struct Greater { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x > y ? T(1) : T(0); } };
struct GreaterEqual { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x >= y ? T(1) : T(0); } };
struct Less { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x < y ? T(1) : T(0); } };
struct LessEqual { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x <= y ? T(1) : T(0); } };
struct Equal { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x == y ? T(1) : T(0); } };
struct NotEqual { template <class T> ZKYNET_HD T operator()(T x, T y) const { return x != y ? T(1) : T(0); } };

// 1 where x is nonzero (NaN included), else 0: where's condition as a mask in its own dtype.
struct Truth { template <class T> ZKYNET_HD T operator()(T x) const { return x != T(0) ? T(1) : T(0); } };
struct Where { template <class T> ZKYNET_HD T operator()(T m, T x, T y) const { return m != T(0) ? x : y; } };
// where's gradient: to a where the mask holds, to b where it does not.
struct WhereTrue { static constexpr bool floating = true; template <class T> ZKYNET_HD T operator()(T m, T g) const { return m != T(0) ? g : T(0); } };
struct WhereFalse { static constexpr bool floating = true; template <class T> ZKYNET_HD T operator()(T m, T g) const { return m != T(0) ? T(0) : g; } };

// A clamp bound in T; for int64, bounds beyond its range saturate (no UB cast).
template <class T>
ZKYNET_HD T bound_as(double v) {
  if constexpr (std::is_integral_v<T>) {
    constexpr double top = 9223372036854775807.0;  // 2^63: rounds up from INT64_MAX
    if (v >= top) return std::numeric_limits<T>::max();
    if (v < -top) return std::numeric_limits<T>::min();
  }
  return static_cast<T>(v);
}
// x limited to [lo, hi] (a bound absent when its has_ flag is false); NaN stays NaN. (The
// operator refuses NaN bounds for int64 x: bound_as would be undefined there.)
struct Clamp {
  double lo, hi;
  bool has_lo, has_hi;
  template <class T> ZKYNET_HD T operator()(T v) const {
    // As torch 1.13: with both bounds given, a NaN bound makes every value NaN; a lone NaN
    // bound changes nothing (tests/python/test_fuzz_ops.py EXAMPLES["clamp"]).
    if (has_lo && has_hi && (is_nan(lo) || is_nan(hi))) return std::numeric_limits<T>::quiet_NaN();
    if (is_nan(v)) return v;
    if (has_lo && v < bound_as<T>(lo)) v = bound_as<T>(lo);
    if (has_hi && v > bound_as<T>(hi)) v = bound_as<T>(hi);
    return v;
  }
};
// The gradient where lo <= x <= hi (bounds included, NaN excluded), else 0.
struct ClampBackward {
  static constexpr bool floating = true;
  double lo, hi;
  bool has_lo, has_hi;
  template <class T> ZKYNET_HD T operator()(T g, T v) const {
    return (!has_lo || v >= static_cast<T>(lo)) && (!has_hi || v <= static_cast<T>(hi)) && !is_nan(v) ? g : T(0);
  }
};

// Elementwise max (Larger) or min, NaN-propagating: the first NaN of (x, y) wins.
template <bool Larger>
struct Extremum {
  template <class T> ZKYNET_HD T operator()(T x, T y) const {
    if (is_nan(x)) return x;
    if (is_nan(y)) return y;
    return (Larger ? y > x : y < x) ? y : x;
  }
};
using Maximum = Extremum<true>;
using Minimum = Extremum<false>;
// The share of g going to x in Extremum(x, y): halves on ties (torch 1.13), all or nothing else.
template <bool Larger>
struct ExtremumShare {
  static constexpr bool floating = true;
  template <class T> ZKYNET_HD T operator()(T g, T x, T y) const {
    return x == y ? g / T(2) : (Larger ? y > x : y < x) ? T(0) : g;
  }
};
using MaximumShare = ExtremumShare<true>;
using MinimumShare = ExtremumShare<false>;

// var's gradient: factor g (x - mean), factor = 2 / divisor rounded to T once.
struct VarianceBackward {
  static constexpr bool floating = true;
  double factor;
  template <class T> ZKYNET_HD T operator()(T g, T x, T m) const { return static_cast<T>(factor) * g * (x - m); }
};
// std's gradient into var's: g / (2 sd), and 0 where sd is 0 (torch).
struct StdBackward {
  static constexpr bool floating = true;
  template <class T> ZKYNET_HD T operator()(T g, T sd) const { return sd == T(0) ? T(0) : g / (T(2) * sd); }
};

}  // namespace zkynet::kernels::fn

// Every functor, for the explicit instantiations of the CUDA kernels and their stubs.
#define ZKYNET_BINARY_FUNCTORS(X) \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(TanhBackward) X(SigmoidBackward) X(ReluBackward) \
  X(WhereTrue) X(WhereFalse) X(ClampBackward) X(Maximum) X(Minimum) X(StdBackward) \
  X(Greater) X(GreaterEqual) X(Less) X(LessEqual) X(Equal) X(NotEqual)
#define ZKYNET_UNARY_FUNCTORS(X) \
  X(Neg) X(Square) X(Exp) X(Log) X(Sqrt) X(Tanh) X(Relu) X(Sigmoid) X(Sign) X(Scale) \
  X(Truth) X(Clamp)
// Three-operand functors, mapped by ../select.cpp (their CUDA kernel is in cuda/select.cu).
#define ZKYNET_TERNARY_FUNCTORS(X) X(Where) X(MaximumShare) X(MinimumShare) X(VarianceBackward)
