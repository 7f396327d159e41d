#include <zkynet/framework/error.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/ops/ops.h>

#include <string>

namespace zkynet::nn {

Flatten::Flatten(std::int64_t start_dim, std::int64_t end_dim)
    : Module({Variable("x")}), start_(start_dim), end_(end_dim) {}

NodeRef Flatten::call(const NodeRef& x) {
  const Shape& shape = x.shape();
  const auto rank = static_cast<std::int64_t>(shape.size());
  const std::int64_t wrap = rank == 0 ? 1 : rank;  // a 0-d tensor flattens as if it were (1,), as in torch
  const auto axis = [&](std::int64_t d, const char* what) {
    if (d < -wrap || d >= wrap) {
      throw IndexError("Flatten: " + std::string(what) + " " + std::to_string(d) + " is out of range for " +
                       std::to_string(rank) + "-d input of shape " + shape_str(shape));
    }
    return d < 0 ? d + wrap : d;
  };
  const std::int64_t start = axis(start_, "start_dim");
  const std::int64_t end = axis(end_, "end_dim");
  if (start > end) {
    throw IndexError("Flatten: start_dim " + std::to_string(start_) + " comes after end_dim " + std::to_string(end_) +
                     " for input of shape " + shape_str(shape));
  }
  if (rank == 0) return op::reshape(x, {1});
  Shape out(shape.begin(), shape.begin() + start);
  std::int64_t merged = 1;
  for (std::int64_t d = start; d <= end; ++d) merged *= shape[static_cast<std::size_t>(d)];
  out.push_back(merged);
  out.insert(out.end(), shape.begin() + end + 1, shape.end());
  return op::reshape(x, out);
}

}  // namespace zkynet::nn
