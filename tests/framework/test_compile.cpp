// compile(): capture and replay (framework/include/zkynet/framework/compile.h). Replays must
// equal dynamic calls bit for bit; signatures must re-capture; what capture cannot see is
// listed here case by case (tinygrad's test_jit_footguns is the model).
#include "bits.h"
#include "models.h"

#include <zkynet/zkynet.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using namespace zkynet;
using zkynet::testing::same_bits;
using zkynet::testing::contains;
using zkynet::testing::SimpleModel;

namespace {

// The values and gradients of one scalar-loss step, copied.
struct Step {
  Tensor value;
  std::vector<Tensor> grads;  // parameters', then the floating inputs'
};

Step record(const ModuleGraph& g, ModuleBase& m, std::size_t floating_inputs) {
  Step s;
  s.value = g.value().clone();
  for (const Parameter& p : m.parameters()) s.grads.push_back(g.grad(p).clone());
  for (std::size_t i = 0; i < floating_inputs; ++i) s.grads.push_back(g.grad(m.inputs()[i]).clone());
  return s;
}

// `steps` steps with new inputs from make_args(k): each replay against a fresh dynamic call,
// values and gradients bit for bit; then an SGD-like update of the parameters in place (the
// next replay must see it).
template <class MakeArgs>
void check_replays_bitwise(ModuleBase& m, std::size_t floating_inputs, int steps, MakeArgs make_args) {
  CompiledModule c = compile(m);
  for (int k = 0; k < steps; ++k) {
    const std::vector<NodeRef> args = make_args(k);
    ModuleGraph d = m.invoke(args);
    d.vjp(Tensor::ones(d.value().shape(), d.value().dtype()));
    const Step dynamic = record(d, m, floating_inputs);
    ModuleGraph r = c.call(args);
    r.vjp(Tensor::ones(r.value().shape(), r.value().dtype()));
    const Step replay = record(r, m, floating_inputs);
    INFO("step " << k);
    REQUIRE(same_bits(dynamic.value, replay.value));
    REQUIRE(dynamic.grads.size() == replay.grads.size());
    for (std::size_t i = 0; i < dynamic.grads.size(); ++i) {
      INFO("gradient " << i);
      REQUIRE(same_bits(dynamic.grads[i], replay.grads[i]));
    }
    NoGradGuard values_only;
    std::size_t i = 0;
    for (Parameter& p : m.parameters()) {
      Tensor value = p.value();
      value.add_(op::mult(replay.grads[i++], -0.05).value().to(value.dtype()));
    }
  }
  CHECK(c.stats().captures == 1);
  CHECK(c.stats().replays == static_cast<std::size_t>(steps - 1));
}

class Chain : public Module<Chain> {
 public:
  Chain() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x0) {
    NodeRef x = x0;
    for (int i = 0; i < 500; ++i) x = op::add(op::mult(x, 1.0001), 0.0001);
    return op::sum(x);
  }
};

class MlpLoss : public Module<MlpLoss> {
 public:
  MlpLoss() : Module({Variable("x"), Variable("y")}) {
    Generator gen(3);
    net.add<nn::Linear>(8, 16, nn::LinearOptions{.generator = &gen});
    net.add<nn::ReLU>();
    net.add<nn::Linear>(16, 4, nn::LinearOptions{.generator = &gen});
    register_module("net", net);
    input("y").requires_grad(false);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::cross_entropy(net(x), y); }
  nn::Sequential net;
};

class CnnLoss : public Module<CnnLoss> {
 public:
  CnnLoss() : Module({Variable("x"), Variable("y")}) {
    Generator gen(4);
    net.add<nn::Conv2d>(1, 4, 3, nn::Conv2dOptions{.generator = &gen});
    net.add<nn::ReLU>();
    net.add<nn::MaxPool2d>(2);
    net.add<nn::Flatten>();
    net.add<nn::Linear>(36, 5, nn::LinearOptions{.generator = &gen});
    register_module("net", net);
    input("y").requires_grad(false);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::cross_entropy(net(x), y); }
  nn::Sequential net;
};

