// matmul (numpy rules, BLAS) and zkynet's dot.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/ops.h>

namespace zkynet::op {

namespace {

// Gradients of matmul; 1-d operands are promoted as in the forward, then squeezed back.
std::array<Tensor, 2> matmul_vjp(const VjpContext<2>& c) {
  const Tensor& a = c.in(0);
  const Tensor& b = c.in(1);
  Tensor a2 = a.dim() == 1 ? a.reshape({1, a.size(0)}) : a;
  Tensor b2 = b.dim() == 1 ? b.reshape({b.size(0), 1}) : b;
  Shape g_shape(c.grad.shape());
  if (a.dim() == 1) g_shape.insert(g_shape.end() - (b.dim() == 1 ? 0 : 1), 1);
  if (b.dim() == 1) g_shape.push_back(1);
  const Tensor g = c.grad.reshape(g_shape);
  Tensor ga, gb;
  if (c.needs[0]) ga = kernels::sum_to(kernels::matmul_t(g, false, b2, true), a2.shape()).reshape(a.shape());
  if (c.needs[1]) {
    gb = kernels::matmul_t(a2, true, g, false);
    gb = kernels::sum_to(gb, b2.shape()).reshape(b.shape());
  }
  return {ga, gb};
}

struct MatmulDef {
  static constexpr std::string_view name = "matmul";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Tensor forward(const Tensor& a, const Tensor& b) const { return kernels::matmul(a, b); }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const { return matmul_vjp(c); }
};

struct DotDef {
  static constexpr std::string_view name = "dot";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Tensor forward(const Tensor& a, const Tensor& b) const {
    if (a.dim() == 0 || b.dim() == 0) return kernels::mul(a, b);
    if (a.dim() > 2 || b.dim() > 2) {
      throw ShapeError("dot " + shape_str(a.shape()) + " x " + shape_str(b.shape()) +
                       ": operands of more than 2 dimensions are not supported (use matmul)");
    }
    if (a.size(-1) != b.size(0)) {
      throw ShapeError("dot " + shape_str(a.shape()) + " x " + shape_str(b.shape()) + ": inner dimensions differ (" +
                       std::to_string(a.size(-1)) + " vs " + std::to_string(b.size(0)) + ")");
    }
    return kernels::matmul(a, b);
  }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    if (c.in(0).dim() == 0 || c.in(1).dim() == 0) {
      return {c.needs[0] ? kernels::sum_to(kernels::mul(c.grad, c.in(1)), c.in(0).shape()) : Tensor(),
              c.needs[1] ? kernels::sum_to(kernels::mul(c.grad, c.in(0)), c.in(1).shape()) : Tensor()};
    }
    return matmul_vjp(c);
  }
};

// x W^T (+ b). Its own operator so the weight gradient comes out of BLAS contiguous in
// (out, in) layout; matmul(x, transpose(W)) hands back a transposed view that costs a
// strided add in every optimizer step.
struct LinearGrads {
  Tensor x, weight, bias;
};

template <std::size_t N>
LinearGrads linear_vjp(const VjpContext<N>& c) {
  const Tensor& x = c.in(0);
  const Tensor& w = c.in(1);
  const std::int64_t out_features = w.size(0);
  const std::int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const Tensor g2 = c.grad.contiguous().reshape({rows, out_features});
  LinearGrads r;
  if (c.needs[0]) r.x = kernels::matmul_t(g2, false, w, false).reshape(x.shape());
  if (c.needs[1]) r.weight = kernels::matmul_t(g2, true, x.contiguous().reshape({g2.size(0), w.size(1)}), false);
  if constexpr (N == 3) {
    if (c.needs[2]) r.bias = kernels::sum_rows(g2);
  }
  return r;
}

struct LinearDef {
  static constexpr std::string_view name = "linear";
  static constexpr std::array<std::string_view, 3> inputs{"x", "weight", "bias"};
  Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b) const { return kernels::linear(x, w, b); }
  std::array<Tensor, 3> vjp(const VjpContext<3>& c) const {
    LinearGrads g = linear_vjp(c);
    return {g.x, g.weight, g.bias};
  }
};

struct LinearNoBiasDef {
  static constexpr std::string_view name = "linear";
  static constexpr std::array<std::string_view, 2> inputs{"x", "weight"};
  Tensor forward(const Tensor& x, const Tensor& w) const { return kernels::linear(x, w); }
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    LinearGrads g = linear_vjp(c);
    return {g.x, g.weight};
  }
};

}  // namespace

NodeRef linear(const NodeRef& x, const NodeRef& weight) { return apply(LinearNoBiasDef{}, x, weight); }
NodeRef linear(const NodeRef& x, const NodeRef& weight, const NodeRef& bias) {
  return apply(LinearDef{}, x, weight, bias);
}

NodeRef matmul(const NodeRef& a, const NodeRef& b) { return apply(MatmulDef{}, a, b); }
NodeRef dot(const NodeRef& a, const NodeRef& b) { return apply(DotDef{}, a, b); }

}  // namespace zkynet::op
