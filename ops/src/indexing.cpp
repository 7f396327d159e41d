// Indexing operators: forward and VJP side by side, their loops in kernels/select.cpp (and
// cuda/select.cu). concat and stack take a list of operands, so they are DynamicOperators
// (arity fixed per call); split is a list of slices. The VJPs of the gathering operators
// (index_select, gather, embedding) scatter-add the gradient, so repeated indices sum their
// contributions.
#include <zkynet/framework/error.h>
#include <zkynet/framework/operator.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/kernels.h>

#include "kernels/select.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace zkynet::op {

namespace {

std::string describe(const Tensor& t) { return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype())); }

std::string list_str(const std::vector<std::int64_t>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) s += (i ? ", " : "") + std::to_string(values[i]);
  return s + "]";
}

// `axis` of an ndim-d tensor, negative counting from the end; IndexError naming `op` otherwise.
std::int64_t normalize_axis(std::int64_t axis, std::int64_t ndim, std::string_view op) {
  return kernels::reduction_axes({axis}, ndim, op)[0];
}

void require_index_dtype(const Tensor& index, std::string_view op, std::string_view what) {
  if (index.dtype() != DType::Int64) {
    throw TypeError(std::string(op) + ": " + std::string(what) + " " + describe(index) + " must be an int64 tensor");
  }
}

// ---- concat, stack -----------------------------------------------------------------------

// Joins `xs` along `axis` (already normalized); shapes agree except along it.
Tensor join(std::span<const Tensor> xs, std::int64_t axis) {
  Shape shape = xs[0].shape();
  std::int64_t total = 0;
  for (const Tensor& x : xs) total += x.shape()[static_cast<std::size_t>(axis)];
  shape[static_cast<std::size_t>(axis)] = total;
  Tensor out = Tensor::empty(shape, xs[0].dtype(), xs[0].device());
  std::int64_t offset = 0;
  for (const Tensor& x : xs) {
    const std::int64_t n = x.shape()[static_cast<std::size_t>(axis)];
    out.slice(axis, offset, offset + n).copy_(x);
    offset += n;
  }
  return out;
}

void require_operands(std::size_t count, std::string_view op) {
  if (count == 0) throw UsageError(std::string(op) + ": expected a non-empty list of tensors");
}

void require_same_dtype(std::span<const Tensor> xs, std::string_view op) {
  for (std::size_t i = 1; i < xs.size(); ++i) {
    if (xs[i].dtype() != xs[0].dtype()) {
      throw TypeError(std::string(op) + ": tensor 0 " + describe(xs[0]) + " and tensor " + std::to_string(i) + " " +
                      describe(xs[i]) + ": dtypes differ (convert one with .to())");
    }
  }
}

// concat's checks; returns the normalized axis.
std::int64_t check_concat(std::span<const Tensor> xs, std::int64_t axis) {
  constexpr std::string_view op = "concat";
  require_operands(xs.size(), op);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (xs[i].dim() == 0) {
      throw ShapeError("concat: tensor " + std::to_string(i) + " is 0-d and cannot be concatenated (use stack)");
    }
  }
  const std::int64_t a = normalize_axis(axis, xs[0].dim(), op);
  for (std::size_t i = 1; i < xs.size(); ++i) {
    bool fits = xs[i].dim() == xs[0].dim();
    for (std::int64_t d = 0; fits && d < xs[0].dim(); ++d) {
      fits = d == a || xs[i].shape()[static_cast<std::size_t>(d)] == xs[0].shape()[static_cast<std::size_t>(d)];
    }
    if (!fits) {
      throw ShapeError("concat: tensor 0 " + shape_str(xs[0].shape()) + " and tensor " + std::to_string(i) + " " +
                       shape_str(xs[i].shape()) + ": shapes must agree except along axis " + std::to_string(axis));
    }
  }
  require_same_dtype(xs, op);
  return a;
}

