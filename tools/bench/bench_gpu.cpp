// The GPU suite's zkynet side (run by tools/gpu_check.sh next to ../shared/peers/gpu.py, the
// same workloads in PyTorch CUDA). Keys match the peer's:
//   copy_gbps               device-to-device copy of N float32 (Tensor::clone), bytes read + written
//   elementwise_expr_gbps   c = a*b + a as op::add(op::mult(a, b), a), 12 B/element
//   chain_fwdbwd_us_per_op  1000-op scalar chain (x*1.0001, x+0.0001) on a (1,) float32, fwd+bwd
//   mlp_gemm_floor_ms       the 8 GEMMs of an MLP 784-4096-4096-10 train step at batch 4096
//   mlp_train_step_ms       that MLP's step: forward, cross-entropy, backward, SGD (lr 0.01)
//   cnn_train_step_ms       the peer's ResNet-18-shaped stack (its no-torchvision fallback: conv 7x7/2,
//                           BN, ReLU, max-pool 3/2, 8 blocks of 2x (conv 3x3, BN, ReLU), global average
//                           pool, Linear(512, 10); no residual adds), batch 256 of 3x224x224, CE + SGD
//   lstm_fwdbwd_ms          nn::LSTM(512 -> 1024), T 100, batch 256, mean(out^2) + backward
//   input_{pageable,prefetch}_epoch_ms (only with --only input; no peer): 24 SGD steps of an MLP
//                           3072-2048-10 (MSE) fed by a DataLoader over host data, batch 1024:
//                           each batch moved with a blocking .to(device) from pageable memory, vs
//                           DataLoader(pin_memory, device): pinned batches, the next one's copy on
//                           the copy stream during the current step; meta.input_prefetch_speedup
//                           is the ratio of the medians (pageable / prefetch)
// Median/min/max over --samples timed calls after --warmup, each ended by cuda::synchronize().
// Peak device memory per training workload (meta.<workload>_peak_mib) from zkynet's caching
// allocator (cuda::memory_stats().peak_allocated_bytes, reset before each), as the peer reports
// torch.cuda.max_memory_allocated(). A workload whose kernels are missing reports its error in
// "unavailable" instead of a figure.
//
// usage: bench_gpu [--device cuda|cpu] [--samples 30] [--warmup 5] [--budget-s 20] [--small] [--only NAME,...]
//        --small: the peer's tiny sizes; with --device cpu it checks the program without a GPU
//        --only: elementwise (copy and c = a*b + a), chain, mlp, cnn, lstm (gpu.py's names), input
#include "bench_common.h"

#include <zkynet/data/dataloader.h>
#include <zkynet/data/dataset.h>

#include <zkynet/framework/cuda.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/normalization.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>
#include <zkynet/optim/sgd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

Device g_device;         // the workloads' device (--device)
double g_budget_s = 20;  // --budget-s: the most one workload may take; fewer samples when slow

void sync() {
  if (g_device.is_cuda()) cuda::synchronize(g_device.index);
}

// The first call (cuDNN's algorithm search, the allocator's first segments) is timed alone: when
// warm-up and samples would outlast --budget-s at its pace, fewer are taken (at least 1 sample),
// so that a slow workload cannot use up the GPU check's time.
zb::Stats timed_ms(const std::function<void()>& fn, int warmup, int samples) {
  const double first0 = zb::now_us();
  fn();
  sync();
  const double first_s = (zb::now_us() - first0) * 1e-6;
  if (first_s * (warmup + samples) > g_budget_s) {
    const int fit = static_cast<int>(g_budget_s / std::max(first_s, 1e-9));
    samples = std::max(1, std::min(samples, fit - 1));
    warmup = std::max(0, std::min(warmup - 1, fit - 1 - samples));
  } else {
    --warmup;
  }
  for (int i = 0; i < warmup; ++i) fn();
  sync();
  std::vector<double> out;
  for (int i = 0; i < samples; ++i) {
    const double t0 = zb::now_us();
    fn();
    sync();
    out.push_back((zb::now_us() - t0) * 1e-3);
  }
  return zb::stats(out);
}