class LstmLoss : public Module<LstmLoss> {
 public:
  explicit LstmLoss(bool stateful = false)
      : Module({Variable("x")}), lstm(3, 5, nn::RecurrentOptions{.stateful = stateful}) {
    register_module("lstm", lstm);
  }
  NodeRef call(const NodeRef& x) { return op::mean(op::square(lstm(x))); }
  nn::LSTM lstm;
};

Tensor labels(std::vector<std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return Tensor::from_vector(v, {n});
}

}  // namespace

TEST_CASE("compile: SimpleModel replays with new inputs: values and gradients as documented") {
  SimpleModel m;
  CompiledModule c = compile(m);
  ModuleGraph g1 = c(3.0);
  g1.back();
  CHECK(g1.value().item() == 36);
  CHECK(g1.grad(m.param("w")).item() == 9);
  CHECK(g1.grad(m.input("x")).item() == 33);
  const std::size_t nodes = c.last()->tape().nodes().size();
  ModuleGraph g2 = c(4.0);  // (4 + 1) * 16; d/dx = x^2 + 2x(x + w) = 56; d/dw = x^2
  g2.back();
  CHECK(g2.value().item() == 80);
  CHECK(g2.grad(m.param("w")).item() == 16);
  CHECK(g2.grad(m.input("x")).item() == 56);
  // The same tape and node objects: no node was allocated.
  CHECK(g2.call_id() == g1.call_id());
  CHECK(g2.root().node() == g1.root().node());
  CHECK(c.last()->tape().nodes().size() == nodes);
  CHECK(c.stats().captures == 1);
  CHECK(c.stats().replays == 1);
  CHECK(contains(c.last()->signature().str(), "x: () float64 cpu; training; structure "));
  // Parameters accumulate over back() as after dynamic calls: 9 + 16.
  CHECK(m.param("w").grad().item() == 25);
}

TEST_CASE("compile: the parameters' current values are read at every replay") {
  SimpleModel m;
  CompiledModule c = compile(m);
  c(3.0);
  m.param("w").set_value(Tensor(2.0));  // same shape and dtype: the schedule stays
  CHECK(c(3.0).value().item() == 45);
  {
    NoGradGuard no_grad;
    Tensor w = m.param("w").value();
    w.fill_(0.0);  // in place, as an optimizer step
  }
  ModuleGraph g = c(3.0);
  CHECK(g.value().item() == 27);
  g.back();  // the replay refreshed the recorded versions: no in-place error
  CHECK(g.grad(m.param("w")).item() == 9);
  CHECK(c.stats().captures == 1);
}

TEST_CASE("compile: a new signature captures again; a stale schedule is never replayed") {
  SimpleModel m;
  CompiledModule c = compile(m);
  c(3.0);
  SECTION("shape") {
    CHECK(c(Tensor{1.0, 2.0}).value().to_doubles() == std::vector<double>{2, 12});
    CHECK(c.stats().captures == 2);
    c(Tensor{3.0, 4.0});
    CHECK(c.stats().captures == 2);
    CHECK(c.schedules().size() == 2);
  }
  SECTION("dtype") {
    c(Tensor::scalar(3.0, DType::Float32));
    CHECK(c.stats().captures == 2);
    CHECK(c.last()->signature().inputs[0].dtype == DType::Float32);
  }
  SECTION("which inputs require gradients") {
    m.input("x").requires_grad(false);
    ModuleGraph g = c(3.0);
    CHECK(c.stats().captures == 2);
    g.back();
    CHECK(g.grad(m.param("w")).item() == 9);
    CHECK_FALSE(c.last()->signature().inputs[0].requires_grad);
  }
  SECTION("training mode") {
    m.eval();
    c(3.0);
    CHECK(c.stats().captures == 2);
    CHECK_FALSE(c.last()->signature().training);
  }
  SECTION("structure: a parameter registered") {
    const auto before = m.structure_version();
    m.register_parameter("extra", Tensor(1.0));
    CHECK(m.structure_version() != before);
    c(3.0);
    CHECK(c.stats().captures == 2);
  }
  SECTION("a parameter frozen (requires_grad false)") {
    m.param("w").requires_grad(false);
    ModuleGraph g = c(3.0);
    CHECK(c.stats().captures == 2);
    CHECK(c.stats().evictions == 1);
    g.back();
    CHECK(g.grad(m.input("x")).item() == 33);
  }
  SECTION("a parameter's shape changed (set_value)") {
    m.param("w").set_value(Tensor{1.0, 1.0});
    CHECK(c(3.0).value().to_doubles() == std::vector<double>{36, 36});
    CHECK(c.stats().captures == 2);
    CHECK(c.stats().evictions == 1);
  }
}