// The slice of the joined gradient that belongs to each operand (floating ones only).
std::vector<Tensor> unjoin(const Tensor& grad, std::span<const Tensor> inputs, std::span<const bool> needs,
                           std::int64_t axis, bool squeeze) {
  std::vector<Tensor> grads(inputs.size());
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::int64_t n = squeeze ? 1 : inputs[i].shape()[static_cast<std::size_t>(axis)];
    if (needs[i] && is_floating(inputs[i].dtype())) {
      const Tensor piece = grad.slice(axis, offset, offset + n);
      grads[i] = squeeze ? piece.reshape(inputs[i].shape()) : piece;
    }
    offset += n;
  }
  return grads;
}

// stack's checks; returns the normalized new axis (in [0, d]).
std::int64_t check_stack(std::span<const Tensor> xs, std::int64_t axis) {
  constexpr std::string_view op = "stack";
  require_operands(xs.size(), op);
  for (std::size_t i = 1; i < xs.size(); ++i) {
    if (xs[i].shape() != xs[0].shape()) {
      throw ShapeError("stack: tensor 0 " + shape_str(xs[0].shape()) + " and tensor " + std::to_string(i) + " " +
                       shape_str(xs[i].shape()) + ": shapes must be equal");
    }
  }
  require_same_dtype(xs, op);
  return normalize_axis(axis, xs[0].dim() + 1, op);
}

Shape unsqueezed(const Shape& shape, std::int64_t axis) {
  Shape s;
  for (std::size_t i = 0; i <= shape.size(); ++i) {
    if (static_cast<std::int64_t>(i) == axis) s.push_back(1);
    if (i < shape.size()) s.push_back(shape[i]);
  }
  return s;
}

// ---- slice -------------------------------------------------------------------------------

struct SliceDef {
  static constexpr std::string_view name = "slice";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  std::int64_t axis;
  std::int64_t start;
  std::int64_t stop;
  std::int64_t step = 1;

  Tensor forward(const Tensor& x) const {
    const std::int64_t a = normalize_axis(axis, x.dim(), name);
    if (step <= 0) {
      throw ShapeError("slice " + shape_str(x.shape()) + ": step must be positive, got " + std::to_string(step));
    }
    return x.slice(a, start, stop, step);
  }

  // The gradient written into the sliced positions of a zero tensor.
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const {
    if (!is_floating(c.in(0).dtype())) return {Tensor()};
    return {kernels::slice_backward(c.grad, c.in(0).shape(), axis, start, stop, step)};
  }
};

// ---- index_select ------------------------------------------------------------------------

struct IndexSelectDef {
  static constexpr std::string_view name = "index_select";
  static constexpr std::array<std::string_view, 2> inputs{"x", "index"};
  std::int64_t axis;

  std::int64_t check(const Tensor& x, const Tensor& index) const {
    require_index_dtype(index, name, "index");
    if (index.dim() > 1) {
      throw ShapeError("index_select: index " + shape_str(index.shape()) + " must be 1-d (or 0-d)");
    }
    return normalize_axis(axis, x.dim(), name);
  }

  Tensor forward(const Tensor& x, const Tensor& index) const {
    const std::int64_t a = check(x, index);
    kernels::check_indices(index, x.shape()[static_cast<std::size_t>(a)], name, "axis " + std::to_string(a));
    return kernels::index_select(x, a, index);
  }

  // dx[.., index[j], ..] += grad[.., j, ..].
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const Tensor& x = c.in(0);
    if (!c.needs[0] || !is_floating(x.dtype())) return {Tensor(), Tensor()};
    const std::int64_t a = check(x, c.in(1));
    kernels::check_indices(c.in(1), x.shape()[static_cast<std::size_t>(a)], name, "axis " + std::to_string(a));
    return {kernels::index_select_backward(c.grad, x.shape(), a, c.in(1)), Tensor()};
  }
};

// ---- gather ------------------------------------------------------------------------------

