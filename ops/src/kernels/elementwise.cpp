#include <zkynet/framework/error.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/strided.h>

#include <array>
#include <cmath>
#include <optional>
#include <string>

namespace zkynet::kernels {

Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const std::int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1) {
      throw ShapeError(std::string(op) + " " + shape_str(a) + " and " + shape_str(b) +
                       ": shapes cannot be broadcast (axis " + std::to_string(i) + ": " + std::to_string(da) +
                       " vs " + std::to_string(db) + ")");
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

[[noreturn]] void throw_dtypes(std::span<const Tensor* const> operands, std::string_view op) {
  std::string what;
  for (const Tensor* t : operands) {
    what += (what.empty() ? "" : " and ") + shape_str(t->shape()) + " " + std::string(dtype_name(t->dtype()));
  }
  throw TypeError(std::string(op) + " " + what + ": dtypes differ (convert one with .to())");
}

}  // namespace

// Integers meeting floats become floats (3 + 0.5 is 3.5), as in numpy and PyTorch. Among
// floats, 0-d operands (numbers) take the type of the tensors, or widen among themselves;
// tensors of different float types are refused rather than silently widened.
DType result_dtype(std::span<const Tensor* const> operands, std::string_view op) {
  std::optional<DType> tensor_float, scalar_float;
  for (const Tensor* t : operands) {
    if (!is_floating(t->dtype())) continue;
    if (t->dim() == 0) {
      scalar_float = scalar_float == DType::Float64 ? DType::Float64 : t->dtype();  // numbers widen
      continue;
    }
    if (tensor_float && *tensor_float != t->dtype()) throw_dtypes(operands, op);
    tensor_float = t->dtype();
  }
  if (tensor_float) return *tensor_float;
  if (scalar_float) return *scalar_float;
  return DType::Int64;
}

DType result_dtype(const Tensor& a, const Tensor& b, std::string_view op) {
  const std::array<const Tensor*, 2> operands{&a, &b};
  return result_dtype(operands, op);
}

namespace {

template <class F>
Tensor binary(const Tensor& a, const Tensor& b, std::string_view op, F f) {
  const DType dtype = result_dtype(a, b, op);
  return dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    return map<T, 2>({a, b}, [&](T x, T y) { return f(x, y); }, op);
  });
}

template <class F>
Tensor floating_binary(const Tensor& a, const Tensor& b, std::string_view op, F f) {
  const DType dtype = result_dtype(a, b, op);
  if (!is_floating(dtype)) throw TypeError(std::string(op) + ": needs floating-point operands, got int64");
  return dispatch_floating(dtype, [&](auto zero) {
    using T = decltype(zero);
    return map<T, 2>({a, b}, [&](T x, T y) { return f(x, y); }, op);
  });
}

template <class F>
Tensor unary(const Tensor& a, std::string_view op, F f) {
  return dispatch_dtype(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return map<T, 1>({a}, [&](T x) { return f(x); }, op);
  });
}

template <class F>
Tensor floating_unary(const Tensor& a, std::string_view op, F f) {
  if (!is_floating(a.dtype())) {
    throw TypeError(std::string(op) + " " + shape_str(a.shape()) + ": needs a floating-point tensor, got int64");
  }
  return dispatch_floating(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    return map<T, 1>({a}, [&](T x) { return f(x); }, op);
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, "add", [](auto x, auto y) { return x + y; }); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, "sub", [](auto x, auto y) { return x - y; }); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, "mult", [](auto x, auto y) { return x * y; }); }
Tensor div(const Tensor& a, const Tensor& b) {
  return floating_binary(a, b, "div", [](auto x, auto y) { return x / y; });
}
Tensor pow(const Tensor& a, const Tensor& b) {
  return floating_binary(a, b, "pow", [](auto x, auto y) { return std::pow(x, y); });
}
Tensor scale(const Tensor& a, double factor) {
  return unary(a, "scale", [factor](auto x) { return static_cast<decltype(x)>(x * factor); });
}

Tensor neg(const Tensor& a) { return unary(a, "neg", [](auto x) { return -x; }); }
Tensor square(const Tensor& a) { return unary(a, "square", [](auto x) { return x * x; }); }
Tensor exp(const Tensor& a) { return floating_unary(a, "exp", [](auto x) { return std::exp(x); }); }
Tensor log(const Tensor& a) { return floating_unary(a, "log", [](auto x) { return std::log(x); }); }
Tensor sqrt(const Tensor& a) { return floating_unary(a, "sqrt", [](auto x) { return std::sqrt(x); }); }
Tensor tanh(const Tensor& a) { return floating_unary(a, "tanh", [](auto x) { return std::tanh(x); }); }
// NaN stays NaN (torch's relu), hence `x <= 0 ? 0 : x` rather than `x > 0 ? x : 0`.
Tensor relu(const Tensor& a) {
  return unary(a, "relu", [](auto x) { return x <= decltype(x)(0) ? decltype(x)(0) : x; });
}
// 1 / (1 + e^-x): 0 for x -> -inf (e^-x = inf), 1 for x -> inf, NaN for NaN, as torch.
Tensor sigmoid(const Tensor& a) {
  return floating_unary(a, "sigmoid", [](auto x) { return decltype(x)(1) / (decltype(x)(1) + std::exp(-x)); });
}
Tensor sign(const Tensor& a) {
  return unary(a, "sign", [](auto x) { return static_cast<decltype(x)>((x > 0) - (x < 0)); });
}

Tensor tanh_backward(const Tensor& grad, const Tensor& out) {
  return floating_binary(grad, out, "tanh_backward", [](auto g, auto y) { return g * (decltype(y)(1) - y * y); });
}

// From the output, so it stays finite where sigmoid is flat (the derivative of the formula,
// e^-x / (1 + e^-x)^2, is inf / inf = NaN from x = -710 in float64, -89 in float32).
Tensor sigmoid_backward(const Tensor& grad, const Tensor& out) {
  return floating_binary(grad, out, "sigmoid_backward",
                         [](auto g, auto y) { return g * (y * (decltype(y)(1) - y)); });
}

// torch's threshold_backward: 0 where relu's output is <= 0, the gradient elsewhere (NaN included).
Tensor relu_backward(const Tensor& grad, const Tensor& input) {
  return binary(grad, input, "relu_backward", [](auto g, auto x) { return x <= decltype(x)(0) ? decltype(g)(0) : g; });
}

}  // namespace zkynet::kernels
