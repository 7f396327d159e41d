// compile() of a whole training step (compile.h, effects.h): forward, back() and the optimizer
// update replay as one schedule. N compiled steps must leave the parameters bit for bit where
// N dynamic steps from the same initialisation leave them.
#include "bits.h"

#include <zkynet/zkynet.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace zkynet;
using zkynet::testing::same_bits;
using zkynet::testing::contains;

namespace {

Tensor labels(std::vector<std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return Tensor::from_vector(v, {n});
}

// The digits MLP's shape (8x8 images, 10 classes), smaller hidden layer.
class DigitsMlp : public Module<DigitsMlp> {
 public:
  DigitsMlp() : Module({Variable("x"), Variable("y")}) {
    Generator gen(21);
    net.add<nn::Linear>(64, 32, nn::LinearOptions{.generator = &gen});
    net.add<nn::ReLU>();
    net.add<nn::Linear>(32, 10, nn::LinearOptions{.generator = &gen});
    register_module("net", net);
    input("y").requires_grad(false);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::cross_entropy(net(x), y); }
  nn::Sequential net;
};

class SmallCnn : public Module<SmallCnn> {
 public:
  SmallCnn() : Module({Variable("x"), Variable("y")}) {
    Generator gen(22);
    net.add<nn::Conv2d>(1, 3, 3, nn::Conv2dOptions{.generator = &gen});
    net.add<nn::ReLU>();
    net.add<nn::MaxPool2d>(2);
    net.add<nn::Flatten>();
    net.add<nn::Linear>(27, 10, nn::LinearOptions{.generator = &gen});
    register_module("net", net);
    input("y").requires_grad(false);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::cross_entropy(net(x), y); }
  nn::Sequential net;
};

class SmallLstm : public Module<SmallLstm> {
 public:
  SmallLstm() : SmallLstm(Generator(23)) {}
  explicit SmallLstm(Generator gen)
      : Module({Variable("x"), Variable("y")}), lstm(3, 4, nn::RecurrentOptions{.generator = &gen}),
        head(4, 1, nn::LinearOptions{.generator = &gen}) {
    register_module("lstm", lstm);
    register_module("head", head);
    input("y").requires_grad(false);
  }
  NodeRef call(const NodeRef& x, const NodeRef& y) { return op::mse_loss(head(lstm(x)), y); }
  nn::LSTM lstm;
  nn::Linear head;
};

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Parameter>)>;
using MakeArgs = std::function<std::vector<NodeRef>(int)>;

std::vector<NodeRef> digits_args(int k) {
  Generator gen(100 + static_cast<std::uint64_t>(k));
  return {Tensor::randn({6, 64}, gen, DType::Float32), labels({k % 10, 1, 2, 3, (k + 5) % 10, 9})};
}
std::vector<NodeRef> cnn_args(int k) {
  Generator gen(200 + static_cast<std::uint64_t>(k));
  return {Tensor::randn({2, 1, 8, 8}, gen, DType::Float32), labels({k % 10, 7})};
}
std::vector<NodeRef> lstm_args(int k) {
  Generator gen(300 + static_cast<std::uint64_t>(k));
  return {Tensor::randn({5, 2, 3}, gen, DType::Float32), Tensor::randn({5, 2, 1}, gen, DType::Float32)};
}

MakeOptimizer sgd_momentum = [](std::vector<Parameter> p) {
  return std::make_unique<optim::SGD>(std::move(p), optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3});
};
MakeOptimizer adam = [](std::vector<Parameter> p) {
  return std::make_unique<optim::Adam>(std::move(p), optim::AdamOptions{.lr = 1e-2});
};
MakeOptimizer adamw = [](std::vector<Parameter> p) {
  return std::make_unique<optim::AdamW>(std::move(p), optim::AdamWOptions{.lr = 1e-2});
};

// The training step as a function of the step's arguments: zero_grad, loss, back(), step().
std::unique_ptr<Lambda> step_of(ModuleBase& model, optim::Optimizer& opt, std::function<void()> extra = {}) {
  auto step = std::make_unique<Lambda>(std::vector<std::string>{"x", "y"}, [&model, &opt, extra](std::span<const NodeRef> a) {
    opt.zero_grad();
    ModuleGraph loss = model.invoke(a);
    loss.back();
    opt.step();
    if (extra) extra();
    return loss.root();
  }, "train_step");
  step->input("y").requires_grad(false);
  return step;
}

