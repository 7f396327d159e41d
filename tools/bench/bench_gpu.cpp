// The GPU suite's zkynet side (run by tools/gpu_check.sh next to ../shared/peers/gpu.py, the
// same workloads in PyTorch CUDA). Keys match the peer's:
//   copy_gbps               device-to-device copy of N float32 (Tensor::clone), bytes read + written
//   elementwise_expr_gbps   c = a*b + a as op::add(op::mult(a, b), a), 12 B/element
//   chain_fwdbwd_us_per_op  1000-op scalar chain (x*1.0001, x+0.0001) on a (1,) float32, fwd+bwd
//   mlp_gemm_floor_ms       the 8 GEMMs of an MLP 784-4096-4096-10 train step at batch 4096
//   mlp_train_step_ms       that MLP's step: forward, cross-entropy, backward, SGD (lr 0.01)
// Median/min/max over --samples timed calls after --warmup, each ended by cuda::synchronize().
// A workload whose kernels are missing reports its error in "unavailable" instead of a figure.
//
// usage: bench_gpu [--samples 30] [--warmup 5] [--small 1]
#include "bench_common.h"

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/sgd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

zb::Stats timed_ms(const std::function<void()>& fn, int warmup, int samples) {
  for (int i = 0; i < warmup; ++i) fn();
  cuda::synchronize();
  std::vector<double> out;
  for (int i = 0; i < samples; ++i) {
    const double t0 = zb::now_us();
    fn();
    cuda::synchronize();
    out.push_back((zb::now_us() - t0) * 1e-3);
  }
  return zb::stats(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda::is_available()) {
    std::fprintf(stderr, "bench_gpu: no CUDA device answers\n");
    return 77;
  }
  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 30));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 5));
  const bool small = zb::arg_long(argc, argv, "--small", 0) != 0;
  const std::int64_t n = std::int64_t{1} << (small ? 16 : 28);
  const Device gpu = Device::cuda();
  zb::Object res;
  zb::Object unavailable;
  const auto attempt = [&](const std::string& name, const std::function<void()>& body) {
    try {
      body();
    } catch (const std::exception& e) {
      unavailable.add_string(name, e.what());
    }
  };

  attempt("copy", [&] {
    const Tensor a = Tensor::ones({n}, DType::Float32, gpu);
    const zb::Stats t = timed_ms([&] { a.clone(); }, warmup, samples);
    res.add("copy_gbps", zb::invert(zb::Stats{t.median * 1e-3, t.min * 1e-3, t.max * 1e-3, t.n}, 8.0 * n / 1e9));
  });
  attempt("elementwise", [&] {
    Generator gen(0);
    const Tensor a = Tensor::randn({n}, gen, DType::Float32, gpu);
    const Tensor b = Tensor::randn({n}, gen, DType::Float32, gpu);
    NoGradGuard no_grad;
    const zb::Stats t = timed_ms([&] { op::add(op::mult(a, b), a); }, warmup, samples);
    res.add("elementwise_expr_gbps", zb::invert(zb::Stats{t.median * 1e-3, t.min * 1e-3, t.max * 1e-3, t.n}, 12.0 * n / 1e9));
  });
  attempt("chain", [&] {
    const Tensor x0 = Tensor::ones({1}, DType::Float32, gpu);
    const Tensor mul_c = Tensor::scalar(1.0001, DType::Float32);
    const Tensor add_c = Tensor::scalar(0.0001, DType::Float32);
    Lambda chain({"x"}, [&](std::span<const NodeRef> in) {
      NodeRef x = in[0];
      for (int i = 0; i < 500; ++i) x = op::add(op::mult(x, mul_c), add_c);
      return op::sum(x);
    });
    const std::array<NodeRef, 1> args{NodeRef(x0)};
    const zb::Stats t = timed_ms([&] { chain.invoke(args).back(); }, warmup, samples);
    res.add("chain_fwdbwd_us_per_op", zb::Stats{t.median, t.min, t.max, t.n});  // ms per 1000 ops = us per op
  });
  const std::int64_t batch = small ? 64 : 4096, hidden = small ? 64 : 4096;
  attempt("mlp_gemm_floor", [&] {
    Generator gen(1);
    const Tensor x = Tensor::randn({batch, 784}, gen, DType::Float32, gpu);
    const Tensor w1 = Tensor::randn({hidden, 784}, gen, DType::Float32, gpu);
    const Tensor w2 = Tensor::randn({hidden, hidden}, gen, DType::Float32, gpu);
    const Tensor w3 = Tensor::randn({10, hidden}, gen, DType::Float32, gpu);
    const Tensor h = Tensor::randn({batch, hidden}, gen, DType::Float32, gpu);
    const Tensor g3 = Tensor::randn({batch, 10}, gen, DType::Float32, gpu);
    const zb::Stats t = timed_ms([&] {
      kernels::matmul_t(x, false, w1, true);          // forward
      kernels::matmul_t(h, false, w2, true);
      kernels::matmul_t(h, false, w3, true);
      kernels::matmul_t(g3, true, h, false);          // backward: weight and input gradients
      kernels::matmul_t(g3, false, w3, false);
      kernels::matmul_t(h, true, h, false);
      kernels::matmul_t(h, false, w2, false);
      kernels::matmul_t(h, true, x, false);
    }, warmup, samples);
    res.add("mlp_gemm_floor_ms", t);
  });
  attempt("mlp_train_step", [&] {
    nn::manual_seed(0);
    nn::Sequential mlp;
    mlp.add<nn::Linear>(784, hidden);
    mlp.add<nn::ReLU>();
    mlp.add<nn::Linear>(hidden, hidden);
    mlp.add<nn::ReLU>();
    mlp.add<nn::Linear>(hidden, 10);
    mlp.to(gpu);
    optim::SGD opt(mlp.parameters(), {.lr = 0.01});
    Generator gen(2);
    const Tensor x = Tensor::randn({batch, 784}, gen, DType::Float32, gpu);
    const Tensor y = Tensor::uniform({batch}, 0.0, 10.0, gen, DType::Float32).to(DType::Int64).to(gpu);
    const zb::Stats t = timed_ms([&] {
      opt.zero_grad();
      ModuleGraph out = mlp(x);
      ModuleGraph loss(op::cross_entropy(out.root(), y));
      loss.back();
      opt.step();
    }, warmup, samples);
    res.add("mlp_train_step_ms", t);
  });

  zb::Object meta;
  meta.add_number("n", static_cast<double>(n)).add_number("mlp_batch", static_cast<double>(batch));
  meta.add("unavailable", unavailable.str());
  const auto mem = cuda::memory_stats();
  meta.add_number("peak_allocated_mib", static_cast<double>(mem.peak_allocated_bytes) / (1 << 20));
  std::printf("%s\n", zb::Object().add_string("bench", "gpu").add("results", res.str()).add("meta", meta.str()).str().c_str());
  return 0;
}
