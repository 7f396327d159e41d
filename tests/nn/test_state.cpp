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

#include <cmath>
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

// ---- carried states of stateful recurrent layers (FluxUtils' states / loadstates!) -------

namespace {

// series(shape, phase)[i] = sin(0.37 i + phase) over the flat index i.
Tensor series(const Shape& shape, double phase) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + phase);
  return Tensor::from_vector(v, shape);
}

class Encoder : public Module<Encoder> {
 public:
  explicit Encoder(Generator& gen) : Module({Variable("x")}), lstm(2, 5, options(gen)) { register_module("lstm", lstm); }
  NodeRef call(const NodeRef& x) { return lstm(x); }

  static nn::RecurrentOptions options(Generator& gen) {
    return {.num_layers = 2, .stateful = true, .dtype = DType::Float64, .generator = &gen};
  }
  nn::LSTM lstm;
};

// A forecaster over (seq, batch = 3, 2) series: a stateful 2-layer LSTM inside `encoder`, a
// stateful GRU, a GRU that is not stateful (carries nothing) and a linear head; float64.
class Forecaster : public Module<Forecaster> {
 public:
  explicit Forecaster(std::uint64_t seed = 1)
      : Module({Variable("x")}),
        gen_(seed),
        encoder(gen_),
        gru(5, 4, {.stateful = true, .dtype = DType::Float64, .generator = &gen_}),
        smoother(4, 4, {.dtype = DType::Float64, .generator = &gen_}),
        head(4, 1, {.dtype = DType::Float64, .generator = &gen_}) {
    register_module("encoder", encoder);
    register_module("gru", gru);
    register_module("smoother", smoother);
    register_module("head", head);
  }
  NodeRef call(const NodeRef& x) { return head(smoother(gru(encoder(x)))); }

  Generator gen_;
  Encoder encoder;
  nn::GRU gru;
  nn::GRU smoother;
  nn::Linear head;
};

bool identical(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.to_doubles() == b.to_doubles();
}

const Tensor& value_of(const nn::StateDict& dict, const std::string& key) {
  for (const auto& [k, v] : dict) {
    if (k == key) return v;
  }
  FAIL("no key " << key);
  static const Tensor none;
  return none;
}

}  // namespace

TEST_CASE("states lists each stateful recurrent layer by its path: h and c for an LSTM, h for a GRU") {
  Forecaster model;
  model(series({4, 3, 2}, 0.0));
  const nn::StateDict s = nn::states(model);
  CHECK(keys(s) == std::vector<std::string>{"encoder.lstm.h", "encoder.lstm.c", "gru.h"});
  CHECK(value_of(s, "encoder.lstm.h").shape() == Shape{2, 3, 5});
  CHECK(value_of(s, "encoder.lstm.c").shape() == Shape{2, 3, 5});
  CHECK(value_of(s, "gru.h").shape() == Shape{1, 3, 4});
  CHECK(identical(value_of(s, "encoder.lstm.h"), model.encoder.lstm.last_state().h.value()));
  CHECK(identical(value_of(s, "gru.h"), model.gru.last_state().h.value()));
}

TEST_CASE("states of a layer itself have the keys h and c") {
  nn::LSTM lstm(2, 3, {.stateful = true});
  CHECK(keys(nn::states(lstm)) == std::vector<std::string>{"h", "c"});
}

TEST_CASE("states lists a stateful layer that carries nothing yet with undefined tensors") {
  Forecaster model;
  const nn::StateDict s = nn::states(model);
  REQUIRE(keys(s) == std::vector<std::string>{"encoder.lstm.h", "encoder.lstm.c", "gru.h"});
  for (const auto& [key, value] : s) CHECK_FALSE(value.defined());
}

TEST_CASE("a model without stateful recurrent layers has no states") {
  Net net;
  CHECK(nn::states(net).empty());
  CHECK(nn::load_states(net, {}).missing_keys.empty());
}

TEST_CASE("states are copies: running on does not change a saved value") {
  Forecaster model;
  model(series({4, 3, 2}, 0.0));
  const nn::StateDict s = nn::states(model);
  const Tensor saved_h = value_of(s, "encoder.lstm.h").clone();
  model(series({4, 3, 2}, 1.0));
  CHECK(identical(value_of(s, "encoder.lstm.h"), saved_h));
  CHECK_FALSE(identical(value_of(nn::states(model), "encoder.lstm.h"), saved_h));
}

TEST_CASE("a fresh model given the saved states continues the series exactly as the saved model does") {
  const Tensor x = series({10, 3, 2}, 0.3);
  const Tensor first_half = x.slice(0, 0, 5), second_half = x.slice(0, 5, 10);
  Forecaster model(1);
  model(first_half);
  const nn::StateDict s = nn::states(model);
  Forecaster fresh(2);  // other weights, until the state dict is loaded
  nn::load_state_dict(fresh, nn::state_dict(model));
  nn::load_states(fresh, s);
  const Tensor expected = model(second_half).value();
  CHECK(identical(fresh(second_half).value(), expected));  // bitwise, float64
  CHECK(identical(value_of(nn::states(fresh), "encoder.lstm.c"), value_of(nn::states(model), "encoder.lstm.c")));
}