struct GatherDef {
  static constexpr std::string_view name = "gather";
  static constexpr std::array<std::string_view, 2> inputs{"x", "index"};
  std::int64_t axis;

  std::int64_t check(const Tensor& x, const Tensor& index) const {
    require_index_dtype(index, name, "index");
    const std::int64_t a = normalize_axis(axis, x.dim(), name);
    bool fits = index.dim() == x.dim();
    for (std::int64_t d = 0; fits && d < x.dim(); ++d) {
      fits = d == a || index.shape()[static_cast<std::size_t>(d)] <= x.shape()[static_cast<std::size_t>(d)];
    }
    if (!fits) {
      throw ShapeError("gather: x " + shape_str(x.shape()) + " and index " + shape_str(index.shape()) +
                       ": index must have x's number of dimensions and no larger sizes outside axis " +
                       std::to_string(axis));
    }
    return a;
  }

  Tensor forward(const Tensor& x, const Tensor& index) const {
    const std::int64_t a = check(x, index);
    kernels::check_indices(index, x.shape()[static_cast<std::size_t>(a)], name, "axis " + std::to_string(a));
    return kernels::gather(x, a, index);
  }

  // The scatter-add adjoint: dx[.., index[i..], ..] += grad[i..].
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const Tensor& x = c.in(0);
    if (!c.needs[0] || !is_floating(x.dtype())) return {Tensor(), Tensor()};
    const std::int64_t a = check(x, c.in(1));
    kernels::check_indices(c.in(1), x.shape()[static_cast<std::size_t>(a)], name, "axis " + std::to_string(a));
    return {kernels::gather_backward(c.grad, x.shape(), a, c.in(1)), Tensor()};
  }
};

// ---- embedding ---------------------------------------------------------------------------

struct EmbeddingDef {
  static constexpr std::string_view name = "embedding";
  static constexpr std::array<std::string_view, 2> inputs{"indices", "weight"};

  static void check(const Tensor& indices, const Tensor& weight) {
    require_index_dtype(indices, name, "indices");
    if (weight.dim() != 2) {
      throw ShapeError("embedding: weight " + shape_str(weight.shape()) + " must be 2-d (num_embeddings, dim)");
    }
    kernels::check_indices(indices, weight.shape()[0], name, "weight " + shape_str(weight.shape()) + " (rows)");
  }

  Tensor forward(const Tensor& indices, const Tensor& weight) const {
    check(indices, weight);
    return kernels::embedding(indices, weight);
  }

  // dweight[indices[i]] += grad[i], row by row.
  std::array<Tensor, 2> vjp(const VjpContext<2>& c) const {
    const Tensor& weight = c.in(1);
    if (!c.needs[1] || !is_floating(weight.dtype())) return {Tensor(), Tensor()};
    check(c.in(0), weight);
    return {Tensor(), kernels::embedding_backward(c.grad, c.in(0), weight.shape())};
  }
};

// ---- where -------------------------------------------------------------------------------

struct WhereDef {
  static constexpr std::string_view name = "where";
  static constexpr std::array<std::string_view, 3> inputs{"condition", "a", "b"};

  Tensor forward(const Tensor& condition, const Tensor& a, const Tensor& b) const {
    return kernels::where(condition, a, b);
  }

  // grad where the condition holds goes to a, the rest to b; each summed to its shape.
  std::array<Tensor, 3> vjp(const VjpContext<3>& c) const {
    const bool need_a = c.needs[1] && is_floating(c.in(1).dtype());
    const bool need_b = c.needs[2] && is_floating(c.in(2).dtype());
    if (!need_a && !need_b) return {Tensor(), Tensor(), Tensor()};
    const auto share = [&](std::size_t i) {
      const Tensor g = kernels::where_backward(c.grad, c.in(0), i == 1);
      return kernels::sum_to(g, c.in(i).shape()).to(c.in(i).dtype());
    };
    return {Tensor(), need_a ? share(1) : Tensor(), need_b ? share(2) : Tensor()};
  }
};

}  // namespace

