// Per-operator overhead: a chain of 1000 scalar operators, forward + backward, in us per op.
// Same workload as shared/peers/graph_overhead.py (and its libtorch twin):
//   x0 = a 1-element float32 tensor, shape (1,)
//   500 x { x = x * 1.0001 ; x = x + 0.0001 }      (1000 operators)
//   y = sum(x); backward                           (sum is one extra operator)
// In zkynet the chain runs inside a module call (a zkynet::Lambda) so that the call records
// its graph; ModuleGraph::back() then runs reverse mode over it.
//
// Reported per operator (time / 1000), median over --samples samples after --warmup:
//   fwd_grad_us_per_op    forward while recording the graph (the sum included, as in the peer)
//   bwd_us_per_op         ModuleGraph::back() through the recorded graph
//   fwdbwd_us_per_op      forward + backward, timed together
//   fwd_nograd_us_per_op  the same chain under zkynet::NoGradGuard (values only, no sum)
//   teardown_us_per_op    destroying the recorded graph (PyTorch's figure for fwd includes
//                         freeing the previous sample's graph: Python rebinds `y` there)
// Two spellings of the constants:
//   literal   op::mult(x, 1.0001): a new 0-d float64 constant per operator, like Python's
//             `x * 1.0001` (the headline figure, comparable with the peers)
//   hoisted   the constants made once as float32 0-d tensors outside the loop
// Diagnostics per operator (one extra fwd+bwd pass, not timed): heap allocations through
// operator new, and tensor buffers taken from the caching allocator.
//
// usage: bench_graph_overhead [--samples 200] [--warmup 20] [--variant literal|hoisted|both]
//        [--loop N]   (profiling: N fwd+bwd chains, no JSON)
#include "bench_common.h"

#include <zkynet/framework/allocator.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/framework/session.h>
#include <zkynet/ops/ops.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <optional>
#include <span>
#include <string>

// ---- heap-allocation counter (the executable's operator new replaces the global one, for the
// framework's shared libraries too); counts only while g_count_news is set.
namespace {
bool g_count_news = false;
std::size_t g_news = 0;
}  // namespace

void* operator new(std::size_t n) {
  if (g_count_news) ++g_news;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace zkynet;
namespace zb = zkynet::bench;

constexpr int kOps = 1000;

enum class Constants { Literal, Hoisted };

// The chain as a module: records its graph when called with gradients enabled.
Lambda make_chain(Constants constants, bool with_sum) {
  return Lambda(
      {"x"},
      [constants, with_sum](std::span<const NodeRef> in) {
        NodeRef x = in[0];
        if (constants == Constants::Literal) {
          for (int i = 0; i < kOps / 2; ++i) {
            x = op::mult(x, 1.0001);
            x = op::add(x, 0.0001);
          }
        } else {
          static const NodeRef scale(Tensor::scalar(1.0001, DType::Float32));
          static const NodeRef shift(Tensor::scalar(0.0001, DType::Float32));
          for (int i = 0; i < kOps / 2; ++i) {
            x = op::mult(x, scale);
            x = op::add(x, shift);
          }
        }
        return with_sum ? op::sum(x) : x;
      },
      "Chain");
}

struct Result {
  zb::Stats fwd, bwd, both, nograd, teardown, fwdbwd_teardown;
  double grad = 0;
  std::size_t graph_nodes = 0;
  double news_per_op = 0, buffers_per_op = 0, nograd_news_per_op = 0, nograd_buffers_per_op = 0;
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "bench_graph_overhead: FAILED: %s\n", what.c_str());
  std::exit(1);
}

double check_grad(const ModuleGraph& g, Lambda& chain, const char* variant) {
  const Tensor grad = g.grad(chain.input("x"));
  if (grad.dtype() != DType::Float32 || grad.numel() != 1) {
    fail(std::string(variant) + ": gradient has dtype/shape " + std::string(dtype_name(grad.dtype())) + " " +
         shape_str(grad.shape()));
  }
  const double got = grad.item();
  const double expect = std::pow(1.0001, kOps / 2);
  if (!(std::fabs(got - expect) <= 1e-3 * expect)) {
    fail(std::string(variant) + ": gradient " + std::to_string(got) + ", expected 1.0001^500 = " +
         std::to_string(expect));
  }
  return got;
}

