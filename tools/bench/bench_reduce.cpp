// Reductions on 10,000,000 float32 (the workloads of tools/bench/peers/reduce.py, in PyTorch):
//   sum_all     op::sum(x) over a contiguous (10M,) tensor: one output
//   sum_rows    sum over axis 0 of (10000, 1000): a bias gradient's shape (a row of accumulators)
//   sum_cols    sum over axis 1 of (10000, 1000): one contiguous run per output
//   mean_nchw   mean over (0, 2, 3) of (100, 10, 100, 100): batch-norm statistics
//   mse         mse_loss(a, b) over (10M,): elementwise, then a full reduction
// Each figure: median (and min/max) milliseconds over --samples calls after --warmup calls.
// Results are checked against a long double reference first (relative error <= 1e-6).
//
// usage: bench_reduce [--samples 21] [--warmup 3]
#include "bench_common.h"

#include <zkynet/framework/session.h>
#include <zkynet/framework/tensor.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "bench_reduce: FAILED: %s\n", what.c_str());
  std::exit(1);
}

void expect_close(const char* what, double got, long double want) {
  if (!(std::fabs(static_cast<double>((static_cast<long double>(got) - want) / want)) <= 1e-6)) {
    fail(std::string(what) + ": got " + std::to_string(got) + ", expected " + std::to_string(static_cast<double>(want)));
  }
}

std::vector<double> time_ms(const std::function<void()>& fn, int warmup, int samples) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> out;
  for (int i = 0; i < samples; ++i) {
    const double t0 = zb::now_us();
    fn();
    out.push_back((zb::now_us() - t0) * 1e-3);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 21));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 3));
  constexpr std::int64_t n = 10'000'000;

  Generator gen(0);
  const Tensor a = Tensor::randn({n}, gen, DType::Float32);
  const Tensor b = Tensor::randn({n}, gen, DType::Float32);
  const Tensor m = a.reshape({10000, 1000});
  const Tensor img = a.reshape({100, 10, 100, 100});
  NoGradGuard no_grad;

  // Correctness first: sums and the loss against long double references.
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  long double total = 0, sq = 0, col0 = 0, row0 = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    total += pa[i];
    const float d = pa[i] - pb[i];
    sq += static_cast<long double>(d) * d;
  }
  for (std::int64_t r = 0; r < 10000; ++r) col0 += pa[r * 1000];
  for (std::int64_t j = 0; j < 1000; ++j) row0 += pa[j];
  expect_close("sum_all", op::sum(a).value().item(), total);
  expect_close("sum_rows", op::sum(m, {0}).value().at({0}), col0);
  expect_close("sum_cols", op::sum(m, {1}).value().at({0}), row0);
  expect_close("mse", op::mse_loss(a, b).value().item(), sq / n);

  zb::Object res;
  for (const auto& [name, fn] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"sum_all", [&] { op::sum(a); }},
           {"sum_rows", [&] { op::sum(m, {0}); }},
           {"sum_cols", [&] { op::sum(m, {1}); }},
           {"mean_nchw", [&] { op::mean(img, {0, 2, 3}); }},
           {"mse", [&] { op::mse_loss(a, b); }}}) {
    res.add("zkynet_" + name + "_ms", zb::stats(time_ms(fn, warmup, samples)));
  }
  zb::Object meta;
  meta.add_number("n", static_cast<double>(n)).add("env", zb::env_json());
  std::printf("%s\n", zb::Object().add_string("bench", "reduce").add("results", res.str()).add("meta", meta.str()).str().c_str());
  return 0;
}