// The input pipeline: the same training steps fed through blocking pageable copies, then through
// DataLoader(pin_memory, device) with its prefetching copy stream.
void input_pipeline(zb::Object& res, zb::Object& meta, bool small, int warmup, int samples) {
  const std::int64_t rows = small ? 64 : 1024, features = small ? 32 : 3072, hidden = small ? 16 : 2048;
  const std::int64_t steps = small ? 4 : 24;
  Generator gen(5);
  data::TensorDataset set({Tensor::randn({rows * steps, features}, gen, DType::Float32),
                           Tensor::randn({rows * steps, 10}, gen, DType::Float32)});
  nn::manual_seed(0);
  nn::Sequential mlp;
  mlp.add<nn::Linear>(features, hidden);
  mlp.add<nn::ReLU>();
  mlp.add<nn::Linear>(hidden, 10);
  mlp.to(g_device);
  optim::SGD opt(mlp.parameters(), {.lr = 1e-4});
  const auto step = [&](const Tensor& x, const Tensor& y) {
    opt.zero_grad();
    ModuleGraph out = mlp(x);
    ModuleGraph(op::mse_loss(out.root(), NodeRef(y))).back();
    opt.step();
  };
  data::DataLoader pageable(set, {.batch_size = rows});
  data::DataLoader prefetch(set, {.batch_size = rows, .pin_memory = true, .device = g_device});
  const zb::Stats a = timed_ms([&] {
    for (const data::Batch& b : pageable) step(b[0].to(g_device), b[1].to(g_device));
  }, warmup, samples);
  const zb::Stats b = timed_ms([&] {
    for (const data::Batch& batch : prefetch) step(batch[0], batch[1]);
  }, warmup, samples);
  res.add("input_pageable_epoch_ms", a).add("input_prefetch_epoch_ms", b);
  meta.add_number("input_steps", static_cast<double>(steps)).add_number("input_batch", static_cast<double>(rows));
  meta.add_number("input_prefetch_speedup", a.median / b.median);
  meta.add_number("input_pinned", prefetch.pins() ? 1 : 0);
}

