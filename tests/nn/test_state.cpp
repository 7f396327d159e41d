#include <zkynet/nn/activation.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/normalization.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/nn/state.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <string>
#include <vector>

using namespace zkynet;
using zkynet::testing::error_message;

namespace {

// A submodule with a buffer only, so that dotted buffer names are exercised.
class Stats : public Module<Stats> {
 public:
  Stats() : Module({Variable("x")}) { register_buffer("running_mean", Tensor{0.0, 0.0}); }
  NodeRef call(const NodeRef& x) { return x; }
};

// Linear(3, 2) -> ReLU -> Linear(2, 1), float64, a buffer of its own and one in `stats`.
class Net : public Module<Net> {
 public:
  explicit Net(std::uint64_t seed = 1) : Module({Variable("x")}), gen_(seed) {
    register_module("l1", l1);
    register_module("l2", l2);
    register_module("stats", stats);
    register_buffer("count", Tensor{0.0});
  }
  NodeRef call(const NodeRef& x) { return l2(op::relu(l1(x))); }

  Generator gen_;
  nn::Linear l1{3, 2, {.dtype = DType::Float64, .generator = &gen_}};
  nn::Linear l2{2, 1, {.dtype = DType::Float64, .generator = &gen_}};
  Stats stats;
};

std::vector<std::string> keys(const nn::StateDict& dict) {
  std::vector<std::string> out;
  for (const auto& [key, value] : dict) out.push_back(key);
  return out;
}

nn::StateDict without(nn::StateDict dict, const std::string& key) {
  std::erase_if(dict, [&](const auto& entry) { return entry.first == key; });
  return dict;
}

void perturb(Net& net) {
  for (auto& p : net.parameters()) {
    Tensor v = p.value();
    v.add_(Tensor::ones(v.shape()));
  }
  net.buffer("count").fill_(7.0);
  net.stats.buffer("running_mean").fill_(-1.0);
}

}  // namespace

// ---- flat vectors ------------------------------------------------------------------------

TEST_CASE("parameters_to_vector concatenates the values row-major, in order") {
  Parameter a("a", Tensor{{1.0, 2.0}, {3.0, 4.0}});
  Parameter b("b", Tensor{5.0, 6.0});
  const Tensor v = nn::parameters_to_vector({b, a});
  CHECK(v.shape() == Shape{6});
  CHECK(v.to_doubles() == std::vector<double>{5.0, 6.0, 1.0, 2.0, 3.0, 4.0});
}

TEST_CASE("parameters_to_vector keeps a common dtype and promotes mixed ones to float64") {
  Parameter f("f", Tensor{1.5}.to(DType::Float32));
  Parameter d("d", Tensor{2.5});
  CHECK(nn::parameters_to_vector({f, f}).dtype() == DType::Float32);
  const Tensor mixed = nn::parameters_to_vector({f, d});
  CHECK(mixed.dtype() == DType::Float64);
  CHECK(mixed.to_doubles() == std::vector<double>{1.5, 2.5});
}

TEST_CASE("parameters_to_vector of no parameters is an empty vector") {
  CHECK(nn::parameters_to_vector({}).shape() == Shape{0});
}

TEST_CASE("vector_to_parameters writes back in place, a round trip of parameters_to_vector") {
  Net net;
  const auto params = net.parameters();
  const Tensor saved = nn::parameters_to_vector(params);
  const void* weight_buffer = net.l1.param("weight").value().raw_data();
  Parameter alias = net.l1.param("weight");  // a copy shares the value
  nn::vector_to_parameters(Tensor::zeros({saved.numel()}), params);
  CHECK(alias.value().to_doubles() == std::vector<double>(6, 0.0));
  nn::vector_to_parameters(saved, params);
  CHECK(net.l1.param("weight").value().raw_data() == weight_buffer);
  CHECK(allclose(nn::parameters_to_vector(params), saved, 0.0, 0.0));
}