TEST_CASE("compile: a submodule registered or replaced deep in the tree changes the structure version") {
  zkynet::testing::TwoLayer outer;
  CompiledModule c = compile(outer);
  c(2.0);
  const auto before = outer.structure_version();
  SimpleModel replacement(5.0);
  outer.first.register_module("inner", replacement);  // a change two levels down
  CHECK(outer.structure_version() > before);
  c(2.0);
  CHECK(c.stats().captures == 2);
  outer.first.eval();  // a mode switch below the root
  c(2.0);
  CHECK(c.stats().captures == 3);
}

TEST_CASE("compile: the cache is LRU with a configurable size") {
  SimpleModel m;
  CompiledModule c = compile(m, {.cache_size = 2});
  c(Tensor{1.0});
  c(Tensor{1.0, 2.0});
  c(Tensor{1.0});              // a hit: now most recently used
  c(Tensor{1.0, 2.0, 3.0});    // evicts (2,)
  CHECK(c.stats().captures == 3);
  CHECK(c.stats().evictions == 1);
  c(Tensor{1.0});
  CHECK(c.stats().captures == 3);
  c(Tensor{1.0, 2.0});
  CHECK(c.stats().captures == 4);
  REQUIRE(c.schedules().size() == 2);
  CHECK(c.schedules()[0]->signature().inputs[0].shape == Shape{2});
}

TEST_CASE("compile: calls that cannot be replayed run dynamically") {
  SimpleModel m;
  CompiledModule c = compile(m);
  {
    NoGradGuard no_grad;
    CHECK(c(3.0).value().item() == 36);
  }
  Lambda outer({"x"}, [&](std::span<const NodeRef> x) { return c.call(x); });
  ModuleGraph g = outer(3.0);  // inside another call: one graph, that call's
  g.back();
  CHECK(g.grad(outer.input("x")).item() == 33);
  CHECK(c.stats().dynamic == 2);
  CHECK(c.stats().captures == 0);
}

TEST_CASE("compile: replays are bit-identical to dynamic calls: a 1000-operator chain") {
  Chain m;
  Generator gen(11);
  check_replays_bitwise(m, 1, 4, [&](int) { return std::vector<NodeRef>{Tensor::randn({4}, gen, DType::Float32)}; });
}

TEST_CASE("compile: replays are bit-identical to dynamic calls: MLP with cross-entropy, parameters updated in place") {
  MlpLoss m;
  Generator gen(12);
  check_replays_bitwise(m, 1, 4, [&](int k) {
    return std::vector<NodeRef>{Tensor::randn({6, 8}, gen, DType::Float32),
                                labels({k % 4, 1, 2, 3, (k + 1) % 4, 0})};
  });
}

TEST_CASE("compile: replays are bit-identical to dynamic calls: CNN (Conv2d, MaxPool2d, Flatten, Linear)") {
  CnnLoss m;
  Generator gen(13);
  check_replays_bitwise(m, 1, 3, [&](int k) {
    return std::vector<NodeRef>{Tensor::randn({2, 1, 8, 8}, gen, DType::Float32), labels({k % 5, 4})};
  });
}

TEST_CASE("compile: replays are bit-identical to dynamic calls: LSTM (not stateful)") {
  LstmLoss m;
  Generator gen(14);
  check_replays_bitwise(m, 1, 3, [&](int) { return std::vector<NodeRef>{Tensor::randn({6, 2, 3}, gen, DType::Float32)}; });
}

