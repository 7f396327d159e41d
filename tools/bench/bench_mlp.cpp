// MLP training step: 784 -> 512 -> ReLU -> 512 -> ReLU -> 10, cross-entropy, batch 128, plain
// SGD (lr 0.01, no momentum), float32. Same workload as shared/peers/mlp.py:
//   model   nn::Sequential{Linear(784,512), ReLU, Linear(512,512), ReLU, Linear(512,10)}, torch's
//           default initialization (Kaiming-uniform weights, U(+-1/sqrt(fan_in)) biases), seed 0
//   data    x ~ N(0, 1) (128, 784) float32, y uniform in [0, 10) int64: one fixed batch
//   step    opt.zero_grad() (gradients refilled in place, as torch 1.13's default) + forward +
//           op::cross_entropy (mean) + ModuleGraph::back() + opt.step(), timed as one call
//   infer   forward only under NoGradGuard, 2 x --steps calls (as the peer)
// x and y are inputs of the objective that take no gradient (PyTorch computes no dL/dx either).
// --steps 100 timed steps after --warmup 10; also a phase breakdown (see train_bench.h).
// FLOPs: forward 2*128*(784*512 + 512*512 + 512*10) = 171.2 MFLOP, train counted as 3x
// (the GEMMs of a step are 410.5 MFLOP: 3 forward, 3 weight gradients, 2 input gradients).
//
// Diagnostics (after the step figures; each a median over --steps calls after --warmup), the
// floors a step is made of, computed with zkynet::kernels directly (no graph):
//   floor_gemms_ms              the step's 8 GEMMs (kernels::matmul_t, shapes and transposes
//                               as a graph-free implementation would use them)
//   floor_gemms_fwd_ms          the 3 forward GEMMs (what inference is made of)
//   floor_elementwise_ms        bias adds, ReLU and its backward, bias-gradient sums (sum_to)
//   grad_accumulate_transposed_ms   adding the three weight gradients, computed (in, out) by the
//                               transpose's VJP as non-contiguous views, into (out, in) gradients
//                               (Tensor::add_: what accumulate_grad does each step)
//   grad_accumulate_contiguous_ms   the same adds from contiguous (out, in) gradients
//   weights_in_out_train_step_ms    the same train step (same initial values, data, loss and
//                               SGD) with the Linear layers written as y = x @ Wt + b, Wt a
//                               contiguous (in, out) parameter: no transpose node, so the weight
//                               gradients arrive contiguous. What a Linear whose backward computes
//                               dW = g^T x directly as (out, in) would give (a library fix, shown
//                               here without changing the library); its first loss must match.
//
// usage: bench_mlp [--steps 100] [--warmup 10] [--no-breakdown]
//        [--loop N --variant train|infer|gemms|elementwise|accumulate_transposed|accumulate_contiguous]
//        (profiling: N bare calls, no JSON)
#include "train_bench.h"

#include <zkynet/framework/module.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>
#include <zkynet/optim/sgd.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <random>
#include <span>
#include <vector>

using namespace zkynet;
namespace zt = zkynet::bench::train;

namespace {

// Linear with its weight stored transposed, (in, out): y = x @ Wt + b (see the header).
class LinearInOut : public Module<LinearInOut> {
 public:
  LinearInOut(const Tensor& weight_out_in, const Tensor& bias) : Module({Variable("x")}) {
    register_parameter("weight_t", weight_out_in.transpose(0, 1).contiguous());
    register_parameter("bias", bias.clone());
  }
  NodeRef call(const NodeRef& x) { return op::add(op::matmul(x, param("weight_t")), param("bias")); }
};

}  // namespace