TEST_CASE("vector_to_parameters converts to each parameter's dtype") {
  Parameter f("f", Tensor{0.0, 0.0}.to(DType::Float32));
  nn::vector_to_parameters(Tensor{0.25, -1.5}, {f});
  CHECK(f.value().dtype() == DType::Float32);
  CHECK(f.value().to_doubles() == std::vector<double>{0.25, -1.5});
}

TEST_CASE("vector_to_parameters refuses a vector of the wrong length") {
  Parameter a("a", Tensor{{1.0, 2.0}, {3.0, 4.0}});
  Parameter b("b", Tensor{5.0});
  CHECK_THAT(error_message<ShapeError>([&] { nn::vector_to_parameters(Tensor::zeros({4}), {a, b}); }),
             Catch::Contains("length 4") && Catch::Contains("5 elements"));
  CHECK_THROWS_AS(nn::vector_to_parameters(Tensor::zeros({6}), {a, b}), ShapeError);
  CHECK(a.value().to_doubles() == std::vector<double>{1.0, 2.0, 3.0, 4.0});
}

TEST_CASE("vector_to_parameters refuses a vector that is not 1-d") {
  Parameter a("a", Tensor{{1.0, 2.0}, {3.0, 4.0}});
  CHECK_THAT(error_message<ShapeError>([&] { nn::vector_to_parameters(Tensor::zeros({2, 2}), {a}); }),
             Catch::Contains("1-d") && Catch::Contains("(2,2)"));
}

TEST_CASE("gradients_to_vector puts zeros where a parameter has no gradient") {
  Parameter a("a", Tensor{1.0, 2.0});
  Parameter b("b", Tensor{{3.0}, {4.0}});
  Parameter c("c", Tensor{5.0});
  a.accumulate_grad(Tensor{0.5, -0.5});
  c.accumulate_grad(Tensor{2.0});
  CHECK(nn::gradients_to_vector({a, b, c}).to_doubles() == std::vector<double>{0.5, -0.5, 0.0, 0.0, 2.0});
}

TEST_CASE("gradients_to_vector follows autodiff's accumulated gradients") {
  Net net;
  Lambda loss({"x"}, [&](std::span<const NodeRef> in) { return op::sum(net(in[0])); });
  loss(Tensor{{1.0, -2.0, 0.5}}).back();
  const Tensor g = nn::gradients_to_vector(net.parameters());
  CHECK(g.numel() == 6 + 2 + 2 + 1);
  // the output bias enters the sum once: its gradient is 1
  CHECK(g.to_doubles().back() == 1.0);
}

// ---- state dicts -------------------------------------------------------------------------

TEST_CASE("state_dict lists the named parameters, then the named buffers") {
  Net net;
  const nn::StateDict dict = nn::state_dict(net);
  CHECK(keys(dict) ==
        std::vector<std::string>{"l1.weight", "l1.bias", "l2.weight", "l2.bias", "count", "stats.running_mean"});
  CHECK(allclose(dict[0].second, net.l1.param("weight").value(), 0.0, 0.0));
}

TEST_CASE("state_dict holds copies that later training does not change") {
  Net net;
  const nn::StateDict dict = nn::state_dict(net);
  const Tensor weight_before = dict[0].second.clone();
  CHECK_FALSE(dict[0].second.shares_storage_with(net.l1.param("weight").value()));
  perturb(net);
  CHECK(allclose(dict[0].second, weight_before, 0.0, 0.0));
  CHECK(dict[4].second.item() == 0.0);
  CHECK(dict[5].second.to_doubles() == std::vector<double>{0.0, 0.0});
}

