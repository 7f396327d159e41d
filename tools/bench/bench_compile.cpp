// Capture and replay (framework/compile.h): a dynamic call against a replay of its schedule,
// per step, on small-operator workloads (issue 14 §1, §3).
//   chain  the 1000-operator scalar chain of bench_graph_overhead (float32 (1,): 500 x
//          { x = x * 1.0001; x = x + 0.0001 }, then sum), forward + back(); reported per operator
//   mlp    a small MLP training step's graph: Linear(32, 64)-ReLU-Linear(64, 10) + cross_entropy
//          on a batch of 16, forward + back()
//   chain_per_op / digits_mlp_sgd  whole steps compiled (compile of a function that runs the
//          model, back() and, for the digits MLP (64-64-10, batch 32), SGD with momentum)
//          against the same step run dynamically on an identical model: parameters checked
//          equal bit for bit after timing; heap allocations (operator new) and caching-allocator
//          buffers per step, and the memory plan's buffers and block size
// For each: dynamic (a new graph per call) and replay (compile(module), the same signature
// every step), forward + back() and the call alone (_fwd: graph teardown excluded),
// median/min/max over --samples after --warmup, and their ratios; `meta` adds heap
// allocations and tensor buffers per operator (chain) or step (mlp) of each. Before timing,
// a replay's value and gradients are checked equal, bit for bit, to a dynamic call's.
//
// usage: bench_compile [--samples 200] [--warmup 20]
//        [--loop N [--variant replay|dynamic]]   (profiling: N chains, no JSON)
#include "bench_common.h"

#include <zkynet/zkynet.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace zkynet::bench::train {  // alloc_counter.cpp: the counting global operator new
extern bool g_count_news;
extern std::size_t g_news;
}  // namespace zkynet::bench::train

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

constexpr int kOps = 1000;

class Chain : public Module<Chain> {
 public:
  Chain() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x0) {
    NodeRef x = x0;
    for (int i = 0; i < kOps / 2; ++i) x = op::add(op::mult(x, 1.0001), 0.0001);
    return op::sum(x);
  }
};

// The digits MLP (8x8 images, 10 classes: Linear(64, 64)-ReLU-Linear(64, 10)) + cross_entropy.
class DigitsMlp : public Module<DigitsMlp> {
 public:
  explicit DigitsMlp(Generator& gen) : Module({Variable("x"), Variable("y")}) {
    net.add<nn::Linear>(64, 64, nn::LinearOptions{.generator = &gen});
    net.add<nn::ReLU>();
    net.add<nn::Linear>(64, 10, nn::LinearOptions{.generator = &gen});
    register_module("net", net);
    input("x").requires_grad(false);
    input("y").requires_grad(false);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::cross_entropy(net(x), y); }
  nn::Sequential net;
};

class MlpLoss : public Module<MlpLoss> {
 public:
  MlpLoss() : Module({Variable("x"), Variable("y")}) {
    net.add<nn::Linear>(32, 64);
    net.add<nn::ReLU>();
    net.add<nn::Linear>(64, 10);
    register_module("net", net);
    input("x").requires_grad(false);
    input("y").requires_grad(false);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::cross_entropy(net(x), y); }
  nn::Sequential net;
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "bench_compile: FAILED: %s\n", what.c_str());
  std::exit(1);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous();
  const Tensor y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), static_cast<std::size_t>(x.numel()) * dtype_size(x.dtype())) == 0;
}

// Checks a replay against a dynamic call (value and the gradients of `of`), then times both.
struct Timings {
  zb::Stats dynamic, replay, dynamic_fwd, replay_fwd;  // fwd: the call alone, back() excluded
  double dynamic_news = 0, replay_news = 0;            // heap allocations per forward + back()
  double dynamic_buffers = 0, replay_buffers = 0;      // tensor buffers per forward + back()
};