NodeRef concat(const std::vector<NodeRef>& xs, std::int64_t axis) {
  auto def = std::make_shared<DynamicOperator>();
  def->name = "concat";
  def->arity = xs.size();
  def->forward = [axis](std::span<const Tensor> in) { return join(in, check_concat(in, axis)); };
  def->vjp = [axis](const Tensor& grad, const Tensor&, std::span<const Tensor> in, std::span<const bool> needs) {
    return unjoin(grad, in, needs, check_concat(in, axis), false);
  };
  return apply_dynamic(def, xs);
}

NodeRef stack(const std::vector<NodeRef>& xs, std::int64_t axis) {
  auto def = std::make_shared<DynamicOperator>();
  def->name = "stack";
  def->arity = xs.size();
  def->forward = [axis](std::span<const Tensor> in) {
    const std::int64_t a = check_stack(in, axis);
    std::vector<Tensor> views;
    views.reserve(in.size());
    for (const Tensor& x : in) views.push_back(x.reshape(unsqueezed(x.shape(), a)));
    return join(views, a);
  };
  def->vjp = [axis](const Tensor& grad, const Tensor&, std::span<const Tensor> in, std::span<const bool> needs) {
    return unjoin(grad, in, needs, check_stack(in, axis), true);
  };
  return apply_dynamic(def, xs);
}

std::vector<NodeRef> split(const NodeRef& x, std::int64_t split_size, std::int64_t axis) {
  const Tensor& v = x.value();
  const std::int64_t a = normalize_axis(axis, v.dim(), "split");
  const std::int64_t n = v.shape()[static_cast<std::size_t>(a)];
  if (split_size <= 0 && !(split_size == 0 && n == 0)) {
    throw ShapeError("split " + shape_str(v.shape()) + ": split_size must be positive, got " +
                     std::to_string(split_size));
  }
  std::vector<std::int64_t> sizes;
  for (std::int64_t start = 0; start < n; start += split_size) sizes.push_back(std::min(split_size, n - start));
  if (sizes.empty()) sizes.push_back(0);  // an empty axis splits into one empty piece, as in torch
  return split(x, sizes, axis);
}

std::vector<NodeRef> split(const NodeRef& x, const std::vector<std::int64_t>& sizes, std::int64_t axis) {
  const Tensor& v = x.value();
  const std::int64_t a = normalize_axis(axis, v.dim(), "split");
  const std::int64_t n = v.shape()[static_cast<std::size_t>(a)];
  std::int64_t total = 0;
  bool valid = true;
  for (auto s : sizes) {
    valid = valid && s >= 0;
    total += s;
  }
  if (!valid || total != n) {
    throw ShapeError("split " + shape_str(v.shape()) + ": sizes " + list_str(sizes) +
                     " must be non-negative and sum to " + std::to_string(n) + ", the size of axis " +
                     std::to_string(axis));
  }
  std::vector<NodeRef> pieces;
  std::int64_t start = 0;
  for (auto s : sizes) {
    pieces.push_back(slice(x, a, start, start + s));
    start += s;
  }
  return pieces;
}

NodeRef slice(const NodeRef& x, std::int64_t axis, std::int64_t start, std::int64_t stop, std::int64_t step) {
  return apply(SliceDef{axis, start, stop, step}, x);
}

NodeRef index_select(const NodeRef& x, std::int64_t axis, const NodeRef& index) {
  return apply(IndexSelectDef{axis}, x, index);
}

NodeRef gather(const NodeRef& x, std::int64_t axis, const NodeRef& index) { return apply(GatherDef{axis}, x, index); }

NodeRef embedding(const NodeRef& indices, const NodeRef& weight) { return apply(EmbeddingDef{}, indices, weight); }

NodeRef where(const NodeRef& condition, const NodeRef& a, const NodeRef& b) {
  return apply(WhereDef{}, condition, a, b);
}

}  // namespace zkynet::op