TEST_CASE("load_state_dict restores parameters and buffers in place") {
  Net net;
  const nn::StateDict saved = nn::state_dict(net);
  const void* weight_buffer = net.l1.param("weight").value().raw_data();
  perturb(net);
  const auto result = nn::load_state_dict(net, saved);
  CHECK(result.missing_keys.empty());
  CHECK(result.unexpected_keys.empty());
  CHECK(net.l1.param("weight").value().raw_data() == weight_buffer);
  const nn::StateDict now = nn::state_dict(net);
  for (std::size_t i = 0; i < saved.size(); ++i) {
    INFO(saved[i].first);
    CHECK(allclose(now[i].second, saved[i].second, 0.0, 0.0));
  }
}

TEST_CASE("load_state_dict carries a model's function over to another instance") {
  Net trained(1), fresh(2);
  const Tensor x = Tensor{{1.0, -2.0, 0.5}, {0.3, 0.2, 0.1}};
  REQUIRE_FALSE(allclose(trained(x).value(), fresh(x).value()));
  nn::load_state_dict(fresh, nn::state_dict(trained));
  CHECK(allclose(trained(x).value(), fresh(x).value(), 0.0, 0.0));
}

TEST_CASE("load_state_dict converts values to the module's dtype") {
  Net net;
  nn::StateDict dict = nn::state_dict(net);
  for (auto& [key, value] : dict) value = Tensor::full(value.shape(), 0.5, DType::Float32);
  nn::load_state_dict(net, dict);
  CHECK(net.l1.param("weight").value().dtype() == DType::Float64);
  CHECK(net.l1.param("weight").value().to_doubles() == std::vector<double>(6, 0.5));
}

TEST_CASE("load_state_dict names a missing key") {
  Net net;
  const nn::StateDict dict = without(nn::state_dict(net), "l2.bias");
  CHECK_THAT(error_message<IndexError>([&] { nn::load_state_dict(net, dict); }),
             Catch::Contains("missing key(s) 'l2.bias'"));
}

TEST_CASE("load_state_dict names an unexpected key") {
  Net net;
  nn::StateDict dict = nn::state_dict(net);
  dict.emplace_back("l3.weight", Tensor{1.0});
  CHECK_THAT(error_message<IndexError>([&] { nn::load_state_dict(net, dict); }),
             Catch::Contains("unexpected key(s) 'l3.weight'"));
}

TEST_CASE("load_state_dict without strict loads the matching keys and reports the others") {
  Net source(1), net(2);
  nn::StateDict dict = without(nn::state_dict(source), "count");
  dict.emplace_back("extra", Tensor{1.0});
  net.buffer("count").fill_(3.0);
  const auto result = nn::load_state_dict(net, dict, /*strict=*/false);
  CHECK(result.missing_keys == std::vector<std::string>{"count"});
  CHECK(result.unexpected_keys == std::vector<std::string>{"extra"});
  CHECK(allclose(net.l2.param("weight").value(), source.l2.param("weight").value(), 0.0, 0.0));
  CHECK(net.buffer("count").item() == 3.0);
}

TEST_CASE("load_state_dict names a shape mismatch with both shapes, strict or not") {
  Net net;
  nn::StateDict dict = nn::state_dict(net);
  dict[2].second = Tensor::zeros({3, 2});  // l2.weight is (1,2)
  for (bool strict : {true, false}) {
    CHECK_THAT(error_message<ShapeError>([&] { nn::load_state_dict(net, dict, strict); }),
               Catch::Contains("'l2.weight'") && Catch::Contains("(3,2)") && Catch::Contains("(1,2)"));
  }
}

TEST_CASE("a failed load_state_dict leaves the module unchanged") {
  Net source(1), net(2);
  const nn::StateDict before = nn::state_dict(net);
  nn::StateDict dict = nn::state_dict(source);
  dict.back().second = Tensor::zeros({5});  // stats.running_mean, checked after every parameter
  CHECK_THROWS_AS(nn::load_state_dict(net, dict), ShapeError);
  CHECK_THROWS_AS(nn::load_state_dict(net, without(nn::state_dict(source), "count")), IndexError);
  const nn::StateDict after = nn::state_dict(net);
  for (std::size_t i = 0; i < before.size(); ++i) {
    INFO(before[i].first);
    CHECK(allclose(after[i].second, before[i].second, 0.0, 0.0));
  }
}