// Heap allocations (operator new) and tensor buffers of one run of `body`.
template <class Body>
std::pair<double, double> count_allocations(Body body) {
  namespace t = zkynet::bench::train;
  const auto s0 = cpu_allocator_stats();
  t::g_news = 0;
  t::g_count_news = true;
  body();
  t::g_count_news = false;
  const auto s1 = cpu_allocator_stats();
  return {static_cast<double>(t::g_news), static_cast<double>((s1.hits + s1.misses) - (s0.hits + s0.misses))};
}

template <class Of>
Timings measure(ModuleBase& m, const std::vector<NodeRef>& args, Of of, int warmup,
                                        int samples, double per) {
  CompiledModule c = compile(m);
  c.call(args);  // the capture
  {
    ModuleGraph d = m.invoke(args);
    d.back();
    ModuleGraph r = c.call(args);
    r.back();
    if (!same_bits(d.value(), r.value())) fail(m.functional_name() + ": replayed value differs");
    if (!same_bits(of(d), of(r))) fail(m.functional_name() + ": replayed gradient differs");
  }
  std::vector<double> dynamic, replay, dynamic_fwd, replay_fwd;
  for (int i = 0; i < warmup + samples; ++i) {
    const double t0 = zb::now_us();
    double t0f, t1f;
    {
      ModuleGraph g = m.invoke(args);
      t0f = zb::now_us();
      g.back();
    }
    const double t1 = zb::now_us();
    {
      ModuleGraph g = c.call(args);
      t1f = zb::now_us();
      g.back();
    }
    const double t2 = zb::now_us();
    if (i >= warmup) {
      dynamic.push_back((t1 - t0) / per);
      replay.push_back((t2 - t1) / per);
      dynamic_fwd.push_back((t0f - t0) / per);
      replay_fwd.push_back((t1f - t1) / per);
    }
  }
  if (c.stats().captures != 1) fail(m.functional_name() + ": captured more than once");
  Timings t{zb::stats(dynamic), zb::stats(replay), zb::stats(dynamic_fwd), zb::stats(replay_fwd)};
  std::tie(t.dynamic_news, t.dynamic_buffers) = count_allocations([&] {
    ModuleGraph g = m.invoke(args);
    g.back();
  });
  std::tie(t.replay_news, t.replay_buffers) = count_allocations([&] {
    ModuleGraph g = c.call(args);
    g.back();
  });
  const double to_per = 1.0 / per;
  t.dynamic_news *= to_per;
  t.replay_news *= to_per;
  t.dynamic_buffers *= to_per;
  t.replay_buffers *= to_per;
  return t;
}

// The whole step compiled (forward, back() and the optimizer inside the schedule) against the
// same step run dynamically: `dyn` and `fast` are identical models, each with its optimizer.
struct StepTimings {
  zb::Stats dynamic, replay;
  double dynamic_news = 0, replay_news = 0;        // heap allocations (operator new) per step
  double dynamic_buffers = 0, replay_buffers = 0;  // buffers from the caching allocator per step
  MemoryPlanStats plan;
};