TEST_CASE("compile: a compiled module passes gradcheck, every value from a replay") {
  SimpleModel m;
  m.param("w").set_value(Tensor{0.5, -1.0, 2.0});
  CompiledModule c = compile(m);
  Generator gen(15);
  const GradcheckResult r = gradcheck(c, {Tensor::randn({3}, gen)});
  INFO(r.message);
  CHECK(r.ok);
  CHECK(c.stats().captures == 1);
  CHECK(c.stats().replays > 5);

  MlpLoss mlp;
  mlp.to(DType::Float64);
  CompiledModule cm = compile(mlp);
  const GradcheckResult r2 = gradcheck(cm, {Tensor::randn({3, 8}, gen), labels({0, 3, 1})});
  INFO(r2.message);
  CHECK(r2.ok);
}

TEST_CASE("compile: the schedule prints one line per node and draws with to_dot") {
  SimpleModel m;
  CompiledModule c = compile(m);
  c(Tensor{3.0, 4.0});
  const std::string text = c.last()->str();
  INFO(text);
  // (C++ evaluates mult's operands right to left here: square first)
  CHECK(contains(text, "%0 = input x  (2,) float64\n%1 = square(%0)  (2,) float64\n%2 = param w  () float64\n"
                       "%3 = add(%0, %2)  (2,) float64\n%4 = mult(%3, %1)  (2,) float64\n"));
  CHECK(std::count(text.begin(), text.end(), '\n') == static_cast<long>(c.last()->size() + 1));
  const std::string dot = to_dot(c.last()->graph());
  CHECK(contains(dot, "digraph"));
  CHECK(contains(dot, "mult"));
}

// ---- what capture cannot see ---------------------------------------------------------------

namespace {

// Branches on a value: x*x for positive x, x+x otherwise.
class Branchy : public Module<Branchy> {
 public:
  Branchy() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) { return x.value().item() > 0 ? op::mult(x, x) : op::add(x, x); }
};

// Reads a plain member: a constant of the schedule.
class Scaled : public Module<Scaled> {
 public:
  Scaled() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) { return op::mult(x, scale); }
  double scale = 2.0;
};

// Reads a number off a value (item()) and uses it as a constant.
class ItemTimes : public Module<ItemTimes> {
 public:
  ItemTimes() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) { return op::mult(x, x.value().item()); }
};

}  // namespace

TEST_CASE("compile footgun: value-dependent control flow replays the captured branch unless check = true") {
  Branchy m;
  CompiledModule c = compile(m);
  CHECK(c(2.0).value().item() == 4);
  CHECK(c(-3.0).value().item() == 9);  // silently the captured branch (x*x), not -6

  CompiledModule checked = compile(m, {.check = true});
  CHECK(checked(2.0).value().item() == 4);
  CHECK(checked(5.0).value().item() == 25);  // same structure: replayed and checked
  try {
    checked(-3.0);
    FAIL("check mode accepted a different branch");
  } catch (const UsageError& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(contains(what, "differs from the captured schedule at node %1"));
    CHECK(contains(what, "captured `%1 = mult(%0, %0)  () float64`"));
    CHECK(contains(what, "this call `%1 = add(%0, %0)  () float64`"));
    CHECK(contains(what, "control flow depends on values"));
  }
}

TEST_CASE("compile footgun: constants are frozen at capture") {
  Scaled m;
  CompiledModule c = compile(m);
  CHECK(c(3.0).value().item() == 6);
  m.scale = 5.0;
  CHECK(c(3.0).value().item() == 6);  // frozen
  CompiledModule checked = compile(m, {.check = true});
  checked(3.0);
  m.scale = 7.0;
  try {
    checked(3.0);
    FAIL("check mode accepted a changed constant");
  } catch (const UsageError& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "value frozen at capture differs"));
    CHECK(contains(e.what(), "const 5"));
    CHECK(contains(e.what(), "const 7"));
  }
  c.clear();  // captures again
  CHECK(c(3.0).value().item() == 21);
}

TEST_CASE("compile footgun: outputs are overwritten by the next replay unless copied") {
  SimpleModel m;
  CompiledModule c = compile(m);
  ModuleGraph first = c(3.0);
  const Tensor kept = first.value().clone();
  const Tensor shared = first.value();
  c(4.0);                                  // the capture's tape, recomputed
  CHECK(first.value().item() == 80);       // the first result now shows the second call's value
  CHECK(shared.item() == 36);              // a value taken before is the old tensor (a replay stores new ones)
  CHECK(kept.item() == 36);
}

