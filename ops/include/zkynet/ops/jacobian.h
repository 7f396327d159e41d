// Jacobian-based operators: write the forward once, generically over the scalar type; the
// framework derives exact derivatives by running it on dual numbers. No finite differences.
//
// Elementwise (one dual pass per element gives every partial derivative):
//   struct Softplus {
//     static constexpr std::string_view name = "softplus";
//     static constexpr std::array<std::string_view, 1> inputs{"x"};
//     template <class S> S operator()(S x) const { using std::log; using std::exp; return log(S(1) + exp(x)); }
//   };
//   NodeRef y = op::elementwise(Softplus{}, x);
//
// General (one dual pass per input element): the functor maps contiguous buffers
//   struct Dot {
//     static constexpr std::string_view name = "dot";
//     static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
//     Shape output_shape(const std::array<Shape, 2>&) const { return {}; }
//     template <class S> void operator()(const std::array<const S*, 2>& in, const std::array<Shape, 2>& shapes, S* out) const;
//   };
//   NodeRef y = op::jacobian_op(Dot{}, a, b);
//
// On CUDA operands the same functor runs in CUDA kernels once a .cu file registers it:
// mark its operator() ZKYNET_HD and write ZKYNET_CUDA_ELEMENTWISE(Softplus, 1) or
// ZKYNET_CUDA_JACOBIAN(Dot, 2) there (zkynet/ops/jacobian_cuda.cuh). Without that, a CUDA
// operand gets a DeviceError that says so.
#pragma once

#include <zkynet/framework/operator.h>
#include <zkynet/ops/dual.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/strided.h>

#include <array>
#include <span>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

namespace zkynet {

namespace detail {
template <std::size_t N, std::size_t... I>
constexpr std::array<std::string_view, N> default_input_names(std::index_sequence<I...>) {
  constexpr std::array<std::string_view, 4> names{"a", "b", "c", "d"};
  return {names[I]...};
}
template <class F, std::size_t N>
constexpr std::array<std::string_view, N> input_names() {
  if constexpr (requires { F::inputs; }) {
    return F::inputs;
  } else {
    return default_input_names<N>(std::make_index_sequence<N>{});
  }
}

// The floating dtype of an N-operand result (kernels::result_dtype's rule over n operands).
template <std::size_t N>
DType jacobian_result_dtype(const std::array<const Tensor*, N>& in, std::string_view name) {
  const DType dtype = kernels::result_dtype(std::span<const Tensor* const>(in), name);
  if (!is_floating(dtype)) throw TypeError(std::string(name) + ": needs floating-point operands, got int64");
  return dtype;
}

// The device an operator's operands share (apply() checked it; 0-d host numbers may join).
template <std::size_t N>
Device operands_device(const std::array<const Tensor*, N>& in) {
  for (const Tensor* t : in) {
    if (!t->device().is_cpu()) return t->device();
  }
  return Device::cpu();
}

// The CUDA kernels of one functor, registered by jacobian_cuda.cuh's macros from a .cu file
// (at load time, no CUDA call) and found by the functor's type.
template <class F, std::size_t N>
struct ElementwiseDeviceKernels {
  Tensor (*forward)(const F& f, const std::array<Tensor, N>& in, const Shape& shape, DType dtype, Device device);
  // grad * d(out)/d(in_k) over the broadcast shape, for each k needed (not yet summed back).
  std::array<Tensor, N> (*partials)(const F& f, const Tensor& grad, const std::array<Tensor, N>& in,
                                    const std::array<bool, N>& needs, DType dtype, Device device);
};
template <class F, std::size_t N>
struct GeneralDeviceKernels {
  Tensor (*forward)(const F& f, const std::array<Tensor, N>& in, const Shape& out_shape, DType dtype, Device device);
  std::array<Tensor, N> (*vjp)(const F& f, const Tensor& grad, const std::array<Tensor, N>& in,
                               const std::array<bool, N>& needs, DType dtype, Device device);
};

void register_device_kernels(std::type_index table, const void* kernels);
const void* find_device_kernels(std::type_index table);

template <class Table>
const Table& device_kernels(std::string_view op, std::string_view macro) {
  const void* found = find_device_kernels(typeid(Table));
  if (found == nullptr) {
    throw DeviceError(std::string(op) + " has no CUDA kernels: register its functor with " + std::string(macro) +
                      " in a .cu file (zkynet/ops/jacobian_cuda.cuh) to run it on CUDA operands");
  }
  return *static_cast<const Table*>(found);
}
}  // namespace detail

// Operator definition for an elementwise functor F of N operands (with broadcasting).
template <class F, std::size_t N>
struct ElementwiseJacobianDef {
  static constexpr std::string_view name = F::name;
  static constexpr std::array<std::string_view, N> inputs = detail::input_names<F, N>();
  F f;