StepTimings measure_step(ModuleBase& dyn, optim::Optimizer* dyn_opt, ModuleBase& fast, optim::Optimizer* fast_opt,
                         const std::vector<NodeRef>& args, int warmup, int samples, double per) {
  const auto dynamic_step = [&] {
    if (dyn_opt != nullptr) dyn_opt->zero_grad();
    ModuleGraph g = dyn.invoke(args);
    g.back();
    if (dyn_opt != nullptr) dyn_opt->step();
  };
  std::vector<std::string> names;
  for (const auto& in : fast.inputs()) names.push_back(in.name());
  Lambda body(names, [&](std::span<const NodeRef> a) {
    if (fast_opt != nullptr) fast_opt->zero_grad();
    ModuleGraph g = fast.invoke(a);
    g.back();
    if (fast_opt != nullptr) fast_opt->step();
    return g.root();
  }, "train_step");
  for (std::size_t i = 0; i < names.size(); ++i) body.input(names[i]).requires_grad(fast.inputs()[i].data()->requires_grad);
  CompiledModule step = compile(body);
  for (int i = 0; i < 3; ++i) {  // the capture, the recorded replay, a planned one: in step with dyn
    dynamic_step();
    const ModuleGraph r = step.call(args);
    for (std::size_t p = 0; p < dyn.parameters().size(); ++p) {
      if (!same_bits(dyn.parameters()[p].value(), fast.parameters()[p].value())) {
        fail(fast.functional_name() + ": compiled step's parameters differ from the dynamic step's");
      }
    }
  }
  std::vector<double> dynamic, replay;
  for (int i = 0; i < warmup + samples; ++i) {
    const double t0 = zb::now_us();
    dynamic_step();
    const double t1 = zb::now_us();
    step.call(args);
    const double t2 = zb::now_us();
    if (i >= warmup) {
      dynamic.push_back((t1 - t0) / per);
      replay.push_back((t2 - t1) / per);
    }
  }
  StepTimings t;
  t.dynamic = zb::stats(dynamic);
  t.replay = zb::stats(replay);
  std::tie(t.dynamic_news, t.dynamic_buffers) = count_allocations(dynamic_step);
  std::tie(t.replay_news, t.replay_buffers) = count_allocations([&] { step.call(args); });
  for (std::size_t p = 0; p < dyn.parameters().size(); ++p) {
    if (!same_bits(dyn.parameters()[p].value(), fast.parameters()[p].value())) {
      fail(fast.functional_name() + ": after timing, the compiled step's parameters differ from the dynamic step's");
    }
  }
  if (step.stats().captures != 1) fail(fast.functional_name() + ": step captured more than once");
  t.plan = step.last()->memory_plan();
  return t;
}

void add_step(zb::Object& res, zb::Object& meta, const std::string& name, const StepTimings& t) {
  res.add(name + "_dynamic_step_us", t.dynamic).add(name + "_compiled_step_us", t.replay);
  meta.add_number(name + "_step_speedup_at_median", t.dynamic.median / t.replay.median)
      .add_number(name + "_dynamic_step_heap_allocs", t.dynamic_news)
      .add_number(name + "_compiled_step_heap_allocs", t.replay_news)
      .add_number(name + "_dynamic_step_cached_buffers", t.dynamic_buffers)
      .add_number(name + "_compiled_step_cached_buffers", t.replay_buffers)
      .add_number(name + "_plan_buffers_per_step", static_cast<double>(t.plan.planned_buffers))
      .add_number(name + "_plan_escaping_buffers_per_step", static_cast<double>(t.plan.escaping))
      .add_number(name + "_plan_block_bytes", static_cast<double>(t.plan.block_bytes))
      .add_number(name + "_plan_planned_bytes", static_cast<double>(t.plan.planned_bytes))
      .add_number(name + "_plan_dropped", t.plan.dropped ? 1 : 0);
}

}  // namespace

