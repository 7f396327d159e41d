#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/session.h>

#include <cmath>
#include <sstream>

namespace zkynet {
namespace {

std::vector<NodeRef> as_constants(const std::vector<Tensor>& values) {
  return std::vector<NodeRef>(values.begin(), values.end());
}

Tensor evaluate(const std::function<NodeRef(std::span<const NodeRef>)>& f, const std::vector<Tensor>& values) {
  NoGradGuard no_grad;
  const auto refs = as_constants(values);
  // NOTE: a clone, since f may return a view of its input, which the caller perturbs next.
  return f(refs).value().to(DType::Float64).clone();
}

}  // namespace

GradcheckResult gradcheck(const std::function<NodeRef(std::span<const NodeRef>)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  std::vector<Tensor> x;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    x.push_back(is_floating(inputs[i].dtype()) ? inputs[i].to(DType::Float64).clone() : inputs[i]);
    names.push_back("x" + std::to_string(i));
  }
  Lambda module(names, f, "gradcheck");
  const auto refs = as_constants(x);
  ModuleGraph graph = module.invoke(refs);
  graph.back();
  const std::int64_t out_n = graph.value().numel();

  GradcheckResult result;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!is_floating(x[i].dtype())) continue;
    const Tensor analytic = graph.grad(module.input(names[i])).to(DType::Float64).contiguous();
    const double* a = analytic.data<double>();
    Tensor flat = x[i].reshape({x[i].numel()});
    double* p = flat.data<double>();
    for (std::int64_t e = 0; e < x[i].numel(); ++e) {
      const double saved = p[e];
      p[e] = saved + options.eps;
      const Tensor plus = evaluate(f, x);
      p[e] = saved - options.eps;
      const Tensor minus = evaluate(f, x);
      p[e] = saved;
      const double* fp = plus.data<double>();
      const double* fm = minus.data<double>();
      for (std::int64_t k = 0; k < out_n; ++k) {
        const double numeric = (fp[k] - fm[k]) / (2 * options.eps);
        const double got = a[k * x[i].numel() + e];
        const double err = std::abs(got - numeric);
        result.max_error = std::max(result.max_error, err);
        if (err > options.atol + options.rtol * std::abs(numeric) && result.ok) {
          std::ostringstream os;
          os << "input " << i << " element " << e << ", output element " << k << ": analytic " << got
             << " vs numeric " << numeric << " (error " << err << ")";
          result.ok = false;
          result.message = os.str();
        }
      }
    }
  }
  if (result.ok) result.message = "max error " + std::to_string(result.max_error);
  return result;
}

}  // namespace zkynet
