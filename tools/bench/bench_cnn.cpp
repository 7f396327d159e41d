// Small CNN training step on 1x28x28 inputs, batch 64, cross-entropy, plain SGD (lr 0.01),
// float32. Same workload as shared/peers/cnn.py:
//   model   nn::Sequential{Conv2d(1,16,3), ReLU, MaxPool2d(2),     -> (64, 16, 13, 13)
//                          Conv2d(16,32,3), ReLU, MaxPool2d(2),    -> (64, 32, 5, 5)
//                          Flatten, Linear(800, 10)}, torch's default initialization, seed 0
//   data    x ~ N(0, 1) (64, 1, 28, 28) float32, y uniform in [0, 10) int64: one fixed batch
//   step    opt.zero_grad() + forward + op::cross_entropy (mean) + ModuleGraph::back() +
//           opt.step(), timed as one call
//   infer   forward only under NoGradGuard, --steps calls
// x and y take no gradient (as in PyTorch). --steps 100 after --warmup 10; phase breakdown too.
// FLOPs (conv + linear MACs x 2): fwd 64*(16*26*26*9 + 32*11*11*16*9 + 800*10)*2 = 84.9 MFLOP,
// train counted as 3x.
//
// usage: bench_cnn [--steps 100] [--warmup 10] [--no-breakdown]
//        [--loop N --variant train|infer]   (profiling: N bare calls, no JSON)
#include "train_bench.h"

#include <zkynet/framework/module.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/sgd.h>

#include <array>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

using namespace zkynet;
namespace zt = zkynet::bench::train;

int main(int argc, char** argv) {
  constexpr std::int64_t B = 64, C = 10;
  constexpr double kFwdFlop = 2.0 * B * (16 * 26 * 26 * 9 + 32 * 11 * 11 * 16 * 9 + 800 * 10);

  Generator gen(0);
  nn::Sequential model;
  model.add<nn::Conv2d>(1, 16, 3, nn::Conv2dOptions{.generator = &gen});
  model.add<nn::ReLU>();
  model.add<nn::MaxPool2d>(2);
  model.add<nn::Conv2d>(16, 32, 3, nn::Conv2dOptions{.generator = &gen});
  model.add<nn::ReLU>();
  model.add<nn::MaxPool2d>(2);
  model.add<nn::Flatten>();
  model.add<nn::Linear>(32 * 5 * 5, C, nn::LinearOptions{.generator = &gen});
  optim::SGD opt(model.parameters(), {.lr = 0.01});

  const Tensor x = Tensor::randn({B, 1, 28, 28}, gen, DType::Float32);
  std::vector<std::int64_t> labels(B);
  std::uniform_int_distribution<std::int64_t> pick(0, C - 1);
  for (auto& l : labels) l = pick(gen.engine());
  const Tensor y = Tensor::from_vector(labels, {B});
  {
    NoGradGuard no_grad;
    const Tensor out = model(x).value();
    if (out.shape() != Shape{B, C}) zt::fail("bench_cnn", "model output shape " + shape_str(out.shape()));
  }

  Lambda objective(
      {"x", "y"},
      [&](std::span<const NodeRef> in) {
        const std::array<NodeRef, 1> input{in[0]};
        return op::cross_entropy(model.invoke(input).root(), in[1]);
      },
      "CNNObjective");
  objective.input("x").requires_grad(false);
  objective.input("y").requires_grad(false);

  zt::Step step;
  step.zero_grad = [&] { opt.zero_grad(); };
  step.forward = [&] { return objective(x, y); };
  step.update = [&] { opt.step(); };
  step.infer = [&] { model(x); };

  zt::Options o;
  o.program = "bench_cnn";
  o.bench = "zkynet_cnn_mnistlike_b64";
  o.step_key = "train_step";
  o.step_flop = 3 * kFwdFlop;
  o.infer_flop = kFwdFlop;
  o.loss_must_drop = true;
  o.check = [&]() -> std::string {
    for (const auto& [name, p] : model.named_parameters()) {
      if (!p.grad().defined()) return "parameter " + name + " has no gradient";
    }
    return "";
  };

  bench::Object meta;
  meta.add_number("batch", B)
      .add_number("fwd_mflop", kFwdFlop / 1e6)
      .add_string("model",
                  "Sequential(Conv2d(1,16,3), ReLU, MaxPool2d(2), Conv2d(16,32,3), ReLU, MaxPool2d(2), Flatten, "
                  "Linear(800,10)) float32")
      .add_string("loss", "op::cross_entropy mean; optim::SGD lr 0.01");
  return zt::run(argc, argv, o, step, meta);
}