// `steps` dynamic steps of one model against compiled steps of an identical one: losses and
// parameters bit for bit after every step. between(k, dyn_opt, compiled_opt) runs after step k.
template <class Model>
void check_steps_bitwise(const MakeOptimizer& make_opt, const MakeArgs& args, int steps,
                         const std::function<void(optim::Optimizer&, optim::Optimizer&)>& between = {}) {
  Model dyn;
  Model fast;
  auto dyn_opt = make_opt(dyn.parameters());
  auto fast_opt = make_opt(fast.parameters());
  auto step = step_of(fast, *fast_opt);
  CompiledModule compiled = compile(*step);
  for (int k = 0; k < steps; ++k) {
    const std::vector<NodeRef> a = args(k);
    dyn_opt->zero_grad();
    ModuleGraph d = dyn.invoke(a);
    d.back();
    dyn_opt->step();
    ModuleGraph r = compiled.call(a);
    INFO("step " << k);
    REQUIRE(same_bits(d.value(), r.value()));
    const auto pd = dyn.parameters();
    const auto pf = fast.parameters();
    for (std::size_t i = 0; i < pd.size(); ++i) {
      INFO("parameter " << pd[i].functional_name());
      REQUIRE(same_bits(pd[i].value(), pf[i].value()));
      REQUIRE(same_bits(pd[i].grad(), pf[i].grad()));
    }
    if (between) between(*dyn_opt, *fast_opt);
  }
  CHECK(compiled.stats().captures == 1);
  CHECK(compiled.stats().replays == static_cast<std::size_t>(steps - 1));
}

}  // namespace

TEST_CASE("compile step: digits MLP, SGD with momentum: parameters bit-identical to dynamic steps") {
  check_steps_bitwise<DigitsMlp>(sgd_momentum, digits_args, 5);
}

TEST_CASE("compile step: digits MLP, Adam and AdamW: parameters bit-identical to dynamic steps") {
  check_steps_bitwise<DigitsMlp>(adam, digits_args, 5);
  check_steps_bitwise<DigitsMlp>(adamw, digits_args, 5);
}

TEST_CASE("compile step: small CNN, SGD with momentum and AdamW: bit-identical") {
  check_steps_bitwise<SmallCnn>(sgd_momentum, cnn_args, 4);
  check_steps_bitwise<SmallCnn>(adamw, cnn_args, 4);
}

TEST_CASE("compile step: LSTM, Adam and SGD with momentum: bit-identical") {
  check_steps_bitwise<SmallLstm>(adam, lstm_args, 4);
  check_steps_bitwise<SmallLstm>(sgd_momentum, lstm_args, 4);
}

TEST_CASE("compile step: a learning-rate scheduler between replays is honoured (the rate is read at replay)") {
  // StepLR halves the rate after every step on both sides; a frozen rate would diverge at step 2.
  std::unique_ptr<optim::StepLR> dyn_sched;
  std::unique_ptr<optim::StepLR> fast_sched;
  check_steps_bitwise<DigitsMlp>(adam, digits_args, 4, [&](optim::Optimizer& d, optim::Optimizer& f) {
    if (!dyn_sched) {
      dyn_sched = std::make_unique<optim::StepLR>(d, 1, 0.5);
      fast_sched = std::make_unique<optim::StepLR>(f, 1, 0.5);
    }
    dyn_sched->step();
    fast_sched->step();
  });
  REQUIRE(fast_sched->get_last_lr() < 1e-2 / 4);
}

TEST_CASE("compile step: a learning rate set to zero after capture leaves the parameters unchanged") {
  DigitsMlp m;
  optim::SGD opt(m.parameters(), {.lr = 0.1});
  auto step = step_of(m, opt);
  CompiledModule compiled = compile(*step);
  compiled.call(digits_args(0));
  const Tensor before = m.parameters()[0].value().clone();
  compiled.call(digits_args(1));
  REQUIRE_FALSE(same_bits(before, m.parameters()[0].value()));  // the replay updated
  opt.set_lr(0.0);
  const Tensor frozen = m.parameters()[0].value().clone();
  compiled.call(digits_args(2));
  REQUIRE(compiled.stats().replays == 2);
  REQUIRE(same_bits(frozen, m.parameters()[0].value()));
}