  template <class... Ts>
  Tensor forward(const Ts&... xs) const {
    const DType dtype = floating_result(xs...);
    const Device device = detail::operands_device<N>({&xs...});
    if (device.is_cuda()) {
      Shape shape;
      for (const Tensor* t : {&xs...}) shape = kernels::broadcast_shapes(shape, t->shape(), name);
      return device_kernels().forward(f, {xs...}, shape, dtype, device);
    }
    return dispatch_floating(dtype, [&](auto zero) {
      using T = decltype(zero);
      return kernels::map<T, N>({xs...}, f, name);
    });
  }

  std::array<Tensor, N> vjp(const VjpContext<N>& c) const {
    if (c.grad.device().is_cuda()) return device_partials(c);
    return dispatch_floating(c.grad.dtype(), [&](auto zero) {
      using T = decltype(zero);
      return partials<T>(c);
    });
  }

 private:
  template <class... Ts>
  static DType floating_result(const Ts&... xs) {
    return detail::jacobian_result_dtype<N>({&xs...}, name);
  }

  static const detail::ElementwiseDeviceKernels<F, N>& device_kernels() {
    return detail::device_kernels<detail::ElementwiseDeviceKernels<F, N>>(name, "ZKYNET_CUDA_ELEMENTWISE");
  }

  std::array<Tensor, N> device_partials(const VjpContext<N>& c) const {
    std::array<Tensor, N> in;
    std::array<bool, N> needs;
    for (std::size_t k = 0; k < N; ++k) {
      in[k] = c.in(k);
      needs[k] = c.needs[k];
    }
    std::array<Tensor, N> out = device_kernels().partials(f, c.grad, in, needs, c.grad.dtype(), c.grad.device());
    for (std::size_t k = 0; k < N; ++k) {
      if (!c.needs[k]) continue;
      out[k] = kernels::sum_to(out[k], c.in(k).shape());
      if (out[k].device() != c.in(k).device()) out[k] = out[k].to(c.in(k).device());  // a 0-d host operand
    }
    return out;
  }

  // One dual evaluation per element yields all N partials; each is scaled by the incoming
  // gradient and summed back to its operand's shape.
  template <class T>
  std::array<Tensor, N> partials(const VjpContext<N>& c) const {
    const Shape& shape = c.output.shape();
    const Tensor grad = c.grad.contiguous();
    std::array<Tensor, N> in;
    std::array<Tensor, N> out;
    std::array<const Shape*, N + 1> strides;
    const Shape grad_strides = contiguous_strides(shape);
    strides[0] = &grad_strides;
    for (std::size_t k = 0; k < N; ++k) {
      in[k] = c.in(k).to(dtype_of<T>()).expand(shape);
      strides[k + 1] = &in[k].strides();
      if (c.needs[k]) out[k] = Tensor::empty(shape, dtype_of<T>());
    }
    const T* g = grad.data<T>();
    std::array<const T*, N> p;
    std::array<T*, N> o{};
    for (std::size_t k = 0; k < N; ++k) {
      p[k] = in[k].template data<T>();
      if (c.needs[k]) o[k] = out[k].template data<T>();
    }
    kernels::detail::for_each_strided<N + 1>(shape, strides, [&](const std::array<std::int64_t, N + 1>& off) {
      std::array<Dual<T, N>, N> args;
      for (std::size_t k = 0; k < N; ++k) {
        args[k].v = p[k][off[k + 1]];
        args[k].d[k] = T(1);
      }
      const Dual<T, N> y = std::apply([&](const auto&... a) { return Dual<T, N>(f(a...)); }, args);
      for (std::size_t k = 0; k < N; ++k) {
        if (o[k]) o[k][off[0]] = g[off[0]] * y.d[k];
      }
    });
    for (std::size_t k = 0; k < N; ++k) {
      if (c.needs[k]) out[k] = kernels::sum_to(out[k], c.in(k).shape());
    }
    return out;
  }
};

// Operator definition for a general functor F of N operands on contiguous buffers.
template <class F, std::size_t N>
struct GeneralJacobianDef {
  static constexpr std::string_view name = F::name;
  static constexpr std::array<std::string_view, N> inputs = detail::input_names<F, N>();
  F f;