int main(int argc, char** argv) {
  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 200));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 20));
  const long loop = zb::arg_long(argc, argv, "--loop", 0);
  if (loop > 0) {  // profiling: N chains forward + back(), replayed (--variant replay) or dynamic
    const bool replay = zb::arg_str(argc, argv, "--variant", "replay") == std::string("replay");
    Chain chain;
    CompiledModule c = compile(chain);
    const std::vector<NodeRef> args{Tensor::ones({1}, DType::Float32)};
    const double t0 = zb::now_us();
    for (long i = 0; i < loop; ++i) {
      ModuleGraph g = replay ? c.call(args) : chain.invoke(args);
      g.back();
    }
    std::fprintf(stderr, "%ld chains (%s), %.3f us per op fwd+bwd\n", loop, replay ? "replay" : "dynamic",
                 (zb::now_us() - t0) / static_cast<double>(loop) / kOps);
    return 0;
  }

  Chain chain;
  const std::vector<NodeRef> chain_args{Tensor::ones({1}, DType::Float32)};
  const Timings ch =
      measure(chain, chain_args, [&](const ModuleGraph& g) { return g.grad(chain.input("x")); }, warmup, samples, kOps);

  MlpLoss mlp;
  Generator gen(1);
  std::vector<std::int64_t> labels(16);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 10);
  const std::vector<NodeRef> mlp_args{Tensor::randn({16, 32}, gen, DType::Float32),
                                      Tensor::from_vector(labels, {16})};
  const Parameter w = mlp.parameters().front();
  const Timings ml = measure(mlp, mlp_args, [&](const ModuleGraph& g) { return g.grad(w); }, warmup, samples, 1.0);

  // Whole steps: the chain's forward + back() inside the schedule (per operator), and the
  // MLP's forward, back() and SGD(momentum) update (per step), two identical models each.
  Chain chain_fast;
  const StepTimings chs = measure_step(chain, nullptr, chain_fast, nullptr, chain_args, warmup, samples, kOps);
  Generator init_a(7), init_b(7);
  DigitsMlp mlp_dyn(init_a), mlp_fast(init_b);
  optim::SGD sgd_dyn(mlp_dyn.parameters(), {.lr = 0.01, .momentum = 0.9});
  optim::SGD sgd_fast(mlp_fast.parameters(), {.lr = 0.01, .momentum = 0.9});
  Generator data(2);
  std::vector<std::int64_t> digit_labels(32);
  for (std::size_t i = 0; i < digit_labels.size(); ++i) digit_labels[i] = static_cast<std::int64_t>(i % 10);
  const std::vector<NodeRef> digits_args{Tensor::randn({32, 64}, data, DType::Float32),
                                         Tensor::from_vector(digit_labels, {32})};
  const StepTimings dgs = measure_step(mlp_dyn, &sgd_dyn, mlp_fast, &sgd_fast, digits_args, warmup, samples, 1.0);

  zb::Object res, meta;
  add_step(res, meta, "chain_per_op", chs);
  add_step(res, meta, "digits_mlp_sgd", dgs);
  res.add("chain_dynamic_fwdbwd_us_per_op", ch.dynamic)
      .add("chain_replay_fwdbwd_us_per_op", ch.replay)
      .add("chain_dynamic_fwd_us_per_op", ch.dynamic_fwd)
      .add("chain_replay_fwd_us_per_op", ch.replay_fwd)
      .add("mlp_dynamic_fwdbwd_us", ml.dynamic)
      .add("mlp_replay_fwdbwd_us", ml.replay)
      .add("mlp_dynamic_fwd_us", ml.dynamic_fwd)
      .add("mlp_replay_fwd_us", ml.replay_fwd);
  meta.add_number("chain_speedup_at_median", ch.dynamic.median / ch.replay.median)
      .add_number("chain_fwd_speedup_at_median", ch.dynamic_fwd.median / ch.replay_fwd.median)
      .add_number("mlp_speedup_at_median", ml.dynamic.median / ml.replay.median)
      .add_number("mlp_fwd_speedup_at_median", ml.dynamic_fwd.median / ml.replay_fwd.median)
      .add_number("chain_dynamic_heap_allocs_per_op", ch.dynamic_news)
      .add_number("chain_replay_heap_allocs_per_op", ch.replay_news)
      .add_number("chain_dynamic_tensor_buffers_per_op", ch.dynamic_buffers)
      .add_number("chain_replay_tensor_buffers_per_op", ch.replay_buffers)
      .add_number("mlp_dynamic_heap_allocs_per_step", ml.dynamic_news)
      .add_number("mlp_replay_heap_allocs_per_step", ml.replay_news)
      .add_number("mlp_dynamic_tensor_buffers_per_step", ml.dynamic_buffers)
      .add_number("mlp_replay_tensor_buffers_per_step", ml.replay_buffers)
      .add_number("ops", kOps)
      .add_number("samples", samples)
      .add_number("warmup", warmup)
      .add_number("zkynet_num_threads", num_threads())
      .add_string("note", "replay: the same Tape and nodes, every operator's forward rerun into a fresh tensor "
                          "(node values from the caching allocator; the memory plan serves only buffers freed within "
                          "a replay); compiled step: forward, back() and the optimizer in one schedule; no fusion")
      .add("env", zb::env_json());
  zb::emit("zkynet_compile", res, meta);
  return 0;
}