TEST_CASE("compile step: a scheduler stepped inside the step function is replayed too") {
  DigitsMlp dyn;
  DigitsMlp fast;
  optim::SGD dyn_opt(dyn.parameters(), {.lr = 0.1, .momentum = 0.5});
  optim::SGD fast_opt(fast.parameters(), {.lr = 0.1, .momentum = 0.5});
  optim::StepLR dyn_sched(dyn_opt, 2, 0.5);
  optim::StepLR fast_sched(fast_opt, 2, 0.5);
  auto step = step_of(fast, fast_opt, [&] { fast_sched.step(); });
  CompiledModule compiled = compile(*step);
  for (int k = 0; k < 5; ++k) {
    dyn_opt.zero_grad();
    dyn.invoke(digits_args(k)).back();
    dyn_opt.step();
    dyn_sched.step();
    compiled.call(digits_args(k));
  }
  REQUIRE(fast_opt.lr() == dyn_opt.lr());
  REQUIRE(fast_opt.lr() == 0.025);
  for (std::size_t i = 0; i < dyn.parameters().size(); ++i) {
    REQUIRE(same_bits(dyn.parameters()[i].value(), fast.parameters()[i].value()));
  }
}

TEST_CASE("compile step: the schedule lists zero_grad, back() and the optimizer step in order") {
  DigitsMlp m;
  optim::Adam opt(m.parameters());
  auto step = step_of(m, opt);
  CompiledModule compiled = compile(*step);
  compiled.call(digits_args(0));
  const Schedule& s = *compiled.last();
  REQUIRE(s.effects().size() == 4 + 1 + 1);  // four zero_grad, back, step
  CHECK(s.effects()[0].name == "zero_grad(net.0.weight)");
  CHECK(s.effects()[4].name.rfind("back(%", 0) == 0);
  CHECK(s.effects()[5].name == "Adam.step");
  CHECK(s.effects()[4].position == s.size());  // after the last node
  const std::string text = s.str();
  CHECK(text.find("zero_grad(net.0.weight)") < text.find("cross_entropy"));
  CHECK(text.find("cross_entropy") < text.find("Adam.step"));
}

TEST_CASE("compile step footgun: check = true compares the effects and runs them once") {
  DigitsMlp m;
  optim::SGD opt(m.parameters(), {.lr = 0.1});
  bool clip = false;
  Lambda step({"x", "y"}, [&](std::span<const NodeRef> a) {
    opt.zero_grad();
    ModuleGraph loss = m.invoke(a);
    loss.back();
    if (clip) optim::clip_grad_norm(m.parameters(), 1.0);  // control flow outside the graph
    opt.step();
    return loss.root();
  });
  step.input("y").requires_grad(false);
  CompiledModule checked = compile(step, {.check = true});
  checked.call(digits_args(0));
  const Tensor before = m.parameters()[0].value().clone();
  checked.call(digits_args(1));  // traced and compared: one update, not two
  DigitsMlp ref;
  optim::SGD ref_opt(ref.parameters(), {.lr = 0.1});
  for (int k = 0; k < 2; ++k) {
    ref_opt.zero_grad();
    ref.invoke(digits_args(k)).back();
    ref_opt.step();
  }
  REQUIRE(same_bits(ref.parameters()[0].value(), m.parameters()[0].value()));
  clip = true;
  try {
    checked.call(digits_args(2));
    FAIL("no error");
  } catch (const UsageError& e) {
    CHECK(contains(e.what(), "effects differ"));
    CHECK(contains(e.what(), "clip_grad_norm"));
  }
}

TEST_CASE("compile step footgun: back() of a graph computed outside the compiled call is refused") {
  DigitsMlp m;
  const std::vector<NodeRef> a = digits_args(0);
  ModuleGraph outside = m.invoke(a);
  Lambda step({"x", "y"}, [&](std::span<const NodeRef> in) {
    outside.back();
    return m.invoke(in).root();
  });
  step.input("y").requires_grad(false);
  CompiledModule compiled = compile(step);
  REQUIRE_THROWS_WITH(compiled.call(a), Catch::Contains("not the compiled call's"));
}