TEST_CASE("load_state_dict refuses a key given twice") {
  Net net;
  nn::StateDict dict = nn::state_dict(net);
  dict.push_back(dict.front());
  CHECK_THAT(error_message<UsageError>([&] { nn::load_state_dict(net, dict); }),
             Catch::Contains("'l1.weight' appears twice"));
}

// ---- weights -----------------------------------------------------------------------------

TEST_CASE("weights leaves out the biases") {
  nn::Sequential mlp;
  mlp.add<nn::Linear>(4, 3);
  mlp.add<nn::ReLU>();
  mlp.add<nn::Linear>(3, 2);
  mlp.add<nn::Linear>(2, 1, nn::LinearOptions{.bias = false});
  const auto ws = nn::weights(mlp);
  REQUIRE(ws.size() == 3);
  CHECK(ws[0].uid() == mlp[0].param("weight").uid());
  CHECK(ws[1].uid() == mlp[2].param("weight").uid());
  CHECK(ws[2].uid() == mlp[3].param("weight").uid());
}

namespace {

// The names nn::weights returns, in order, from the module's dotted names.
std::vector<std::string> weight_names(const ModuleBase& module) {
  std::vector<std::string> out;
  const auto ws = nn::weights(module);
  for (const auto& [name, p] : module.named_parameters()) {
    for (const auto& w : ws) {
      if (w.uid() == p.uid()) out.push_back(name);
    }
  }
  REQUIRE(out.size() == ws.size());
  return out;
}

// A user's layer: a parameter named "bias" that is not marked one, and one marked a bias
// whatever its name.
class Affine : public Module<Affine> {
 public:
  Affine() : Module({Variable("x")}) {
    register_parameter("bias", Tensor{1.0, 2.0});
    register_parameter("shift", Tensor{0.0, 0.0}).is_bias(true);
  }
  NodeRef call(const NodeRef& x) { return op::add(op::mult(x, param("bias")), param("shift")); }
};

}  // namespace

TEST_CASE("weights leaves out an LSTM's bias_ih and bias_hh in every layer (marked, not named)") {
  nn::LSTM lstm(3, 4, {.num_layers = 2});
  CHECK(weight_names(lstm) == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"});
  nn::GRU gru(3, 4);
  CHECK(weight_names(gru) == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0"});
  CHECK(lstm.param("bias_ih_l1").is_bias());
  CHECK_FALSE(lstm.param("weight_hh_l1").is_bias());
}

TEST_CASE("weights keeps Linear's and Conv2d's weights and leaves out their biases") {
  nn::Sequential net;
  net.add<nn::Conv2d>(1, 2, nn::IntPair{3, 3});
  net.add<nn::Linear>(4, 3);
  net.add<nn::Conv2d>(2, 2, nn::IntPair{1, 1}, nn::Conv2dOptions{.bias = false});
  CHECK(weight_names(net) == std::vector<std::string>{"0.weight", "1.weight", "2.weight"});
}

TEST_CASE("weights keeps a user's Parameter unless it is marked a bias, whatever its name") {
  Affine affine;
  CHECK(weight_names(affine) == std::vector<std::string>{"bias"});
  Parameter mine("w", Tensor{1.0});
  CHECK_FALSE(mine.is_bias());
  CHECK(mine.is_bias(true).is_bias());
  CHECK(Parameter(mine).is_bias());  // copies share the marking
}

TEST_CASE("weights keeps the norms' scale (weight) and leaves out their bias") {
  nn::LayerNorm layer_norm(4);
  CHECK(weight_names(layer_norm) == std::vector<std::string>{"weight"});
  nn::BatchNorm1d batch_norm(4);
  CHECK(weight_names(batch_norm) == std::vector<std::string>{"weight"});
}
