// bmm: forward and VJP side by side, on kernels::matmul_t (BLAS, transposes without copies).
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/bmm.h>
#include <zkynet/ops/kernels.h>

#include <string>

namespace zkynet::op {

namespace {

void check_bmm(const Tensor& a, const Tensor& b) {
  const std::string what = "bmm " + shape_str(a.shape()) + " x " + shape_str(b.shape());
  if (a.dim() != 3 || b.dim() != 3) {
    throw ShapeError(what + ": both operands must be 3-d (batch, rows, cols)");
  }
  if (a.size(0) != b.size(0)) {
    throw ShapeError(what + ": batch sizes differ (" + std::to_string(a.size(0)) + " vs " +
                     std::to_string(b.size(0)) + ")");
  }
  if (a.size(2) != b.size(1)) {
    throw ShapeError(what + ": inner dimensions differ (" + std::to_string(a.size(2)) + " vs " +
                     std::to_string(b.size(1)) + ")");
  }
  if (a.dtype() != b.dtype()) {
    throw TypeError(what + ": dtypes " + std::string(dtype_name(a.dtype())) + " and " +
                    std::string(dtype_name(b.dtype())) + " differ");
  }
  if (!is_floating(a.dtype())) throw TypeError(what + ": needs floating-point operands");
}

struct BmmDef {
  static constexpr std::string_view name = "bmm";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};

  Tensor forward(const Tensor& a, const Tensor& b) const {
    check_bmm(a, b);
    return kernels::matmul(a, b);
  }

  // da = g b^T;  db = a^T g (per batch entry).
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    return {c.needs[0] ? kernels::matmul_t(c.grad, false, c.in(1), true) : Tensor(),
            c.needs[1] ? kernels::matmul_t(c.in(0), true, c.grad, false) : Tensor()};
  }
};

}  // namespace

NodeRef bmm(const NodeRef& a, const NodeRef& b) { return apply(BmmDef{}, a, b); }

}  // namespace zkynet::op
