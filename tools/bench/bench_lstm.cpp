// LSTM forward + backward: nn::LSTM(10 -> 64), 1 layer, sequence 50, batch 32, time-major input
// (50, 32, 10), float32. Same workload as shared/peers/lstm.py:
//   model   nn::LSTM(10, 64), torch's initialization (U(+-1/sqrt(64)) for every weight and bias), seed 0
//   data    x ~ N(0, 1) (50, 32, 10) float32; x takes no gradient (as in PyTorch)
//   step    lstm.zero_grad() (in place) + forward + loss = mean(out^2) + ModuleGraph::back();
//           no optimizer update (forward + backward, as the peer), timed as one call
//   infer   forward only under NoGradGuard, --steps calls
// --steps 100 after --warmup 10; phase breakdown too (see train_bench.h).
// FLOPs (gate GEMMs only): fwd 2*50*32*(10+64)*256 = 60.6 MFLOP, fwd+bwd counted as 3x.
//
// usage: bench_lstm [--steps 100] [--warmup 10] [--no-breakdown]
//        [--loop N --variant train|infer]   (profiling: N bare calls, no JSON)
#include "train_bench.h"

#include <zkynet/framework/module.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/ops/ops.h>

#include <cmath>
#include <cstdint>
#include <span>

using namespace zkynet;
namespace zt = zkynet::bench::train;

int main(int argc, char** argv) {
  constexpr std::int64_t T = 50, B = 32, DIN = 10, H = 64;
  constexpr double kFwdFlop = 2.0 * T * B * (DIN + H) * 4 * H;

  Generator gen(0);
  nn::LSTM lstm(DIN, H, {.generator = &gen});
  const Tensor x = Tensor::randn({T, B, DIN}, gen, DType::Float32);

  Lambda objective({"x"}, [&](std::span<const NodeRef> in) { return op::mean(op::square(lstm(in[0]).root())); },
                   "LSTMObjective");
  objective.input("x").requires_grad(false);

  zt::Step step;
  step.zero_grad = [&] { lstm.zero_grad(); };
  step.forward = [&] { return objective(x); };
  step.infer = [&] { lstm(x); };

  zt::Options o;
  o.program = "bench_lstm";
  o.bench = "zkynet_lstm_10_64_T50_B32";
  o.step_key = "fwdbwd_step";
  o.step_flop = 3 * kFwdFlop;
  o.infer_flop = kFwdFlop;
  o.check = [&]() -> std::string {
    for (const auto& [name, p] : lstm.named_parameters()) {
      const Tensor& g = p.grad();
      if (!g.defined()) return "parameter " + name + " has no gradient";
      const Tensor g64 = g.to(DType::Float64).contiguous();
      const double* d = g64.data<double>();
      double norm = 0;
      for (std::int64_t i = 0; i < g64.numel(); ++i) norm += d[i] * d[i];
      if (!std::isfinite(norm) || norm == 0) return "parameter " + name + " has a zero or non-finite gradient";
    }
    return "";
  };

  bench::Object meta;
  meta.add_number("seq_len", T)
      .add_number("batch", B)
      .add_number("input", DIN)
      .add_number("hidden", H)
      .add_number("fwd_mflop_gates", kFwdFlop / 1e6)
      .add_string("model", "nn::LSTM(10, 64) float32, time-major; loss mean(out^2); no optimizer");
  return zt::run(argc, argv, o, step, meta);
}
