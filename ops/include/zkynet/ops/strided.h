// Element loops over strided, broadcast operands, for kernels written as scalar functors
// (the Jacobian-based operators instantiate these with their user's functor).
//
//   Tensor out = kernels::map<float, 2>({a, b}, [](auto x, auto y) { return x * y + x; }, "fma");
#pragma once

#include <zkynet/framework/parallel.h>
#include <zkynet/framework/tensor.h>

#include <array>
#include <cstdint>
#include <string_view>

namespace zkynet::kernels {

Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);

namespace detail {

// Calls body(offsets) for every element of `shape` in row-major order, where offsets[k]
// is the element's position in operand k (strides in elements).
template <std::size_t K, class Body>
void for_each_strided(const Shape& shape, const std::array<const Shape*, K>& strides, Body&& body) {
  const std::size_t nd = shape.size();
  std::array<std::int64_t, K> offsets{};
  if (nd == 0) {
    body(offsets);
    return;
  }
  for (auto d : shape) {
    if (d == 0) return;
  }
  std::vector<std::int64_t> index(nd, 0);
  const std::int64_t inner = shape[nd - 1];
  std::array<std::int64_t, K> inner_stride{};
  for (std::size_t k = 0; k < K; ++k) inner_stride[k] = (*strides[k])[nd - 1];
  while (true) {
    std::array<std::int64_t, K> o = offsets;
    for (std::int64_t i = 0; i < inner; ++i) {
      body(o);
      for (std::size_t k = 0; k < K; ++k) o[k] += inner_stride[k];
    }
    std::size_t d = nd - 1;
    while (true) {
      if (d == 0) return;
      --d;
      ++index[d];
      for (std::size_t k = 0; k < K; ++k) offsets[k] += (*strides[k])[d];
      if (index[d] < shape[d]) break;
      for (std::size_t k = 0; k < K; ++k) offsets[k] -= (*strides[k])[d] * shape[d];
      index[d] = 0;
    }
  }
}

}  // namespace detail

// out[i] = f(in_0[i], ..., in_{N-1}[i]) over the broadcast shape of the inputs, all of
// element type T (inputs are converted when needed). Contiguous same-shape operands take a
// flat loop that the compiler vectorizes and the pool splits across threads.
template <class T, std::size_t N, class F>
Tensor map(const std::array<Tensor, N>& inputs, F&& f, std::string_view op) {
  Shape shape = inputs[0].shape();
  for (std::size_t k = 1; k < N; ++k) shape = broadcast_shapes(shape, inputs[k].shape(), op);
  std::array<Tensor, N> in;
  bool flat = true;     // every operand is contiguous with the output's shape...
  bool scalars = true;  // ...or a single element, read once
  for (std::size_t k = 0; k < N; ++k) {
    in[k] = inputs[k].dtype() == dtype_of<T>() ? inputs[k] : inputs[k].to(dtype_of<T>());
    const bool full = in[k].shape() == shape && in[k].is_contiguous();
    flat = flat && full;
    scalars = scalars && (full || in[k].numel() == 1);
  }
  Tensor out = Tensor::empty(shape, dtype_of<T>());
  T* o = out.data<T>();
  std::array<const T*, N> p;
  for (std::size_t k = 0; k < N; ++k) p[k] = in[k].template data<T>();
  if (flat) {
    parallel_for(out.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        o[i] = [&]<std::size_t... I>(std::index_sequence<I...>) { return static_cast<T>(f(p[I][i]...)); }(
            std::make_index_sequence<N>{});
      }
    });
    return out;
  }
  if (scalars) {
    std::array<std::int64_t, N> step;
    for (std::size_t k = 0; k < N; ++k) step[k] = in[k].numel() == 1 && out.numel() != 1 ? 0 : 1;
    parallel_for(out.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        o[i] = [&]<std::size_t... I>(std::index_sequence<I...>) {
          return static_cast<T>(f(p[I][i * step[I]]...));
        }(std::make_index_sequence<N>{});
      }
    });
    return out;
  }
  std::array<Tensor, N> views;
  std::array<const Shape*, N + 1> strides;
  const Shape out_strides = contiguous_strides(shape);
  strides[0] = &out_strides;
  for (std::size_t k = 0; k < N; ++k) {
    views[k] = in[k].expand(shape);
    strides[k + 1] = &views[k].strides();
  }
  detail::for_each_strided<N + 1>(shape, strides, [&](const std::array<std::int64_t, N + 1>& off) {
    o[off[0]] = [&]<std::size_t... I>(std::index_sequence<I...>) { return static_cast<T>(f(p[I][off[I + 1]]...)); }(
        std::make_index_sequence<N>{});
  });
  return out;
}

}  // namespace zkynet::kernels
