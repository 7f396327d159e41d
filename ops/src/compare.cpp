// Comparisons: forward in kernels::, no VJP (masks are piecewise constant).
#include <zkynet/framework/operator.h>
#include <zkynet/ops/compare.h>
#include <zkynet/ops/kernels.h>

namespace zkynet::op {
namespace {

using Kernel = Tensor (*)(const Tensor&, const Tensor&);

template <Kernel K, const std::string_view& Name>
struct CompareDef {
  static constexpr std::string_view name = Name;
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  Tensor forward(const Tensor& a, const Tensor& b) const { return K(a, b); }
  std::array<Tensor, 2> vjp(const VjpContext<2>&) const { return {Tensor(), Tensor()}; }
};

constexpr std::string_view kGreater = "greater";
constexpr std::string_view kGreaterEqual = "greater_equal";
constexpr std::string_view kLess = "less";
constexpr std::string_view kLessEqual = "less_equal";
constexpr std::string_view kEqual = "equal";
constexpr std::string_view kNotEqual = "not_equal";

}  // namespace

NodeRef greater(const NodeRef& a, const NodeRef& b) { return apply(CompareDef<&kernels::greater, kGreater>{}, a, b); }
NodeRef greater_equal(const NodeRef& a, const NodeRef& b) {
  return apply(CompareDef<&kernels::greater_equal, kGreaterEqual>{}, a, b);
}
NodeRef less(const NodeRef& a, const NodeRef& b) { return apply(CompareDef<&kernels::less, kLess>{}, a, b); }
NodeRef less_equal(const NodeRef& a, const NodeRef& b) {
  return apply(CompareDef<&kernels::less_equal, kLessEqual>{}, a, b);
}
NodeRef equal(const NodeRef& a, const NodeRef& b) { return apply(CompareDef<&kernels::equal, kEqual>{}, a, b); }
NodeRef not_equal(const NodeRef& a, const NodeRef& b) {
  return apply(CompareDef<&kernels::not_equal, kNotEqual>{}, a, b);
}

}  // namespace zkynet::op
