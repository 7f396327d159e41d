// Data-parallel training throughput: the MLP 784-512-512-10 of bench_mlp, global batch 128
// split over the ranks it runs on (mpiexec -n 1 or 2), cross entropy + SGD, gradients
// averaged by dist::DataParallel. Each step: zero_grad, forward, backward, gradient
// allreduce, update; a barrier before each timed step so ranks start together. Prints one
// JSON line (rank 0): step time, samples/s, and the allreduce share of the step.
//
//   mpiexec -n 2 bench_dp_mlp [--steps 50] [--warmup 10]
#include "bench_common.h"

#include <zkynet/distributed/data_parallel.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/sgd.h>

#include <vector>

using namespace zkynet;
using namespace zkynet::bench;

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  const dist::Communicator world = dist::world();
  const long steps = arg_long(argc, argv, "--steps", 50);
  const long warmup = arg_long(argc, argv, "--warmup", 10);
  constexpr std::int64_t kBatch = 128, kIn = 784, kHidden = 512, kOut = 10;

  Generator gen(0);
  nn::Sequential model;
  model.add<nn::Linear>(kIn, kHidden, nn::LinearOptions{.generator = &gen});
  model.add<nn::ReLU>();
  model.add<nn::Linear>(kHidden, kHidden, nn::LinearOptions{.generator = &gen});
  model.add<nn::ReLU>();
  model.add<nn::Linear>(kHidden, kOut, nn::LinearOptions{.generator = &gen});
  dist::DataParallel dp(model, world);
  optim::SGD opt(model.parameters(), {.lr = 0.01});

  Generator data_gen(1);
  const Tensor x = Tensor::randn({kBatch, kIn}, data_gen, DType::Float32);
  std::vector<std::int64_t> labels;
  for (std::int64_t i = 0; i < kBatch; ++i) labels.push_back(i % kOut);
  const Tensor y = Tensor::from_vector(labels, {kBatch});
  const auto [begin, end] = dp.shard(kBatch);
  const Tensor x_local = x.slice(0, begin, end).contiguous(), y_local = y.slice(0, begin, end).contiguous();

  Lambda objective({"x", "y"}, [&](std::span<const NodeRef> in) {
    const std::array<NodeRef, 1> args{in[0]};
    return op::cross_entropy(model.invoke(args).root(), in[1]);
  });
  objective.input("x").requires_grad(false);  // data: no gradient needed
  objective.input("y").requires_grad(false);

  std::vector<double> step_ms, allreduce_ms;
  for (long i = 0; i < warmup + steps; ++i) {
    world.barrier();
    const double t0 = now_us();
    opt.zero_grad();
    ModuleGraph g = objective(x_local, y_local);
    g.back();
    const double t1 = now_us();
    dp.average_gradients(end - begin);
    const double t2 = now_us();
    opt.step();
    const double t3 = now_us();
    if (i >= warmup) {
      step_ms.push_back((t3 - t0) / 1e3);
      allreduce_ms.push_back((t2 - t1) / 1e3);
    }
  }
  if (world.rank() == 0) {
    const Stats step = stats(step_ms);
    Object results;
    results.add("train_step_ms", step)
        .add("samples_per_s", invert(step, kBatch * 1e3))
        .add("gradient_allreduce_ms", stats(allreduce_ms));
    Object meta;
    meta.add_number("ranks", world.size())
        .add_number("global_batch", kBatch)
        .add_number("buckets", static_cast<double>(dp.bucket_count()))
        .add_string("model", "Sequential(Linear(784,512), ReLU, Linear(512,512), ReLU, Linear(512,10)) float32")
        .add("env", env_json());
    emit("zkynet_dp_mlp_np" + std::to_string(world.size()), results, meta);
  }
  return 0;
}