Result measure(Constants constants, int warmup, int samples) {
  const char* variant = constants == Constants::Literal ? "literal" : "hoisted";
  Lambda chain = make_chain(constants, true);
  Lambda chain_nograd = make_chain(constants, false);
  std::vector<double> fwd, bwd, both, nograd, teardown, all;
  Result r;
  for (int i = 0; i < warmup + samples; ++i) {
    const Tensor x0 = Tensor::ones({1}, DType::Float32);
    std::optional<ModuleGraph> g;
    const double t0 = zb::now_us();
    g.emplace(chain(x0));
    const double t1 = zb::now_us();
    g->back();
    const double t2 = zb::now_us();
    r.grad = check_grad(*g, chain, variant);
    r.graph_nodes = g->nodes().size();
    const double t3 = zb::now_us();
    g.reset();
    const double t4 = zb::now_us();
    double t5, t6;
    {
      NoGradGuard no_grad;
      t5 = zb::now_us();
      { ModuleGraph y = chain_nograd(x0); }
      t6 = zb::now_us();
    }
    if (i >= warmup) {
      fwd.push_back((t1 - t0) / kOps);
      bwd.push_back((t2 - t1) / kOps);
      both.push_back((t2 - t0) / kOps);
      teardown.push_back((t4 - t3) / kOps);
      all.push_back((t2 - t0 + t4 - t3) / kOps);
      nograd.push_back((t6 - t5) / kOps);
    }
  }
  r.fwd = zb::stats(fwd);
  r.bwd = zb::stats(bwd);
  r.both = zb::stats(both);
  r.nograd = zb::stats(nograd);
  r.teardown = zb::stats(teardown);
  r.fwdbwd_teardown = zb::stats(all);

  // Diagnostics: allocations per operator over one fwd + bwd (+ teardown), and one no-grad chain.
  const Tensor x0 = Tensor::ones({1}, DType::Float32);
  auto count = [&](auto&& body, double& news, double& buffers) {
    const auto s0 = cpu_allocator_stats();
    g_news = 0;
    g_count_news = true;
    body();
    g_count_news = false;
    const auto s1 = cpu_allocator_stats();
    news = static_cast<double>(g_news) / kOps;
    buffers = static_cast<double>((s1.hits + s1.misses) - (s0.hits + s0.misses)) / kOps;
  };
  count([&] {
    ModuleGraph g = chain(x0);
    g.back();
  }, r.news_per_op, r.buffers_per_op);
  count([&] {
    NoGradGuard no_grad;
    ModuleGraph y = chain_nograd(x0);
  }, r.nograd_news_per_op, r.nograd_buffers_per_op);
  return r;
}

void add_results(zb::Object& res, const std::string& suffix, const Result& r) {
  res.add("fwd_grad_us_per_op" + suffix, r.fwd)
      .add("bwd_us_per_op" + suffix, r.bwd)
      .add("fwdbwd_us_per_op" + suffix, r.both)
      .add("fwd_nograd_us_per_op" + suffix, r.nograd)
      .add("teardown_us_per_op" + suffix, r.teardown)
      .add("fwdbwd_teardown_us_per_op" + suffix, r.fwdbwd_teardown);
}

void add_meta(zb::Object& meta, const std::string& suffix, const Result& r) {
  meta.add_number("grad_check" + suffix, r.grad)
      .add_number("graph_nodes" + suffix, static_cast<double>(r.graph_nodes))
      .add_number("heap_allocs_per_op_fwdbwd" + suffix, r.news_per_op)
      .add_number("tensor_buffers_per_op_fwdbwd" + suffix, r.buffers_per_op)
      .add_number("heap_allocs_per_op_nograd" + suffix, r.nograd_news_per_op)
      .add_number("tensor_buffers_per_op_nograd" + suffix, r.nograd_buffers_per_op);
}

}  // namespace

int main(int argc, char** argv) {
  const int samples = static_cast<int>(zb::arg_long(argc, argv, "--samples", 200));
  const int warmup = static_cast<int>(zb::arg_long(argc, argv, "--warmup", 20));
  const long loop = zb::arg_long(argc, argv, "--loop", 0);
  const std::string variant = zb::arg_str(argc, argv, "--variant", "both");
  if (variant != "both" && variant != "literal" && variant != "hoisted") fail("--variant: literal, hoisted or both");
  const bool hoisted_only = variant == "hoisted";
  const bool literal_only = variant == "literal";

  if (loop > 0) {  // profiling mode: fwd + bwd only, no statistics
    Lambda chain = make_chain(hoisted_only ? Constants::Hoisted : Constants::Literal, true);
    double grad = 0;
    const double t0 = zb::now_us();
    for (long i = 0; i < loop; ++i) {
      ModuleGraph g = chain(Tensor::ones({1}, DType::Float32));
      g.back();
      grad = check_grad(g, chain, "loop");
    }
    std::fprintf(stderr, "%ld chains, %.3f us per op fwd+bwd+teardown, grad %.6f\n", loop,
                 (zb::now_us() - t0) / static_cast<double>(loop) / kOps, grad);
    return 0;
  }

  zb::Object res, meta;
  if (!hoisted_only) {
    const Result lit = measure(Constants::Literal, warmup, samples);
    add_results(res, "", lit);
    add_meta(meta, "", lit);
  }
  if (!literal_only) {
    const Result hoist = measure(Constants::Hoisted, warmup, samples);
    add_results(res, "_hoisted", hoist);
    add_meta(meta, "_hoisted", hoist);
  }
  meta.add_number("ops", kOps)
      .add_number("samples", samples)
      .add_number("warmup", warmup)
      .add_number("zkynet_num_threads", num_threads())
      .add_string("variant_default", "literal: op::mult(x, 1.0001) / op::add(x, 0.0001) in a zkynet::Lambda")
      .add("env", zb::env_json());
  zb::emit("zkynet_graph_overhead", res, meta);
  return 0;
}
