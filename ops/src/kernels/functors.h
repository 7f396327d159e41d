// The scalar functions of the elementwise kernels, written once for the CPU loops and the CUDA
// kernels (ZKYNET_HD). Adding an elementwise kernel: a functor here, a line in its list below;
// both devices then have it.
#pragma once

#include <zkynet/internal/host_device.h>

#include <cmath>

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

}  // namespace zkynet::kernels::fn

// Every functor, for the explicit instantiations of the CUDA kernels and their stubs.
#define ZKYNET_BINARY_FUNCTORS(X) \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(TanhBackward) X(SigmoidBackward) X(ReluBackward)
#define ZKYNET_UNARY_FUNCTORS(X) \
  X(Neg) X(Square) X(Exp) X(Log) X(Sqrt) X(Tanh) X(Relu) X(Sigmoid) X(Sign) X(Scale)
