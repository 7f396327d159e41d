// The memory plan of compiled replays (compile.h, framework/src/replay_arena.h): the first
// replay records its buffer requests, later ones are served from one block; results stay bit
// for bit the dynamic ones; a replay that leaves the plan drops it without corrupting anything.
#include "bits.h"

#include <zkynet/zkynet.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace zkynet;
using zkynet::testing::same_bits;

namespace {

class Chain : public Module<Chain> {
 public:
  Chain() : Module({Variable("x")}, {Parameter("w", Tensor::full({16}, 0.5))}) {}
  NodeRef call(const NodeRef& x0) {
    NodeRef x = x0;
    for (int i = 0; i < 50; ++i) x = op::tanh(op::add(op::mult(x, param("w")), 0.01));
    return op::sum(x);
  }
};

// An operator whose forward's temporaries are controlled by the test: `extra` more scratch
// buffers, or a scratch buffer kept past the replay in `kept`.
struct Knobs {
  int extra = 0;
  bool keep = false;
  std::vector<Tensor> kept;
};

NodeRef twice(const NodeRef& x, Knobs& knobs) {
  auto op = std::make_shared<DynamicOperator>();
  op->name = "twice";
  op->arity = 1;
  op->forward = [&knobs](std::span<const Tensor> in) {
    Tensor scratch = kernels::mul(in[0], Tensor::scalar(2.0, in[0].dtype()));
    for (int i = 0; i < knobs.extra; ++i) scratch = kernels::add(scratch, Tensor::scalar(0.0, in[0].dtype()));
    if (knobs.keep) knobs.kept.push_back(scratch);
    return kernels::add(scratch, Tensor::scalar(0.0, in[0].dtype()));
  };
  op->vjp = [](const Tensor& g, const Tensor&, std::span<const Tensor>, std::span<const bool>) {
    return std::vector<Tensor>{kernels::mul(g, Tensor::scalar(2.0, g.dtype()))};
  };
  return apply_dynamic(op, std::span<const NodeRef>(&x, 1));
}

}  // namespace

// A step: zero_grad, the chain, back(); back()'s gradients are the replay's temporaries.
std::unique_ptr<Lambda> chain_step(Chain& m) {
  return std::make_unique<Lambda>(std::vector<std::string>{"x"}, [&m](std::span<const NodeRef> in) {
    m.zero_grad();
    ModuleGraph g = m.invoke(in);
    g.back();
    return g.root();
  });
}

TEST_CASE("compile memory plan: later replays are served from one block, bit for bit as dynamic calls") {
  Chain dyn;
  Chain m;
  auto step = chain_step(m);
  CompiledModule c = compile(*step);
  Generator gen(5);
  for (int k = 0; k < 5; ++k) {
    const Tensor x = Tensor::randn({16}, gen);
    dyn.zero_grad();
    ModuleGraph d = dyn(x);
    d.back();
    ModuleGraph r = c(x);
    INFO("call " << k);
    REQUIRE(same_bits(d.value(), r.value()));
    REQUIRE(same_bits(dyn.param("w").grad(), m.param("w").grad()));
  }
  const MemoryPlanStats s = c.last()->memory_plan();
  CHECK_FALSE(s.dropped);
  CHECK(s.planned_replays == 3);  // the first replay records, the next three are served
  CHECK(s.planned_buffers > 0);
  CHECK(s.served == 3 * s.planned_buffers);
  CHECK(s.block_bytes < s.planned_bytes);  // freed ranges are reused
}

TEST_CASE("compile memory plan: off by option") {
  Chain m;
  auto step = chain_step(m);
  CompiledModule c = compile(*step, {.memory_plan = false});
  for (int k = 0; k < 3; ++k) c(Tensor::full({16}, 0.1 * k));
  CHECK(c.last()->memory_plan().served == 0);
  CHECK(c.last()->memory_plan().block_bytes == 0);
}

TEST_CASE("compile memory plan: another sequence of requests drops the plan, values stay right") {
  Knobs knobs;
  Lambda f({"x"}, [&](std::span<const NodeRef> in) { return op::sum(op::mult(twice(in[0], knobs), in[0])); });
  CompiledModule c = compile(f);
  const Tensor x = Tensor::full({8}, 1.5);
  c(x);  // capture
  c(x);  // recorded
  c(x);  // served
  REQUIRE(c.last()->memory_plan().planned_replays == 1);
  knobs.extra = 2;
  ModuleGraph g = c(x);
  g.back();
  CHECK(c.last()->memory_plan().dropped);
  CHECK(g.value().item() == 8 * 2 * 1.5 * 1.5);
  CHECK(g.grad(f.input("x")).to_doubles() == std::vector<double>(8, 2 * 1.5 + 2 * 1.5));
  ModuleGraph again = c(x);  // the caching allocator from now on
  CHECK(again.value().item() == 8 * 2 * 1.5 * 1.5);
}

TEST_CASE("compile memory plan: a planned buffer kept past its replay is never handed out again") {
  Knobs knobs;
  Lambda f({"x"}, [&](std::span<const NodeRef> in) { return op::sum(op::mult(twice(in[0], knobs), in[0])); });
  CompiledModule c = compile(f);
  c(Tensor::full({8}, 1.0));
  c(Tensor::full({8}, 1.0));  // recorded: the scratch buffer is a temporary of the plan
  knobs.keep = true;
  c(Tensor::full({8}, 3.0));  // served from the block, and kept by the operator
  knobs.keep = false;
  REQUIRE(knobs.kept.size() == 1);
  const Tensor kept = knobs.kept[0];
  REQUIRE(kept.to_doubles() == std::vector<double>(8, 6.0));
  for (int k = 0; k < 3; ++k) {
    ModuleGraph g = c(Tensor::full({8}, 5.0 + k));
    CHECK(g.value().item() == 8 * 2 * (5.0 + k) * (5.0 + k));
  }
  CHECK(kept.to_doubles() == std::vector<double>(8, 6.0));  // not overwritten
  CHECK(c.last()->memory_plan().dropped);
}
