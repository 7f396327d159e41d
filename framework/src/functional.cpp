// The function transforms: each call grounds f as a Lambda of arguments x0, x1, ... and reads
// their gradients from the graph's vjp() (no parameter accumulation).
#include <zkynet/framework/error.h>
#include <zkynet/framework/functional.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>

#include <memory>
#include <string>

namespace zkynet {
namespace {

struct Grounded {
  std::shared_ptr<Lambda> module;  // keeps the inputs the graph's nodes point to alive
  std::shared_ptr<ModuleGraph> graph;
};

Grounded ground(const DifferentiableFn& f, const std::vector<Tensor>& args, const char* transform) {
  if (!f) throw UsageError(std::string(transform) + ": no function given");
  std::vector<std::string> names;
  for (std::size_t i = 0; i < args.size(); ++i) names.push_back("x" + std::to_string(i));
  auto module = std::make_shared<Lambda>(names, f, transform);
  const std::vector<NodeRef> refs(args.begin(), args.end());
  auto graph = std::make_shared<ModuleGraph>(module->invoke(refs));
  return {std::move(module), std::move(graph)};
}

std::vector<std::size_t> positions(const std::vector<int>& argnums, std::size_t n, const char* transform) {
  if (argnums.empty()) throw UsageError(std::string(transform) + ": argnums is empty");
  std::vector<std::size_t> out;
  for (int a : argnums) {
    const long k = a < 0 ? static_cast<long>(n) + a : a;
    if (k < 0 || k >= static_cast<long>(n)) {
      throw UsageError(std::string(transform) + ": argnums names argument " + std::to_string(a) + " of a call with " +
                       std::to_string(n) + " arguments");
    }
    out.push_back(static_cast<std::size_t>(k));
  }
  return out;
}

std::vector<Tensor> grads_at(const Grounded& g, const std::vector<std::size_t>& at) {
  std::vector<Tensor> out;
  for (std::size_t k : at) out.push_back(g.graph->grad(g.module->input("x" + std::to_string(k))));
  return out;
}

ValueAndGrad scalar_value_and_grad(const DifferentiableFn& f, const std::vector<int>& argnums,
                                   const std::vector<Tensor>& args, const char* transform) {
  const auto at = positions(argnums, args.size(), transform);
  const Grounded g = ground(f, args, transform);
  const Tensor& value = g.graph->value();
  if (value.numel() != 1) {
    throw ShapeError(std::string(transform) + ": the function returned shape " + shape_str(value.shape()) +
                     ", not a scalar: use jacobian() for every derivative, or vjp() for a vector-Jacobian product");
  }
  g.graph->vjp(Tensor::ones(value.shape(), value.dtype(), value.device()));
  return {value, grads_at(g, at)};
}

}  // namespace

GradFn grad(DifferentiableFn f, std::vector<int> argnums) {
  return [f = std::move(f), argnums = std::move(argnums)](const std::vector<Tensor>& args) {
    return scalar_value_and_grad(f, argnums, args, "grad").grads;
  };
}

ValueAndGradFn value_and_grad(DifferentiableFn f, std::vector<int> argnums) {
  return [f = std::move(f), argnums = std::move(argnums)](const std::vector<Tensor>& args) {
    return scalar_value_and_grad(f, argnums, args, "value_and_grad");
  };
}

GradFn jacobian(DifferentiableFn f, std::vector<int> argnums) {
  return [f = std::move(f), argnums = std::move(argnums)](const std::vector<Tensor>& args) {
    const auto at = positions(argnums, args.size(), "jacobian");
    const Grounded g = ground(f, args, "jacobian");
    const Tensor& out = g.graph->value();
    std::vector<Tensor> jacobians;
    for (std::size_t k : at) {
      Shape shape = out.shape();
      shape.insert(shape.end(), args[k].shape().begin(), args[k].shape().end());
      jacobians.push_back(Tensor::zeros(shape, out.dtype(), out.device()));
    }
    Tensor seed = Tensor::zeros(out.shape(), out.dtype(), out.device());
    Tensor flat_seed = seed.reshape({out.numel()});
    for (std::int64_t row = 0; row < out.numel(); ++row) {
      flat_seed.slice(0, row, row + 1).fill_(1.0);
      g.graph->vjp(seed);
      const std::vector<Tensor> rows = grads_at(g, at);
      for (std::size_t i = 0; i < at.size(); ++i) {
        const std::int64_t n = args[at[i]].numel();
        jacobians[i].reshape({out.numel(), n}).slice(0, row, row + 1).copy_(rows[i].reshape({1, n}));
      }
      flat_seed.slice(0, row, row + 1).fill_(0.0);
    }
    return jacobians;
  };
}

VjpResult vjp(DifferentiableFn f, const std::vector<Tensor>& args) {
  Grounded g = ground(f, args, "vjp");
  const std::size_t n = args.size();
  Tensor value = g.graph->value();
  auto pullback = [g = std::move(g), n](const Tensor& cotangent) {
    g.graph->vjp(cotangent);
    std::vector<std::size_t> all(n);
    for (std::size_t k = 0; k < n; ++k) all[k] = k;
    return grads_at(g, all);
  };
  return {std::move(value), std::move(pullback)};
}

}  // namespace zkynet