TEST_CASE("load_states after running on returns the model to the saved continuation") {
  Forecaster model;
  model(series({4, 3, 2}, 0.0));
  const nn::StateDict s = nn::states(model);
  const Tensor continuation = model(series({4, 3, 2}, 1.0)).value();
  model(series({4, 3, 2}, 2.0));
  nn::load_states(model, s);
  CHECK(identical(model(series({4, 3, 2}, 1.0)).value(), continuation));
}

TEST_CASE("loading an undefined state resets the layer: its next call starts from zeros") {
  Forecaster model;
  const nn::StateDict never_run = nn::states(model);
  const Tensor from_zeros = model(series({4, 3, 2}, 0.0)).value();
  model(series({4, 3, 2}, 1.0));
  nn::load_states(model, never_run);
  CHECK_FALSE(model.encoder.lstm.carried_state().h.defined());
  CHECK(identical(model(series({4, 3, 2}, 0.0)).value(), from_zeros));
}

TEST_CASE("load_states converts the values to each layer's dtype") {
  nn::GRU gru(2, 3, {.stateful = true});  // float32
  nn::load_states(gru, {{"h", Tensor::ones({1, 4, 3})}});
  CHECK(gru.carried_state().h.dtype() == DType::Float32);
  CHECK(gru(Tensor::zeros({2, 4, 2}, DType::Float32)).value().shape() == Shape{2, 4, 3});
}

TEST_CASE("load_states names missing and unexpected keys and changes nothing") {
  Forecaster model;
  model(series({4, 3, 2}, 0.0));
  const nn::StateDict before = nn::states(model);
  nn::StateDict s = without(before, "gru.h");
  s.emplace_back("head.h", Tensor::zeros({1, 3, 1}));
  const std::string message = error_message<IndexError>([&] { nn::load_states(model, s); });
  CHECK_THAT(message, Catch::Contains("load_states (Forecaster)") && Catch::Contains("missing key(s) 'gru.h'") &&
                          Catch::Contains("unexpected key(s) 'head.h'"));
  CHECK(identical(value_of(nn::states(model), "encoder.lstm.h"), value_of(before, "encoder.lstm.h")));
}

TEST_CASE("load_states without strict loads the matching layers and reports the others") {
  Forecaster model;
  model(series({4, 3, 2}, 0.0));
  const nn::StateDict saved = nn::states(model);
  model(series({4, 3, 2}, 1.0));
  nn::StateDict s = without(saved, "encoder.lstm.c");
  s.emplace_back("smoother.h", Tensor::zeros({1, 3, 4}));
  const nn::LoadStateResult r = nn::load_states(model, s, /*strict=*/false);
  CHECK(r.missing_keys == std::vector<std::string>{"encoder.lstm.c"});
  CHECK(r.unexpected_keys == std::vector<std::string>{"smoother.h"});
  CHECK(identical(model.gru.carried_state().h, value_of(saved, "gru.h")));
  CHECK_FALSE(identical(model.encoder.lstm.carried_state().h, value_of(saved, "encoder.lstm.h")));
}

TEST_CASE("load_states names a wrong shape with the layer, its keys and both shapes, and changes nothing") {
  Forecaster model;
  model(series({4, 3, 2}, 0.0));
  const nn::StateDict before = nn::states(model);
  nn::StateDict s = nn::states(model);
  s[2].second = Tensor::zeros({1, 3, 5});  // gru.h
  s[0].second = Tensor::zeros({2, 2, 5});  // encoder.lstm.h, checked first
  CHECK_THAT(error_message<ShapeError>([&] { nn::load_states(model, s); }),
             Catch::Contains("'encoder.lstm.h', 'encoder.lstm.c': LSTM(2, 5): carried c (2,3,5) must have h's shape "
                             "(2,2,5)"));
  s[0].second = before[0].second;
  CHECK_THAT(error_message<ShapeError>([&] { nn::load_states(model, s); }),
             Catch::Contains("'gru.h': GRU(5, 4): carried h (1,3,5) must be (num_layers, batch, hidden_size) = "
                             "(1,batch,4)"));
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(identical(nn::states(model)[i].second, before[i].second));
}

TEST_CASE("load_states refuses a key given twice and an LSTM's h without its c") {
  Forecaster model;
  model(series({4, 3, 2}, 0.0));
  nn::StateDict twice = nn::states(model);
  twice.push_back(twice[2]);
  CHECK_THAT(error_message<UsageError>([&] { nn::load_states(model, twice); }),
             Catch::Contains("key 'gru.h' appears twice"));
  nn::StateDict half = nn::states(model);
  half[1].second = Tensor();
  CHECK_THAT(error_message<UsageError>([&] { nn::load_states(model, half); }),
             Catch::Contains("LSTM(2, 5): an LSTM's carried state needs c as well as h"));
}