TEST_CASE("compile footgun: item() during capture freezes the number it read") {
  ItemTimes m;
  CompiledModule c = compile(m);
  CHECK(c(2.0).value().item() == 4);
  CHECK(c(3.0).value().item() == 6);  // 3 * 2 (the captured item), not 9
  CompiledModule checked = compile(m, {.check = true});
  checked(2.0);
  CHECK_THROWS_WITH(checked(3.0), Catch::Contains("value frozen at capture differs"));
}

TEST_CASE("compile footgun: state outside the graph is refused") {
  Generator gen(16);
  const Tensor x = Tensor::randn({4, 2, 3}, gen, DType::Float32);
  SECTION("a stateful LSTM") {
    LstmLoss m(true);
    CompiledModule c = compile(m);
    CHECK_THROWS_WITH(c(x), Catch::Contains("is stateful") && Catch::Contains("lstm"));
  }
  SECTION("a layer turned stateful after capture") {
    LstmLoss m;
    CompiledModule c = compile(m);
    c(x);
    m.lstm.set_stateful(true);
    CHECK_THROWS_WITH(c(x), Catch::Contains("is stateful"));
  }
  SECTION("dropout in training mode; evaluation mode compiles") {
    nn::Dropout drop(0.5);
    CompiledModule c = compile(drop);
    CHECK_THROWS_WITH(c(x), Catch::Contains("dropout draws a fresh random mask"));
    drop.eval();
    CHECK(same_bits(c(x).value(), x));
    CHECK(same_bits(c(x).value(), x));
  }
}

TEST_CASE("compile footgun: operators applied to a replayed result outside the module are refused") {
  SimpleModel m;
  CompiledModule c = compile(m);
  ModuleGraph g = c(Tensor{1.0, 2.0});
  ModuleGraph loss(op::sum(g));  // joins the captured tape
  loss.back();
  CHECK(loss.grad(m.param("w")).item() == 5);
  CHECK_THROWS_WITH(c(Tensor{1.0, 2.0}), Catch::Contains("extended by 1 node(s)"));
}

TEST_CASE("compile: an error during a replay names the node and the module") {
  MlpLoss m;
  CompiledModule c = compile(m);
  Generator gen(17);
  c(Tensor::randn({2, 8}, gen, DType::Float32), labels({0, 1}));
  CHECK_THROWS_WITH(c(Tensor::randn({2, 8}, gen, DType::Float32), labels({0, 9})),
                    Catch::Contains("replay of node") && Catch::Contains("cross_entropy"));
}

TEST_CASE("compile footgun: BatchNorm in training mode: running statistics follow, the batch counter does not") {
  Generator gen(18);
  nn::BatchNorm1d compiled_bn(3);
  nn::BatchNorm1d dynamic_bn(3);
  CompiledModule c = compile(compiled_bn);
  for (int k = 0; k < 3; ++k) {
    const Tensor x = Tensor::randn({4, 3}, gen, DType::Float32);
    REQUIRE(same_bits(c(x).value(), dynamic_bn(x).value()));
  }
  CHECK(same_bits(compiled_bn.buffer("running_mean"), dynamic_bn.buffer("running_mean")));
  CHECK(same_bits(compiled_bn.buffer("running_var"), dynamic_bn.buffer("running_var")));
  CHECK(dynamic_bn.buffer("num_batches_tracked").item() == 3);
  CHECK(compiled_bn.buffer("num_batches_tracked").item() == 1);  // advanced by the capture only

  nn::BatchNorm1d cumulative(3, {.momentum = std::nullopt});
  CompiledModule cc = compile(cumulative);
  CHECK_THROWS_WITH(cc(Tensor::randn({4, 3}, gen, DType::Float32)), Catch::Contains("cumulative average"));
  cumulative.eval();
  CHECK_NOTHROW(cc(Tensor::randn({4, 3}, gen, DType::Float32)));
}

