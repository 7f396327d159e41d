// Shared driver for the training-step benchmarks (bench_mlp, bench_cnn, bench_lstm): the
// peers' timing protocol (shared/peers/{mlp,cnn,lstm}.py), a phase breakdown, allocation
// counts and a profiling loop.
//
// Peer protocol, followed exactly: each step is timed on its own (wall clock around one
// call), --warmup untimed calls first, then --steps timed calls; median/min/max in ms. The
// inference figure (forward under no-grad) follows the same way, after the training steps.
// (One more untimed step comes first, before the warm-ups: its loss is the reference for the
// programs' checks.)
//
// A step is   zero_grad (optional) -> forward (records the graph, loss included)
//             -> ModuleGraph::back() -> optimizer step (optional) -> graph destroyed
// all inside the timed call, as in the peers (PyTorch frees its graph in backward, and the
// loss tensor when train_step's result is dropped).
//
// Phase breakdown (a separate run of --steps steps after the headline figures, so the
// headline is timed exactly as the peers'): the median of each phase's time.
//
// Heap allocations: alloc_counter.cpp replaces the global operator new of the program, so
// allocations made by the framework's shared libraries count too.
#pragma once

#include "bench_common.h"

#include <zkynet/framework/allocator.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/framework/session.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace zkynet::bench::train {
// Heap-allocation counter: alloc_counter.cpp (linked into each training benchmark) replaces the
// global operator new and counts calls while g_count_news is set.
extern bool g_count_news;
extern std::size_t g_news;

[[noreturn]] inline void fail(const std::string& program, const std::string& what) {
  std::fprintf(stderr, "%s: FAILED: %s\n", program.c_str(), what.c_str());
  std::exit(1);
}

struct Step {
  std::function<void()> zero_grad;        // empty: none
  std::function<ModuleGraph()> forward;   // forward + loss, recording the graph
  std::function<void()> update;           // optimizer step; empty: none
  std::function<void()> infer;            // forward only, called under NoGradGuard
};

// One training step; returns the loss.
inline double run_step(const Step& s) {
  if (s.zero_grad) s.zero_grad();
  ModuleGraph g = s.forward();
  g.back();
  if (s.update) s.update();
  return g.value().item();
}

// The peers' loop: warmup calls, then `n` individually timed calls, in ms.
inline std::vector<double> time_ms(const std::function<void()>& fn, int warmup, int n) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double t0 = now_us();
    fn();
    out.push_back((now_us() - t0) * 1e-3);
  }
  return out;
}

struct Options {
  std::string program;       // for messages
  std::string bench;         // JSON "bench" name
  std::string step_key;      // "train_step" (MLP, CNN) or "fwdbwd_step" (LSTM), as the peer
  double step_flop = 0;      // FLOPs counted per step (the peer's figure)
  double infer_flop = 0;
  int infer_steps_factor = 1;  // the MLP peer times 2 x steps inference calls
  bool loss_must_drop = false;  // with an optimizer on a fixed batch: final loss < first loss
  // Extra check after the run (e.g. gradients finite and non-zero); returns an error or "".
  std::function<std::string()> check;
  // Extra diagnostics run after the step figures (and in `--loop N --variant NAME` for NAME in
  // `loop_variants`); adds its figures to the results.
  std::function<void(Object&, int warmup, int steps)> diagnostics;
  std::function<void(const std::string& variant)> loop_variant;  // one call of a diagnostic variant
  std::vector<std::string> loop_variants;
};