  template <class... Ts>
  Tensor forward(const Ts&... xs) const {
    const std::array<Tensor, N> in{xs...};
    const DType dtype = detail::jacobian_result_dtype<N>({&xs...}, name);
    const Device device = detail::operands_device<N>({&xs...});
    if (device.is_cuda()) {
      std::array<Shape, N> shapes;
      for (std::size_t k = 0; k < N; ++k) shapes[k] = in[k].shape();
      return device_kernels().forward(f, in, f.output_shape(shapes), dtype, device);
    }
    return dispatch_floating(dtype, [&](auto zero) {
      using T = decltype(zero);
      std::array<Tensor, N> buffers;
      std::array<const T*, N> ptrs;
      std::array<Shape, N> shapes;
      for (std::size_t k = 0; k < N; ++k) {
        buffers[k] = in[k].to(dtype).contiguous();
        ptrs[k] = buffers[k].template data<T>();
        shapes[k] = in[k].shape();
      }
      Tensor out = Tensor::empty(f.output_shape(shapes), dtype);
      f(ptrs, shapes, out.data<T>());
      return out;
    });
  }

  std::array<Tensor, N> vjp(const VjpContext<N>& c) const {
    if (c.output.device().is_cuda()) {
      std::array<Tensor, N> in;
      std::array<bool, N> needs;
      for (std::size_t k = 0; k < N; ++k) {
        in[k] = c.in(k);
        needs[k] = c.needs[k];
      }
      return device_kernels().vjp(f, c.grad, in, needs, c.output.dtype(), c.output.device());
    }
    return dispatch_floating(c.output.dtype(), [&](auto zero) {
      using T = decltype(zero);
      return columns<T>(c);
    });
  }

 private:
  static const detail::GeneralDeviceKernels<F, N>& device_kernels() {
    return detail::device_kernels<detail::GeneralDeviceKernels<F, N>>(name, "ZKYNET_CUDA_JACOBIAN");
  }

  // d(out)/d(in_k[e]) from one dual evaluation per input element e, contracted with the gradient.
  template <class T>
  std::array<Tensor, N> columns(const VjpContext<N>& c) const {
    using D = Dual<T, 1>;
    std::array<std::vector<D>, N> duals;
    std::array<const D*, N> ptrs;
    std::array<Shape, N> shapes;
    for (std::size_t k = 0; k < N; ++k) {
      const auto values = c.in(k).to_doubles();
      duals[k].assign(values.begin(), values.end());
      ptrs[k] = duals[k].data();
      shapes[k] = c.in(k).shape();
    }
    const auto grad = c.grad.to_doubles();
    std::vector<D> out(grad.size());
    std::array<Tensor, N> result;
    for (std::size_t k = 0; k < N; ++k) {
      if (!c.needs[k]) continue;
      result[k] = Tensor::empty(shapes[k], c.output.dtype());
      T* r = result[k].template data<T>();
      for (std::size_t e = 0; e < duals[k].size(); ++e) {
        duals[k][e].d[0] = T(1);
        f(ptrs, shapes, out.data());
        duals[k][e].d[0] = T(0);
        T acc = T(0);
        for (std::size_t j = 0; j < out.size(); ++j) acc += static_cast<T>(grad[j]) * out[j].d[0];
        r[e] = acc;
      }
    }
    return result;
  }
};

namespace op {

// Applies the elementwise functor `f` to N operands; derivatives come from dual numbers.
template <class F, class... Operands>
NodeRef elementwise(F f, const Operands&... operands) {
  return apply(ElementwiseJacobianDef<F, sizeof...(Operands)>{std::move(f)}, NodeRef(operands)...);
}

// Applies the general functor `f`; derivatives come from one dual pass per input element.
template <class F, class... Operands>
NodeRef jacobian_op(F f, const Operands&... operands) {
  return apply(GeneralJacobianDef<F, sizeof...(Operands)>{std::move(f)}, NodeRef(operands)...);
}

}  // namespace op
}  // namespace zkynet
