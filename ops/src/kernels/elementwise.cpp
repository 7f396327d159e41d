#include <zkynet/framework/error.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/strided.h>

#include "cuda/api.h"
#include "functors.h"

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

bool on_device(const Tensor& a) { return !a.device().is_cpu(); }

template <class F>
Tensor map_in(DType dtype, const Tensor& a, const Tensor& b, std::string_view op, const F& f) {
  if (on_device(a) || on_device(b)) return cuda::map_binary(a, b, dtype, f, op);
  return dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    return map<T, 2>({a, b}, [&](T x, T y) { return f(x, y); }, op);
  });
}

template <class F>
Tensor map_in(DType dtype, const Tensor& a, std::string_view op, const F& f) {
  if (on_device(a)) return cuda::map_unary(a, dtype, f, op);
  return dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    return map<T, 1>({a}, [&](T x) { return f(x); }, op);
  });
}

template <class F>
Tensor binary(const Tensor& a, const Tensor& b, std::string_view op, const F& f) {
  return map_in(result_dtype(a, b, op), a, b, op, f);
}

template <class F>
Tensor floating_binary(const Tensor& a, const Tensor& b, std::string_view op, const F& f) {
  const DType dtype = result_dtype(a, b, op);
  if (!is_floating(dtype)) throw TypeError(std::string(op) + ": needs floating-point operands, got int64");
  return map_in(dtype, a, b, op, f);
}

template <class F>
Tensor unary(const Tensor& a, std::string_view op, const F& f) {
  return map_in(a.dtype(), a, op, f);
}

template <class F>
Tensor floating_unary(const Tensor& a, std::string_view op, const F& f) {
  if (!is_floating(a.dtype())) {
    throw TypeError(std::string(op) + " " + shape_str(a.shape()) + ": needs a floating-point tensor, got int64");
  }
  return map_in(a.dtype(), a, op, f);
}

}  // namespace

Tensor greater(const Tensor& a, const Tensor& b) { return binary(a, b, "greater", fn::Greater{}); }
Tensor greater_equal(const Tensor& a, const Tensor& b) { return binary(a, b, "greater_equal", fn::GreaterEqual{}); }
Tensor less(const Tensor& a, const Tensor& b) { return binary(a, b, "less", fn::Less{}); }
Tensor less_equal(const Tensor& a, const Tensor& b) { return binary(a, b, "less_equal", fn::LessEqual{}); }
Tensor equal(const Tensor& a, const Tensor& b) { return binary(a, b, "equal", fn::Equal{}); }
Tensor not_equal(const Tensor& a, const Tensor& b) { return binary(a, b, "not_equal", fn::NotEqual{}); }

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, "add", fn::Add{}); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, "sub", fn::Sub{}); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, "mult", fn::Mul{}); }
Tensor div(const Tensor& a, const Tensor& b) { return floating_binary(a, b, "div", fn::Div{}); }
Tensor pow(const Tensor& a, const Tensor& b) { return floating_binary(a, b, "pow", fn::Pow{}); }
Tensor scale(const Tensor& a, double factor) { return unary(a, "scale", fn::Scale{factor}); }

Tensor neg(const Tensor& a) { return unary(a, "neg", fn::Neg{}); }
Tensor square(const Tensor& a) { return unary(a, "square", fn::Square{}); }
Tensor exp(const Tensor& a) { return floating_unary(a, "exp", fn::Exp{}); }
Tensor log(const Tensor& a) { return floating_unary(a, "log", fn::Log{}); }
Tensor sqrt(const Tensor& a) { return floating_unary(a, "sqrt", fn::Sqrt{}); }
Tensor tanh(const Tensor& a) { return floating_unary(a, "tanh", fn::Tanh{}); }
Tensor relu(const Tensor& a) { return unary(a, "relu", fn::Relu{}); }
Tensor sigmoid(const Tensor& a) { return floating_unary(a, "sigmoid", fn::Sigmoid{}); }
Tensor sign(const Tensor& a) { return unary(a, "sign", fn::Sign{}); }

Tensor tanh_backward(const Tensor& grad, const Tensor& out) {
  return floating_binary(grad, out, "tanh_backward", fn::TanhBackward{});
}
Tensor sigmoid_backward(const Tensor& grad, const Tensor& out) {
  return floating_binary(grad, out, "sigmoid_backward", fn::SigmoidBackward{});
}
Tensor relu_backward(const Tensor& grad, const Tensor& input) {
  return binary(grad, input, "relu_backward", fn::ReluBackward{});
}

}  // namespace zkynet::kernels