TEST_CASE("compile: a constant tensor written in place after capture is read by the replay, and back() accepts it") {
  Tensor scale = Tensor{2.0, 3.0};
  Lambda m({"x"}, [&](std::span<const NodeRef> x) { return op::sum(op::mult(x[0], scale)); });
  CompiledModule c = compile(m);
  CHECK(c(Tensor{1.0, 1.0}).value().item() == 5);
  scale.fill_(1.0);  // the same storage: the captured constant shares it
  ModuleGraph g = c(Tensor{1.0, 1.0});
  CHECK(g.value().item() == 2);
  g.back();
  CHECK(g.grad(m.input("x")).to_doubles() == std::vector<double>{1, 1});
}

namespace {
// Stands for a communication operator (distributed/'s collectives declare the same flag).
struct FakeCollectiveDef {
  static constexpr std::string_view name = "fake_allreduce";
  static constexpr std::array<std::string_view, 1> inputs{"x"};
  static constexpr bool visit_without_gradient = true;
  Tensor forward(const Tensor& x) const { return x.clone(); }
  std::array<Tensor, 1> vjp(const VjpContext<1>& c) const { return {c.grad}; }
};
}  // namespace

TEST_CASE("compile: communication operators are refused at capture") {
  Lambda m({"x"}, [](std::span<const NodeRef> x) { return apply(FakeCollectiveDef{}, x[0]); });
  CompiledModule c = compile(m);
  CHECK_THROWS_WITH(c(Tensor{1.0}), Catch::Contains("fake_allreduce") && Catch::Contains("communication operators"));
}

namespace {
// Calls itself on 2x, `depth` levels deep: f_d(x) = f_{d-1}(2x) + x, f_0(x) = x.
class Recursive : public Module<Recursive> {
 public:
  Recursive() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) {
    if (depth == 0) return x;
    --depth;
    NodeRef inner = (*this)(op::mult(x, 2.0));
    ++depth;
    return op::add(inner, x);
  }
  int depth = 2;
};
}  // namespace

TEST_CASE("compile: a module that calls itself replays from its outermost inputs") {
  Recursive m;  // f(x) = 4x + 2x + x = 7x
  CompiledModule c = compile(m);
  CHECK(c(1.0).value().item() == 7);
  CHECK(c(3.0).value().item() == 21);
  CHECK(c(-2.0).value().item() == -14);
  CHECK(c.stats().replays == 2);
}

namespace {

// exp(x) and its square feed nothing: two dead operators.
class WithDeadBranch : public Module<WithDeadBranch> {
 public:
  WithDeadBranch() : Module({Variable("x")}, {Parameter("w", Tensor::full({3}, 0.5))}) {}
  NodeRef call(const NodeRef& x) {
    const NodeRef unused = op::square(op::exp(op::mult(x, 3.0)));
    (void)unused;
    return op::sum(op::mult(op::tanh(x), param("w")));
  }
};

}  // namespace

TEST_CASE("compile pass: dead-node elimination skips operators nothing depends on, results bit for bit") {
  WithDeadBranch m;
  CompiledModule c = compile(m);
  Generator gen(31);
  for (int k = 0; k < 3; ++k) {
    const Tensor x = Tensor::randn({3}, gen);
    ModuleGraph d = m(x);
    d.vjp(Tensor::ones({}, DType::Float64));
    const Tensor dv = d.value().clone();
    const Tensor dg = d.grad(m.param("w")).clone();
    ModuleGraph r = c(x);
    r.vjp(Tensor::ones({}, DType::Float64));
    REQUIRE(same_bits(dv, r.value()));
    REQUIRE(same_bits(dg, r.grad(m.param("w"))));
  }
  const Schedule& s = *c.last();
  REQUIRE(s.eliminated() == 3);  // mult(x, 3), exp, square
  const std::string text = s.str();
  CHECK(contains(text, "3 dead (not replayed)"));
  CHECK(contains(text, "exp(%"));
  CHECK(text.find("dead", text.find("exp(%")) < text.find("\n", text.find("exp(%")));  // on exp's line
  CHECK_FALSE(contains(text.substr(text.find("tanh(%"), text.find('\n', text.find("tanh(%")) - text.find("tanh(%")),
                       "dead"));
  const std::string dot = s.dot();
  CHECK(contains(dot, "xlabel=\"dead\""));
}

