#include <zkynet/framework/error.h>
#include <zkynet/framework/functional.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/session.h>

#include <cmath>
#include <sstream>

namespace zkynet {
namespace {

using Fn = std::function<NodeRef(std::span<const NodeRef>)>;

Tensor evaluate(const Fn& f, const std::vector<Tensor>& values) {
  NoGradGuard no_grad;
  const std::vector<NodeRef> refs(values.begin(), values.end());
  // NOTE: a clone, since f may return a view of its input, which the caller perturbs next.
  return f(refs).value().to(DType::Float64).clone();
}

// f at the converted inputs, or an error that says why gradcheck converted them.
std::vector<Tensor> analytic_jacobians(const Fn& f, const std::vector<Tensor>& x, const std::vector<int>& argnums,
                                       DType dtype) {
  try {
    return jacobian(f, argnums)(x);
  } catch (const TypeError& e) {
    throw TypeError("gradcheck: the function failed on " + std::string(dtype_name(dtype)) +
                    " inputs (gradcheck converts floating inputs to GradcheckOptions::dtype, float64 by default, "
                    "so central differences are accurate): " + e.what() +
                    ". If its parameters are float32 (layers are), convert the module first (module.to(DType::Float64)) "
                    "or check in float32 with options.dtype = DType::Float32 and looser tolerances");
  }
}

std::string number(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

}  // namespace

GradcheckResult gradcheck(const Fn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  if (!is_floating(options.dtype)) throw TypeError("gradcheck: options.dtype must be float32 or float64");
  std::vector<Tensor> x;
  std::vector<int> argnums;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const bool floating = is_floating(inputs[i].dtype());
    x.push_back(floating ? inputs[i].to(options.dtype).clone() : inputs[i]);
    if (floating) argnums.push_back(static_cast<int>(i));
  }
  GradcheckResult result;
  if (argnums.empty()) {
    result.message = "no floating-point input to differentiate";
    return result;
  }
  const std::vector<Tensor> jacobians = analytic_jacobians(f, x, argnums, options.dtype);
  for (std::size_t j = 0; j < argnums.size(); ++j) {
    const auto i = static_cast<std::size_t>(argnums[j]);
    const Tensor analytic = jacobians[j].to(DType::Float64).contiguous();
    const double* a = analytic.data<double>();
    const std::int64_t n = x[i].numel();
    const std::int64_t out_n = n == 0 ? 0 : analytic.numel() / n;
    Tensor flat = x[i].reshape({n});
    for (std::int64_t e = 0; e < n; ++e) {
      const double saved = flat.at({e});
      flat.slice(0, e, e + 1).fill_(saved + options.eps);
      const Tensor plus = evaluate(f, x);
      flat.slice(0, e, e + 1).fill_(saved - options.eps);
      const Tensor minus = evaluate(f, x);
      flat.slice(0, e, e + 1).fill_(saved);
      // The step actually taken: in float32, saved +- eps rounds.
      const double step = options.dtype == DType::Float64 ? 2 * options.eps
                                                           : static_cast<double>(static_cast<float>(saved + options.eps)) -
                                                                 static_cast<double>(static_cast<float>(saved - options.eps));
      const double* fp = plus.data<double>();
      const double* fm = minus.data<double>();
      for (std::int64_t k = 0; k < out_n; ++k) {
        const double numeric = (fp[k] - fm[k]) / step;
        const double got = a[k * n + e];
        const double err = std::abs(got - numeric);
        result.max_error = std::max(result.max_error, err);
        if (err > options.atol + options.rtol * std::abs(numeric) && result.ok) {
          std::ostringstream os;
          os.precision(10);
          os << "input " << i << " element " << e << ", output element " << k << ": analytic " << got
             << " vs numeric " << numeric << " (error " << number(err) << ", allowed "
             << number(options.atol + options.rtol * std::abs(numeric)) << ")";
          result.ok = false;
          result.message = os.str();
        }
      }
    }
  }
  if (result.ok) {
    result.message = "max error " + number(result.max_error) + " (" + std::string(dtype_name(options.dtype)) +
                     ", eps " + number(options.eps) + ")";
  }
  return result;
}

}  // namespace zkynet