int main(int argc, char** argv) {
  constexpr std::int64_t B = 128, DIN = 784, H = 512, DOUT = 10;
  constexpr double kFwdFlop = 2.0 * B * (DIN * H + H * H + H * DOUT);

  Generator gen(0);
  nn::Sequential model;
  model.add<nn::Linear>(DIN, H, nn::LinearOptions{.generator = &gen});
  model.add<nn::ReLU>();
  model.add<nn::Linear>(H, H, nn::LinearOptions{.generator = &gen});
  model.add<nn::ReLU>();
  model.add<nn::Linear>(H, DOUT, nn::LinearOptions{.generator = &gen});
  optim::SGD opt(model.parameters(), {.lr = 0.01});

  const Tensor x = Tensor::randn({B, DIN}, gen, DType::Float32);
  std::vector<std::int64_t> labels(B);
  std::uniform_int_distribution<std::int64_t> pick(0, DOUT - 1);
  for (auto& l : labels) l = pick(gen.engine());
  const Tensor y = Tensor::from_vector(labels, {B});

  Lambda objective(
      {"x", "y"},
      [&](std::span<const NodeRef> in) {
        const std::array<NodeRef, 1> input{in[0]};
        return op::cross_entropy(model.invoke(input).root(), in[1]);
      },
      "MLPObjective");
  objective.input("x").requires_grad(false);
  objective.input("y").requires_grad(false);

  zt::Step step;
  step.zero_grad = [&] { opt.zero_grad(); };
  step.forward = [&] { return objective(x, y); };
  step.update = [&] { opt.step(); };
  step.infer = [&] { model(x); };

  zt::Options o;
  o.program = "bench_mlp";
  o.bench = "zkynet_mlp_784_512_512_10_b128";
  o.step_key = "train_step";
  o.step_flop = 3 * kFwdFlop;
  o.infer_flop = kFwdFlop;
  o.infer_steps_factor = 2;
  o.loss_must_drop = true;
  o.check = [&]() -> std::string {
    for (const auto& [name, p] : model.named_parameters()) {
      if (!p.grad().defined()) return "parameter " + name + " has no gradient";
    }
    return "";
  };

  // ---- floors (diagnostics) --------------------------------------------------------------
  std::map<std::string, Tensor> values;
  for (const auto& [name, p] : model.named_parameters()) values[name] = p.value();
  const Tensor w1 = values.at("0.weight"), w2 = values.at("2.weight"), w3 = values.at("4.weight");
  const Tensor b1 = values.at("0.bias"), b2 = values.at("2.bias"), b3 = values.at("4.bias");
  const Tensor a1 = Tensor::randn({B, H}, gen, DType::Float32), a2 = Tensor::randn({B, H}, gen, DType::Float32);
  const Tensor g1 = Tensor::randn({B, H}, gen, DType::Float32), g2 = Tensor::randn({B, H}, gen, DType::Float32);
  const Tensor g3 = Tensor::randn({B, DOUT}, gen, DType::Float32);
  auto gemms_fwd = [&] {
    kernels::matmul_t(x, false, w1, true);   // (128, 784) x (784, 512)
    kernels::matmul_t(a1, false, w2, true);  // (128, 512) x (512, 512)
    kernels::matmul_t(a2, false, w3, true);  // (128, 512) x (512, 10)
  };
  auto gemms = [&] {
    gemms_fwd();
    kernels::matmul_t(g3, true, a2, false);  // dW3 (10, 512)
    kernels::matmul_t(g3, false, w3, false); // dA2 (128, 512)
    kernels::matmul_t(g2, true, a1, false);  // dW2 (512, 512)
    kernels::matmul_t(g2, false, w2, false); // dA1 (128, 512)
    kernels::matmul_t(g1, true, x, false);   // dW1 (512, 784)
  };
  auto elementwise = [&] {
    kernels::relu(kernels::add(a1, b1));
    kernels::relu(kernels::add(a2, b2));
    kernels::add(g3, b3);
    kernels::relu_backward(g2, a2);
    kernels::relu_backward(g1, a1);
    kernels::sum_to(g3, {DOUT});
    kernels::sum_to(g2, {H});
    kernels::sum_to(g1, {H});
  };
  // Gradients as the transpose's VJP hands them over: (out, in) views of (in, out) buffers.
  const std::array<Tensor, 3> dw_t{Tensor::randn({DIN, H}, gen, DType::Float32).transpose(0, 1),
                                   Tensor::randn({H, H}, gen, DType::Float32).transpose(0, 1),
                                   Tensor::randn({H, DOUT}, gen, DType::Float32).transpose(0, 1)};
  const std::array<Tensor, 3> dw_c{dw_t[0].contiguous(), dw_t[1].contiguous(), dw_t[2].contiguous()};
  std::array<Tensor, 3> acc{Tensor::zeros({H, DIN}, DType::Float32), Tensor::zeros({H, H}, DType::Float32),
                            Tensor::zeros({DOUT, H}, DType::Float32)};
  auto accumulate = [&](const std::array<Tensor, 3>& from) {
    for (int i = 0; i < 3; ++i) acc[i].add_(from[i]);
  };
  const std::map<std::string, std::function<void()>> floors{
      {"gemms", gemms},
      {"gemms_fwd", gemms_fwd},
      {"elementwise", elementwise},
      {"accumulate_transposed", [&] { accumulate(dw_t); }},
      {"accumulate_contiguous", [&] { accumulate(dw_c); }}};
  // The same model with (in, out) weights, from the same initial values (before any step).
  nn::Sequential model_t;
  model_t.add<LinearInOut>(w1, b1);
  model_t.add<nn::ReLU>();
  model_t.add<LinearInOut>(w2, b2);
  model_t.add<nn::ReLU>();
  model_t.add<LinearInOut>(w3, b3);
  optim::SGD opt_t(model_t.parameters(), {.lr = 0.01});
  Lambda objective_t(
      {"x", "y"},
      [&](std::span<const NodeRef> in) {
        const std::array<NodeRef, 1> input{in[0]};
        return op::cross_entropy(model_t.invoke(input).root(), in[1]);
      },
      "MLPObjectiveInOut");
  objective_t.input("x").requires_grad(false);
  objective_t.input("y").requires_grad(false);
  zt::Step step_t;
  step_t.zero_grad = [&] { opt_t.zero_grad(); };
  step_t.forward = [&] { return objective_t(x, y); };
  step_t.update = [&] { opt_t.step(); };
  const double first_loss = [&] {  // the main model's loss at its initial values
    NoGradGuard no_grad;
    return op::cross_entropy(model(x).root(), NodeRef(y)).value().item();
  }();
  const double first_loss_t = zt::run_step(step_t);
  if (!(std::fabs(first_loss_t - first_loss) <= 1e-5 * std::fabs(first_loss))) {
    zt::fail("bench_mlp", "the (in, out)-weight model's first loss " + std::to_string(first_loss_t) +
                              " differs from the model's " + std::to_string(first_loss));
  }

  o.loop_variants = {"gemms", "gemms_fwd", "elementwise", "accumulate_transposed", "accumulate_contiguous",
                     "weights_in_out"};
  o.loop_variant = [&](const std::string& v) {
    if (v == "weights_in_out") {
      zt::run_step(step_t);
    } else {
      floors.at(v)();
    }
  };
  o.diagnostics = [&](bench::Object& res, int warmup, int steps) {
    for (const auto& [key, name] : std::vector<std::pair<std::string, std::string>>{
             {"floor_gemms_ms", "gemms"},
             {"floor_gemms_fwd_ms", "gemms_fwd"},
             {"floor_elementwise_ms", "elementwise"},
             {"grad_accumulate_transposed_ms", "accumulate_transposed"},
             {"grad_accumulate_contiguous_ms", "accumulate_contiguous"}}) {
      res.add(key, bench::stats(zt::time_ms(floors.at(name), warmup, steps)));
    }
    res.add("weights_in_out_train_step_ms", bench::stats(zt::time_ms([&] { zt::run_step(step_t); }, warmup, steps)));
  };

  bench::Object meta;
  meta.add_number("weights_in_out_first_loss", first_loss_t)
      .add_number("batch", B)
      .add_number("fwd_mflop", kFwdFlop / 1e6)
      .add_string("model", "Sequential(Linear(784,512), ReLU, Linear(512,512), ReLU, Linear(512,10)) float32")
      .add_string("loss", "op::cross_entropy mean; optim::SGD lr 0.01")
      .add_number("parameters", static_cast<double>(model.parameters().size()));
  return zt::run(argc, argv, o, step, meta);
}