// Runs everything and prints the JSON line. `meta` gets the common fields added.
// Returns the process exit status.
inline int run(int argc, char** argv, const Options& o, const Step& s, Object meta) {
  const int steps = static_cast<int>(arg_long(argc, argv, "--steps", 100));
  const int warmup = static_cast<int>(arg_long(argc, argv, "--warmup", 10));
  const long loop = arg_long(argc, argv, "--loop", 0);
  const std::string variant = arg_str(argc, argv, "--variant", "train");
  const bool no_breakdown = arg_flag(argc, argv, "--no-breakdown");

  if (loop > 0) {  // profiling: bare steps, no statistics
    const bool extra = std::find(o.loop_variants.begin(), o.loop_variants.end(), variant) != o.loop_variants.end();
    if (variant != "train" && variant != "infer" && !extra) {
      std::string names = "train, infer";
      for (const auto& v : o.loop_variants) names += ", " + v;
      fail(o.program, "--variant: one of " + names);
    }
    double loss = 0;
    const double t0 = now_us();
    for (long i = 0; i < loop; ++i) {
      if (variant == "train") {
        loss = run_step(s);
      } else if (variant == "infer") {
        NoGradGuard no_grad;
        s.infer();
      } else {
        o.loop_variant(variant);
      }
    }
    std::fprintf(stderr, "%s --loop %ld --variant %s: %.3f ms per call", o.program.c_str(), loop, variant.c_str(),
                 (now_us() - t0) * 1e-3 / static_cast<double>(loop));
    if (variant == "train") std::fprintf(stderr, ", last loss %.5f", loss);
    std::fprintf(stderr, "\n");
    return 0;
  }

  // First loss (also the first warm-up step): the checks below compare against it.
  const double loss0 = run_step(s);
  if (!std::isfinite(loss0)) fail(o.program, "first loss is not finite: " + std::to_string(loss0));

  Object res;
  const auto a0 = cpu_allocator_stats();
  double last_loss = loss0;
  const Stats train = stats(time_ms([&] { last_loss = run_step(s); }, warmup, steps));
  const auto a1 = cpu_allocator_stats();
  res.add(o.step_key + "_ms", train);
  res.add_number(o.step_key + "_gflops_at_median", o.step_flop / (train.median * 1e-3) / 1e9);

  const Stats infer = stats(time_ms(
      [&] {
        NoGradGuard no_grad;
        s.infer();
      },
      warmup, o.infer_steps_factor * steps));
  res.add("infer_nograd_ms", infer);
  res.add_number("infer_nograd_gflops_at_median", o.infer_flop / (infer.median * 1e-3) / 1e9);

  if (!no_breakdown) {
    std::vector<double> zg, fw, bw, up, td;
    for (int i = 0; i < steps; ++i) {
      const double t0 = now_us();
      if (s.zero_grad) s.zero_grad();
      const double t1 = now_us();
      std::optional<ModuleGraph> g(s.forward());
      const double t2 = now_us();
      g->back();
      const double t3 = now_us();
      if (s.update) s.update();
      const double t4 = now_us();
      last_loss = g->value().item();
      const double t5 = now_us();
      g.reset();
      const double t6 = now_us();
      zg.push_back((t1 - t0) * 1e-3);
      fw.push_back((t2 - t1) * 1e-3);
      bw.push_back((t3 - t2) * 1e-3);
      up.push_back((t4 - t3) * 1e-3);
      td.push_back((t6 - t5) * 1e-3);
    }
    res.add("phase_zero_grad_ms", stats(zg))
        .add("phase_forward_ms", stats(fw))
        .add("phase_backward_ms", stats(bw))
        .add("phase_update_ms", stats(up))
        .add("phase_graph_teardown_ms", stats(td));
  }
  if (o.diagnostics) o.diagnostics(res, warmup, steps);
  if (!std::isfinite(last_loss)) fail(o.program, "loss is not finite after training: " + std::to_string(last_loss));
  if (o.loss_must_drop && !(last_loss < loss0)) {
    fail(o.program, "SGD on a fixed batch did not lower the loss: " + std::to_string(loss0) + " -> " +
                        std::to_string(last_loss));
  }
  if (o.check) {
    if (const std::string err = o.check(); !err.empty()) fail(o.program, err);
  }

  // Per step: heap allocations (operator new), tensor buffers, graph nodes (one untimed step).
  std::size_t nodes = 0;
  const auto b0 = cpu_allocator_stats();
  g_news = 0;
  g_count_news = true;
  {
    if (s.zero_grad) s.zero_grad();
    ModuleGraph g = s.forward();
    g.back();
    if (s.update) s.update();
    nodes = g.nodes().size();
  }
  g_count_news = false;
  const auto b1 = cpu_allocator_stats();

  meta.add_number("steps", steps)
      .add_number("warmup", warmup)
      .add_number("first_loss", loss0)
      .add_number("final_loss", last_loss)
      .add_number("graph_nodes_per_step", static_cast<double>(nodes))
      .add_number("heap_allocs_per_step", static_cast<double>(g_news))
      .add_number("tensor_buffers_per_step", static_cast<double>((b1.hits + b1.misses) - (b0.hits + b0.misses)))
      .add_number("allocator_misses_while_timing_train", static_cast<double>(a1.misses - a0.misses))
      .add_number("allocator_cached_mib", static_cast<double>(b1.cached_bytes) / (1 << 20))
      .add_number("zkynet_num_threads", num_threads())
      .add_number("step_mflop", o.step_flop / 1e6)
      .add("env", env_json());
  emit(o.bench, res, meta);
  return 0;
}

}  // namespace zkynet::bench::train