TEST_CASE("compile pass: an operator with side effects is replayed although nothing reads its result") {
  Generator gen(32);
  nn::BatchNorm1d compiled_bn(3);
  nn::BatchNorm1d dynamic_bn(3);
  const auto body = [](nn::BatchNorm1d& bn) {
    return [&bn](std::span<const NodeRef> x) {
      const NodeRef unused = bn(x[0]);  // only its running statistics matter
      (void)unused;
      return op::sum(op::square(x[0]));
    };
  };
  Lambda compiled_m({"x"}, body(compiled_bn));
  Lambda dynamic_m({"x"}, body(dynamic_bn));
  CompiledModule c = compile(compiled_m);
  for (int k = 0; k < 3; ++k) {
    const Tensor x = Tensor::randn({4, 3}, gen, DType::Float32);
    REQUIRE(same_bits(c(x).value(), dynamic_m(x).value()));
  }
  CHECK(c.stats().replays == 2);
  CHECK(c.last()->eliminated() == 0);
  CHECK(same_bits(compiled_bn.buffer("running_mean"), dynamic_bn.buffer("running_mean")));
  CHECK(same_bits(compiled_bn.buffer("running_var"), dynamic_bn.buffer("running_var")));
}

TEST_CASE("compile pass: check mode ignores the stale values of dead operators") {
  WithDeadBranch m;
  CompiledModule c = compile(m, {.check = true});
  c(Tensor::full({3}, 0.1));
  REQUIRE_NOTHROW(c(Tensor::full({3}, 0.7)));
  CHECK(c.last()->eliminated() == 3);
}

namespace {

// tanh(x) and x*w written twice: the second of each is a common subexpression of the first.
class WithRepeats : public Module<WithRepeats> {
 public:
  WithRepeats() : Module({Variable("x")}, {Parameter("w", Tensor::full({3}, 0.25))}) {}
  NodeRef call(const NodeRef& x) {
    const NodeRef w = param("w");
    const NodeRef a = op::add(op::tanh(x), op::mult(x, w));
    const NodeRef b = op::add(op::tanh(x), op::mult(x, w));  // tanh, mult and this add repeat
    return op::sum(op::mult(a, op::exp(b)));
  }
};

}  // namespace

TEST_CASE("compile pass: common subexpressions are computed once, results bit for bit") {
  WithRepeats m;
  CompiledModule c = compile(m);
  Generator gen(32);
  for (int k = 0; k < 3; ++k) {
    const Tensor x = Tensor::randn({3}, gen);
    ModuleGraph d = m(x);
    d.vjp(Tensor::ones({}, DType::Float64));
    const Tensor dv = d.value().clone();
    const Tensor dw = d.grad(m.param("w")).clone();
    const Tensor dx = d.grad(m.input("x")).clone();
    ModuleGraph r = c(x);
    r.vjp(Tensor::ones({}, DType::Float64));
    REQUIRE(same_bits(dv, r.value()));
    REQUIRE(same_bits(dw, r.grad(m.param("w"))));
    REQUIRE(same_bits(dx, r.grad(m.input("x"))));
  }
  const Schedule& s = *c.last();
  REQUIRE(s.merged() == 3);
  CHECK(contains(s.str(), "3 merged (common subexpressions)"));
  CHECK(contains(s.dot(), "xlabel=\"= %"));
}

TEST_CASE("compile pass: operators with other attributes or other parents are not merged") {
  Lambda f({"x"}, [](std::span<const NodeRef> in) {
    const NodeRef x = in[0];
    // sum over axis 0 and over axis 1 of a square matrix: the same operator, other attributes;
    // two constants of equal value are separate nodes, so the mults stay too.
    return op::add(op::sum(op::sum(x, {0}) * op::sum(x, {1})), op::sum(op::mult(x, 2.0) + op::mult(x, 2.0)));
  });
  CompiledModule c = compile(f);
  c(Tensor::full({2, 2}, 1.0));
  c(Tensor::full({2, 2}, 2.0));
  CHECK(c.last()->merged() == 0);
}