// gpu.py's fallback ResNet-18-shaped stack (no residual adds), for hw x hw inputs.
void resnet18_stack(nn::Sequential& m, std::int64_t hw) {
  m.add<nn::Conv2d>(3, 64, 7, nn::Conv2dOptions{.stride = 2, .padding = 3, .bias = false});
  m.add<nn::BatchNorm2d>(64);
  m.add<nn::ReLU>();
  m.add<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2, .padding = 1});
  const std::int64_t blocks[8][3] = {{64, 64, 1},    {64, 64, 1},    {64, 128, 2},   {128, 128, 1},
                                     {128, 256, 2},  {256, 256, 1},  {256, 512, 2},  {512, 512, 1}};
  for (const auto& [cin, cout, stride] : blocks) {
    m.add<nn::Conv2d>(cin, cout, 3, nn::Conv2dOptions{.stride = stride, .padding = 1, .bias = false});
    m.add<nn::BatchNorm2d>(cout);
    m.add<nn::ReLU>();
    m.add<nn::Conv2d>(cout, cout, 3, nn::Conv2dOptions{.padding = 1, .bias = false});
    m.add<nn::BatchNorm2d>(cout);
    m.add<nn::ReLU>();
  }
  // The spatial size left after the five halvings is averaged away (AdaptiveAvgPool2d(1)).
  const std::int64_t left = std::max<std::int64_t>(1, hw / 32);
  m.add<nn::AvgPool2d>(left);
  m.add<nn::Flatten>();
  m.add<nn::Linear>(512, 10);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string device_name = zb::arg_str(argc, argv, "--device", "cuda");
  try {
    g_device = Device::parse(device_name);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: --device %s: %s\n", device_name.c_str(), e.what());
    return 2;
  }
  if (g_device.is_cuda() && !cuda::is_available()) {
    std::fprintf(stderr, "bench_gpu: no CUDA device answers (run with --device cpu --small to check the program)\n");
    return 77;
  }
  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 30));
  g_budget_s = static_cast<double>(zb::arg_long(argc, argv, "--budget-s", 20));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 5));
  const bool small = zb::arg_flag(argc, argv, "--small");
  std::set<std::string> only;
  {
    std::istringstream list(zb::arg_str(argc, argv, "--only", ""));
    for (std::string name; std::getline(list, name, ',');) {
      if (!name.empty()) only.insert(name);
    }
  }
  const auto wanted = [&](const char* name) { return only.empty() || only.contains(name); };
  const std::int64_t n = std::int64_t{1} << (small ? 16 : 28);
  const Device gpu = g_device;
  zb::Object res;
  zb::Object unavailable;
  zb::Object meta;
  const auto attempt = [&](const std::string& name, const std::function<void()>& body) {
    try {
      body();
    } catch (const std::exception& e) {
      unavailable.add_string(name, e.what());
    }
  };
  // Peak device memory of one workload: the allocator's peak since a reset, its cache emptied
  // first (as the peer's torch.cuda.empty_cache() + reset_peak_memory_stats()).
  const auto peak_reset = [&] {
    if (!gpu.is_cuda()) return;
    cuda::empty_cache(gpu.index);
    cuda::reset_peak_memory_stats(gpu.index);
  };
  const auto peak_mib = [&](const std::string& key) {
    if (!gpu.is_cuda()) return;
    meta.add_number(key, static_cast<double>(cuda::memory_stats(gpu.index).peak_allocated_bytes) / (1 << 20));
  };

  if (wanted("elementwise")) attempt("copy", [&] {
    const Tensor a = Tensor::ones({n}, DType::Float32, gpu);
    const zb::Stats t = timed_ms([&] { a.clone(); }, warmup, samples);
    res.add("copy_gbps", zb::invert(zb::Stats{t.median * 1e-3, t.min * 1e-3, t.max * 1e-3, t.n}, 8.0 * n / 1e9));
  });
  if (wanted("elementwise")) attempt("elementwise", [&] {
    Generator gen(0);
    const Tensor a = Tensor::randn({n}, gen, DType::Float32, gpu);
    const Tensor b = Tensor::randn({n}, gen, DType::Float32, gpu);
    NoGradGuard no_grad;
    const zb::Stats t = timed_ms([&] { op::add(op::mult(a, b), a); }, warmup, samples);
    res.add("elementwise_expr_gbps", zb::invert(zb::Stats{t.median * 1e-3, t.min * 1e-3, t.max * 1e-3, t.n}, 12.0 * n / 1e9));
  });
  if (wanted("chain")) attempt("chain", [&] {
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
  if (wanted("mlp")) attempt("mlp_gemm_floor", [&] {
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
  if (wanted("mlp")) attempt("mlp_train_step", [&] {
    peak_reset();
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
    peak_mib("mlp_peak_mib");
  });
  const std::int64_t cnn_batch = small ? 2 : 256, cnn_hw = small ? 32 : 224;
  if (wanted("cnn")) attempt("cnn_train_step", [&] {
    peak_reset();
    nn::manual_seed(0);
    nn::Sequential cnn;
    resnet18_stack(cnn, cnn_hw);
    cnn.to(gpu);
    optim::SGD opt(cnn.parameters(), {.lr = 0.01});
    Generator gen(3);
    const Tensor x = Tensor::randn({cnn_batch, 3, cnn_hw, cnn_hw}, gen, DType::Float32, gpu);
    const Tensor y = Tensor::uniform({cnn_batch}, 0.0, 10.0, gen, DType::Float32).to(DType::Int64).to(gpu);
    const zb::Stats t = timed_ms([&] {
      opt.zero_grad();
      ModuleGraph out = cnn(x);
      ModuleGraph loss(op::cross_entropy(out.root(), y));
      loss.back();
      opt.step();
    }, warmup, samples);
    res.add("cnn_train_step_ms", t);
    peak_mib("cnn_peak_mib");
  });
  // T, B, in, hidden
  const std::int64_t lstm_t = small ? 5 : 100, lstm_b = small ? 4 : 256, lstm_in = small ? 16 : 512,
                     lstm_h = small ? 32 : 1024;
  if (wanted("lstm")) attempt("lstm_fwdbwd", [&] {
    peak_reset();
    nn::manual_seed(0);
    nn::LSTM lstm(lstm_in, lstm_h);
    lstm.to(gpu);
    Generator gen(4);
    const Tensor x = Tensor::randn({lstm_t, lstm_b, lstm_in}, gen, DType::Float32, gpu);
    const zb::Stats t = timed_ms([&] {
      lstm.zero_grad();
      ModuleGraph out = lstm(x);
      ModuleGraph loss(op::mean(op::mult(out.root(), out.root())));
      loss.back();
    }, warmup, samples);
    res.add("lstm_fwdbwd_ms", t);
    peak_mib("lstm_peak_mib");
  });

  if (only.contains("input")) attempt("input_pipeline", [&] { input_pipeline(res, meta, small, warmup, samples); });

  meta.add_string("device", gpu.str()).add_number("small", small ? 1 : 0);
  meta.add_number("n", static_cast<double>(n)).add_number("mlp_batch", static_cast<double>(batch));
  meta.add_number("cnn_batch", static_cast<double>(cnn_batch)).add_number("cnn_hw", static_cast<double>(cnn_hw));
  meta.add_string("cnn_model", "resnet18-shaped stack (no residual adds)");
  meta.add("unavailable", unavailable.str());
  if (gpu.is_cuda()) {
    const auto mem = cuda::memory_stats(gpu.index);
    meta.add_number("peak_allocated_mib", static_cast<double>(mem.peak_allocated_bytes) / (1 << 20));
  }
  std::printf("%s\n", zb::Object().add_string("bench", "gpu").add("results", res.str()).add("meta", meta.str()).str().c_str());
  return 0;
}
