// Elementwise c = a*b + a on N = 10,000,000 float32: effective GB/s, counting the minimal
// traffic of the expression, 12 bytes per element (read a, read b, write c), as
// shared/peers/elementwise.py does.
//
// Variants (all under zkynet::NoGradGuard: values only, no graph):
//   zkynet_expr              op::add(op::mult(a, b), a): two operators, two passes, a
//                            temporary and a fresh output each call (from the caching allocator)
//   zkynet_fused             op::elementwise(Fma{}, a, b): one Jacobian-based elementwise
//                            operator, one pass, whose functor is the generic a*b + a
//   parallel_for_prealloc    reference: zkynet::parallel_for writing a preallocated c (no
//                            operator, no allocation): what the threads and memory allow
// Each figure: median (and min/max) over --samples timed calls after --warmup calls.
// Results are checked against a plain serial loop before timing; a mismatch fails loudly.
//
// usage: bench_elementwise [--n 10000000] [--samples 21] [--warmup 3]
//        [--loop K --variant expr|fused]   (profiling: K calls, no JSON)
#include "bench_common.h"

#include <zkynet/framework/allocator.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/framework/session.h>
#include <zkynet/framework/tensor.h>
#include <zkynet/ops/jacobian.h>
#include <zkynet/ops/ops.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

// c = a*b + a, written once over the scalar type (dual numbers give its derivatives).
struct Fma {
  static constexpr std::string_view name = "fma";
  static constexpr std::array<std::string_view, 2> inputs{"a", "b"};
  template <class S>
  S operator()(S a, S b) const {
    return a * b + a;
  }
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "bench_elementwise: FAILED: %s\n", what.c_str());
  std::exit(1);
}

// |c - ref| within a few roundings of |a*b| + |a| (an FMA and mul-then-add differ by one).
void verify(const char* variant, const Tensor& c, const std::vector<float>& ref, const float* a, const float* b) {
  if (c.dtype() != DType::Float32 || c.numel() != static_cast<std::int64_t>(ref.size()) || !c.is_contiguous()) {
    fail(std::string(variant) + ": result has dtype " + std::string(dtype_name(c.dtype())) + ", shape " +
         shape_str(c.shape()));
  }
  const float* p = c.data<float>();
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double scale = std::fabs(static_cast<double>(a[i]) * b[i]) + std::fabs(static_cast<double>(a[i]));
    if (!(std::fabs(static_cast<double>(p[i]) - ref[i]) <= 4e-7 * scale + 1e-30)) {
      fail(std::string(variant) + ": element " + std::to_string(i) + " is " + std::to_string(p[i]) + ", expected " +
           std::to_string(ref[i]));
    }
  }
}

std::vector<double> time_calls(const std::function<void()>& fn, int warmup, int samples) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> out;
  for (int i = 0; i < samples; ++i) {
    const double t0 = zb::now_us();
    fn();
    out.push_back((zb::now_us() - t0) * 1e-6);  // seconds
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t n = zb::arg_long(argc, argv, "--n", 10'000'000);
  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 21));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 3));
  const long loop = zb::arg_long(argc, argv, "--loop", 0);
  const std::string loop_variant = zb::arg_str(argc, argv, "--variant", "expr");

  Generator gen(0);
  const Tensor a = Tensor::randn({n}, gen, DType::Float32);
  const Tensor b = Tensor::randn({n}, gen, DType::Float32);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();

  NoGradGuard no_grad;
  auto expr = [&] { return op::add(op::mult(a, b), a).value(); };
  auto fused = [&] { return op::elementwise(Fma{}, a, b).value(); };

  if (loop > 0) {  // profiling mode
    if (loop_variant != "expr" && loop_variant != "fused") fail("--variant: expr or fused");
    const double t0 = zb::now_us();
    for (long i = 0; i < loop; ++i) (loop_variant == "expr" ? expr() : fused());
    const double s = (zb::now_us() - t0) * 1e-6 / static_cast<double>(loop);
    std::fprintf(stderr, "%s: %ld calls, %.3f ms per call, %.2f GB/s effective\n", loop_variant.c_str(), loop, s * 1e3,
                 12.0 * static_cast<double>(n) / s / 1e9);
    return 0;
  }

  // Correctness against a plain loop.
  std::vector<float> ref(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) ref[static_cast<std::size_t>(i)] = pa[i] * pb[i] + pa[i];
  verify("zkynet_expr", expr(), ref, pa, pb);
  verify("zkynet_fused", fused(), ref, pa, pb);

  Tensor c = Tensor::empty({n}, DType::Float32);
  float* pc = c.data<float>();
  auto prealloc = [&] {
    parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) pc[i] = pa[i] * pb[i] + pa[i];
    });
  };
  prealloc();
  verify("parallel_for_prealloc", c, ref, pa, pb);

  zb::Object res;
  const double bytes = 12.0 * static_cast<double>(n);
  const auto s0 = cpu_allocator_stats();
  for (const auto& [name, fn] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"zkynet_expr", [&] { expr(); }},
           {"zkynet_fused", [&] { fused(); }},
           {"parallel_for_prealloc", prealloc}}) {
    const zb::Stats t = zb::stats(time_calls(fn, warmup, samples));
    res.add(name + "_GBps_eff", zb::invert(t, bytes / 1e9));
    res.add(name + "_ms", zb::Stats{t.median * 1e3, t.min * 1e3, t.max * 1e3, t.n});
  }
  const auto s1 = cpu_allocator_stats();

  zb::Object meta;
  meta.add_number("n", static_cast<double>(n))
      .add_number("bytes_counted_per_elem", 12)
      .add_number("samples", samples)
      .add_number("warmup", warmup)
      .add_number("zkynet_num_threads", num_threads())
      .add_number("allocator_misses_while_timing", static_cast<double>(s1.misses - s0.misses))
      .add_number("allocator_hits_while_timing", static_cast<double>(s1.hits - s0.hits))
      .add_string("verified_against", "plain serial loop, |err| <= 4e-7 (|a*b| + |a|)")
      .add("env", zb::env_json());
  zb::emit("zkynet_elementwise_f32", res, meta);
  return 0;
}
