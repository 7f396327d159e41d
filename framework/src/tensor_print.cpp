#include <zkynet/framework/tensor.h>

#include <iomanip>
#include <ostream>
#include <sstream>

namespace zkynet {
namespace {

// Prints nested rows like numpy: [[1, 2], [3, 4]]; long axes are elided in the middle.
void print_axis(std::ostream& os, const Tensor& t, const std::vector<double>& flat, std::size_t axis,
                std::int64_t base, const Shape& strides, int indent) {
  constexpr std::int64_t kEdge = 3;
  const std::int64_t n = t.shape()[axis];
  const bool last = axis + 1 == t.shape().size();
  os << '[';
  for (std::int64_t i = 0; i < n; ++i) {
    if (n > 2 * kEdge + 1 && i == kEdge) {
      os << (last ? "..., " : "...,\n" + std::string(static_cast<std::size_t>(indent + 1), ' '));
      i = n - kEdge - 1;
      continue;
    }
    const std::int64_t pos = base + i * strides[axis];
    if (last) {
      if (t.dtype() == DType::Int64) {
        os << static_cast<std::int64_t>(flat[static_cast<std::size_t>(pos)]);
      } else {
        os << std::setprecision(6) << flat[static_cast<std::size_t>(pos)];
      }
    } else {
      print_axis(os, t, flat, axis + 1, pos, strides, indent + 1);
    }
    if (i + 1 < n) os << (last ? ", " : ",\n" + std::string(static_cast<std::size_t>(indent + 1), ' '));
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Shape& shape) { return os << shape_str(shape); }

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  const auto flat = t.to_doubles();
  os << "tensor(";
  if (t.dim() == 0) {
    os << flat[0];
  } else {
    print_axis(os, t, flat, 0, 0, contiguous_strides(t.shape()), 7);
  }
  return os << ", shape=" << shape_str(t.shape()) << ", dtype=" << dtype_name(t.dtype()) << ")";
}

}  // namespace zkynet
