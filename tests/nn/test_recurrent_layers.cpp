// nn::RNN, nn::LSTM and nn::GRU: torch's parameter names, shapes and initialization; values and
// gradients against torch 1.13 (reference/recurrent_reference.h, written by
// reference/make_recurrent_reference.py); float64 gradient checks with respect to the input,
// the initial state and every parameter; the state kept after a call, carried between stateful
// calls (truncated back-propagation through time) and reset; and the errors.
#include <zkynet/framework/dot.h>
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/session.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/recurrent.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/nn/summary.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

#include "nn/reference/recurrent_reference.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using namespace zkynet;
using namespace recurrent_reference;
using Catch::Matchers::Contains;

namespace {

// wave(shape, a, b, scale)[i] = scale sin(a i + b) over the flat index i: make_recurrent_reference.py's tensors.
Tensor wave(const Shape& shape, double a, double b, double scale = 1.0) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * std::sin(a * static_cast<double>(i) + b);
  return Tensor::from_vector(v, shape);
}

// The j-th parameter (named_parameters() order) becomes wave(shape, 0.7 + 0.13 j, 0.3 j, 0.5).
void set_wave_parameters(ModuleBase& layer) {
  int j = 0;
  for (auto& [name, p] : layer.named_parameters()) {
    p.set_value(wave(p.value().shape(), 0.7 + 0.13 * j, 0.3 * j, 0.5));
    ++j;
  }
}

Tensor ref(const std::vector<double>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

// Float64 results against torch's float64 ones: equal up to summation order.
bool close(const Tensor& a, const Tensor& b) { return allclose(a, b, 1e-10, 1e-12); }

nn::RecurrentOptions f64(nn::RecurrentOptions o) {
  o.dtype = DType::Float64;
  return o;
}

// The layer on x, from (h0, c0) when given; c0 is used by LSTMs only.
template <class Layer>
NodeRef call_layer(Layer& layer, const NodeRef& x, const NodeRef& h0, const NodeRef& c0) {
  if (!h0.defined()) return layer(x);
  if constexpr (std::is_same_v<Layer, nn::LSTM>) {
    return layer(x, h0, c0);
  } else {
    return layer(x, h0);
  }
}

// sum(seed * output) + sum(seed_h * h_n) [+ sum(seed_c * c_n)], the reference script's objective.
NodeRef objective(const NodeRef& out, const nn::RecurrentState& s) {
  NodeRef loss = op::add(op::sum(op::mult(out, wave(out.shape(), 0.53, 0.2))),
                         op::sum(op::mult(s.h, wave(s.h.shape(), 0.29, 0.4))));
  if (s.c.defined()) loss = op::add(loss, op::sum(op::mult(s.c, wave(s.c.shape(), 0.61, 0.7))));
  return loss;
}

struct Run {
  Tensor out, h_n, c_n, grad_x, grad_h0, grad_c0;
  std::vector<Tensor> grad_params;
};

// One call of `layer` (float64, wave parameters) and the gradients of objective().
template <class Layer>
Run run_reference(Layer& layer, const Shape& x_shape, bool explicit_state) {
  set_wave_parameters(layer);
  const bool lstm = std::is_same_v<Layer, nn::LSTM>;
  const std::int64_t batch = layer.batch_first() ? x_shape[0] : x_shape[1];
  const Shape state{layer.num_layers(), batch, layer.hidden_size()};
  Lambda f({"x", "h0", "c0"}, [&](std::span<const NodeRef> in) {
    const NodeRef out = explicit_state ? call_layer(layer, in[0], in[1], in[2]) : call_layer(layer, in[0], {}, {});
    return objective(out, layer.last_state());
  });
  Run r;
  layer.zero_grad();
  ModuleGraph g = f(wave(x_shape, 0.37, 0.1), wave(state, 0.23, 0.5), wave(state, 0.41, 0.9));
  g.back();
  r.h_n = layer.last_state().h.value();
  if (lstm) r.c_n = layer.last_state().c.value();
  r.grad_x = g.grad(f.input("x"));
  if (explicit_state) {
    r.grad_h0 = g.grad(f.input("h0"));
    if (lstm) r.grad_c0 = g.grad(f.input("c0"));
  }
  for (auto& [name, p] : layer.named_parameters()) r.grad_params.push_back(p.grad());
  // The output itself, from a call without gradients (same values).
  NoGradGuard no_grad;
  r.out = call_layer(layer, wave(x_shape, 0.37, 0.1), explicit_state ? NodeRef(wave(state, 0.23, 0.5)) : NodeRef(),
                     wave(state, 0.41, 0.9))
              .value();
  return r;
}

void check_params(const Run& r, const std::vector<std::vector<double>>& want, ModuleBase& layer) {
  const auto named = layer.named_parameters();
  REQUIRE(want.size() == named.size());
  for (std::size_t i = 0; i < named.size(); ++i) {
    INFO("gradient of " << named[i].first);
    CHECK(close(r.grad_params[i], ref(want[i], named[i].second.value().shape())));
  }
}

// Central differences of a scalar function of the layer's parameters against the gradients
// back() accumulates into them (gradcheck differentiates function inputs, not parameters).
void require_parameter_gradients(ModuleBase& layer, const std::function<ModuleGraph()>& loss) {
  layer.zero_grad();
  ModuleGraph g = loss();
  g.back();
  const double eps = 1e-6;
  for (auto& [name, p] : layer.named_parameters()) {
    const Tensor value = p.value().clone();
    const std::vector<double> analytic = p.grad().to_doubles();
    for (std::int64_t i = 0; i < value.numel(); ++i) {
      auto at = [&](double delta) {
        Tensor v = value.clone();
        v.data<double>()[i] += delta;
        p.set_value(v);
        NoGradGuard no_grad;
        return loss().value().item();
      };
      const double numeric = (at(eps) - at(-eps)) / (2 * eps);
      p.set_value(value);
      INFO(name << "[" << i << "]: analytic " << analytic[static_cast<std::size_t>(i)] << ", numeric " << numeric);
      REQUIRE(std::abs(analytic[static_cast<std::size_t>(i)] - numeric) <= 1e-7 + 1e-5 * std::abs(numeric));
    }
  }
}

// gradcheck with respect to x and the initial state, then the parameters' gradients.
template <class Layer>
void require_layer_gradcheck(Layer& layer, const Shape& x_shape) {
  set_wave_parameters(layer);
  const bool lstm = std::is_same_v<Layer, nn::LSTM>;
  const std::int64_t batch = layer.batch_first() ? x_shape[0] : x_shape[1];
  const Shape state{layer.num_layers(), batch, layer.hidden_size()};
  const Tensor x = wave(x_shape, 0.37, 0.1), h0 = wave(state, 0.23, 0.5), c0 = wave(state, 0.41, 0.9);
  auto with_state = [&](std::span<const NodeRef> in) {
    return objective(call_layer(layer, in[0], in[1], lstm ? in[2] : NodeRef()), layer.last_state());
  };
  const GradcheckResult r = gradcheck(
      [&](std::span<const NodeRef> in) {
        const NodeRef out = call_layer(layer, in[0], in[1], lstm ? in[2] : NodeRef());
        std::vector<NodeRef> parts{op::reshape(out, {-1}), op::reshape(layer.last_state().h, {-1})};
        if (lstm) parts.push_back(op::reshape(layer.last_state().c, {-1}));
        return op::concat(parts, 0);
      },
      lstm ? std::vector<Tensor>{x, h0, c0} : std::vector<Tensor>{x, h0});
  INFO(r.message);
  REQUIRE(r.ok);
  Lambda f({"x", "h0", "c0"}, with_state);
  require_parameter_gradients(layer, [&] { return f(x, h0, c0); });
}

}  // namespace

// ---- parameters -------------------------------------------------------------------------

TEST_CASE("LSTM registers torch's parameter names and shapes, layer by layer", "[recurrent]") {
  nn::LSTM lstm(10, 64, {.num_layers = 2});
  const auto named = lstm.named_parameters();
  REQUIRE(named.size() == 8);
  const std::vector<std::pair<std::string, Shape>> want{
      {"weight_ih_l0", {256, 10}}, {"weight_hh_l0", {256, 64}}, {"bias_ih_l0", {256}}, {"bias_hh_l0", {256}},
      {"weight_ih_l1", {256, 64}}, {"weight_hh_l1", {256, 64}}, {"bias_ih_l1", {256}}, {"bias_hh_l1", {256}}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    CHECK(named[i].first == want[i].first);
    CHECK(named[i].second.value().shape() == want[i].second);
    CHECK(named[i].second.value().dtype() == DType::Float32);
  }
  CHECK(lstm.input_size() == 10);
  CHECK(lstm.hidden_size() == 64);
  CHECK(lstm.num_layers() == 2);
}

TEST_CASE("GRU and RNN hold 3 and 1 gate blocks; bias = false registers the weights only", "[recurrent]") {
  nn::GRU gru(5, 8);
  CHECK(gru.param("weight_ih_l0").value().shape() == Shape{24, 5});
  CHECK(gru.param("bias_hh_l0").value().shape() == Shape{24});
  nn::RNN rnn(5, 8, {.num_layers = 3, .bias = false});
  const auto named = rnn.named_parameters();
  REQUIRE(named.size() == 6);
  CHECK(named[4].first == "weight_ih_l2");
  CHECK(named[4].second.value().shape() == Shape{8, 8});
  CHECK_FALSE(rnn.has_bias());
}

TEST_CASE("recurrent layers draw every parameter from U(-1/sqrt(hidden), 1/sqrt(hidden)), reproducibly",
          "[recurrent]") {
  nn::manual_seed(7);
  nn::LSTM a(6, 16, {.num_layers = 2});
  nn::manual_seed(7);
  nn::LSTM b(6, 16, {.num_layers = 2});
  Generator g1(3), g2(3);
  nn::GRU c(6, 16, {.generator = &g1});
  nn::GRU d(6, 16, {.generator = &g2});
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    CHECK(allclose(pa[i].second.value(), pb[i].second.value(), 0.0, 0.0));
    double largest = 0.0;
    for (double w : pa[i].second.value().to_doubles()) largest = std::max(largest, std::abs(w));
    CHECK(largest <= 0.25);  // 1 / sqrt(16)
    CHECK(largest > 0.2);    // and it fills the range
  }
  CHECK(allclose(c.param("weight_hh_l0").value(), d.param("weight_hh_l0").value(), 0.0, 0.0));
  CHECK_FALSE(allclose(a.param("weight_ih_l0").value(), a.param("weight_ih_l1").value().slice(1, 0, 6)));
}

// ---- against torch ----------------------------------------------------------------------

TEST_CASE("a 2-layer LSTM matches torch 1.13: output, h_n, c_n and all gradients", "[recurrent]") {
  nn::LSTM lstm(5, 4, f64({.num_layers = 2}));
  const Run r = run_reference(lstm, {4, 3, 5}, false);
  CHECK(close(r.out, ref(kLstm2Out, {4, 3, 4})));
  CHECK(close(r.h_n, ref(kLstm2Hn, {2, 3, 4})));
  CHECK(close(r.c_n, ref(kLstm2Cn, {2, 3, 4})));
  CHECK(close(r.grad_x, ref(kLstm2GradX, {4, 3, 5})));
  check_params(r, kLstm2GradParams, lstm);
}

TEST_CASE("a batch_first LSTM from an explicit (h0, c0) matches torch 1.13, gradients of h0 and c0 included",
          "[recurrent]") {
  nn::LSTM lstm(3, 4, f64({.batch_first = true}));
  const Run r = run_reference(lstm, {2, 5, 3}, true);
  CHECK(close(r.out, ref(kLstmBatchFirstStateOut, {2, 5, 4})));
  CHECK(close(r.h_n, ref(kLstmBatchFirstStateHn, {1, 2, 4})));
  CHECK(close(r.c_n, ref(kLstmBatchFirstStateCn, {1, 2, 4})));
  CHECK(close(r.grad_x, ref(kLstmBatchFirstStateGradX, {2, 5, 3})));
  CHECK(close(r.grad_h0, ref(kLstmBatchFirstStateGradH0, {1, 2, 4})));
  CHECK(close(r.grad_c0, ref(kLstmBatchFirstStateGradC0, {1, 2, 4})));
  check_params(r, kLstmBatchFirstStateGradParams, lstm);
}

TEST_CASE("a 2-layer batch_first GRU from an explicit h0 matches torch 1.13", "[recurrent]") {
  nn::GRU gru(5, 4, f64({.num_layers = 2, .batch_first = true}));
  const Run r = run_reference(gru, {3, 4, 5}, true);
  CHECK(close(r.out, ref(kGru2BatchFirstStateOut, {3, 4, 4})));
  CHECK(close(r.h_n, ref(kGru2BatchFirstStateHn, {2, 3, 4})));
  CHECK(close(r.grad_x, ref(kGru2BatchFirstStateGradX, {3, 4, 5})));
  CHECK(close(r.grad_h0, ref(kGru2BatchFirstStateGradH0, {2, 3, 4})));
  check_params(r, kGru2BatchFirstStateGradParams, gru);
}

TEST_CASE("a tanh RNN from an explicit h0 matches torch 1.13", "[recurrent]") {
  nn::RNN rnn(5, 4, f64({}));
  const Run r = run_reference(rnn, {4, 3, 5}, true);
  CHECK(close(r.out, ref(kRnnTanhStateOut, {4, 3, 4})));
  CHECK(close(r.h_n, ref(kRnnTanhStateHn, {1, 3, 4})));
  CHECK(close(r.grad_x, ref(kRnnTanhStateGradX, {4, 3, 5})));
  CHECK(close(r.grad_h0, ref(kRnnTanhStateGradH0, {1, 3, 4})));
  check_params(r, kRnnTanhStateGradParams, rnn);
}

TEST_CASE("a 2-layer relu RNN without bias matches torch 1.13", "[recurrent]") {
  nn::RNN rnn(5, 4, f64({.num_layers = 2, .bias = false, .nonlinearity = op::RnnActivation::Relu}));
  const Run r = run_reference(rnn, {4, 3, 5}, false);
  CHECK(close(r.out, ref(kRnnRelu2NoBiasOut, {4, 3, 4})));
  CHECK(close(r.h_n, ref(kRnnRelu2NoBiasHn, {2, 3, 4})));
  CHECK(close(r.grad_x, ref(kRnnRelu2NoBiasGradX, {4, 3, 5})));
  check_params(r, kRnnRelu2NoBiasGradParams, rnn);
}

// ---- gradient checks --------------------------------------------------------------------

TEST_CASE("a 2-layer LSTM passes gradcheck in its input, initial state and parameters", "[recurrent]") {
  nn::LSTM lstm(3, 2, f64({.num_layers = 2}));
  require_layer_gradcheck(lstm, {3, 2, 3});
}

TEST_CASE("a 2-layer batch_first GRU passes gradcheck in its input, initial state and parameters", "[recurrent]") {
  nn::GRU gru(3, 2, f64({.num_layers = 2, .batch_first = true}));
  require_layer_gradcheck(gru, {2, 3, 3});
}

TEST_CASE("a 2-layer RNN passes gradcheck in its input, initial state and parameters", "[recurrent]") {
  nn::RNN rnn(3, 2, f64({.num_layers = 2}));
  require_layer_gradcheck(rnn, {3, 2, 3});
}

// ---- state ------------------------------------------------------------------------------

TEST_CASE("last_state holds h_n and c_n as (num_layers, batch, hidden); the top h_n is the last output step",
          "[recurrent]") {
  nn::LSTM lstm(3, 4, f64({.num_layers = 2, .batch_first = true}));
  CHECK_FALSE(lstm.last_state().h.defined());
  const Tensor out = lstm(wave({2, 5, 3}, 0.37, 0.1)).value();  // (batch 2, seq 5, 4)
  const nn::RecurrentState& s = lstm.last_state();
  REQUIRE(s.h.shape() == Shape{2, 2, 4});
  REQUIRE(s.c.shape() == Shape{2, 2, 4});
  CHECK(allclose(s.h.value().slice(0, 1, 2).reshape({2, 4}), out.slice(1, 4, 5).reshape({2, 4}), 0.0, 0.0));
  nn::GRU gru(3, 4, f64({}));
  gru(wave({5, 2, 3}, 0.37, 0.1));
  CHECK(gru.last_state().h.shape() == Shape{1, 2, 4});
  CHECK_FALSE(gru.last_state().c.defined());
}

TEST_CASE("a stateful LSTM carries its state: two calls give the values of one call on the joined sequence",
          "[recurrent]") {
  nn::LSTM whole(3, 4, f64({.num_layers = 2}));
  nn::LSTM parts(3, 4, f64({.num_layers = 2, .stateful = true}));
  set_wave_parameters(whole);
  set_wave_parameters(parts);
  const Tensor x = wave({7, 2, 3}, 0.37, 0.1);
  const Tensor all = whole(x).value();
  const Tensor first = parts(x.slice(0, 0, 3)).value();
  const Tensor second = parts(x.slice(0, 3, 7)).value();
  CHECK(allclose(first, all.slice(0, 0, 3), 1e-14, 1e-14));
  CHECK(allclose(second, all.slice(0, 3, 7), 1e-14, 1e-14));
  CHECK(allclose(parts.last_state().h.value(), whole.last_state().h.value(), 1e-14, 1e-14));
  CHECK(allclose(parts.last_state().c.value(), whole.last_state().c.value(), 1e-14, 1e-14));
}

TEST_CASE("a stateful batch_first GRU carries its state across calls", "[recurrent]") {
  nn::GRU whole(3, 4, f64({.batch_first = true}));
  nn::GRU parts(3, 4, f64({.batch_first = true}));
  parts.set_stateful(true);
  set_wave_parameters(whole);
  set_wave_parameters(parts);
  const Tensor x = wave({2, 6, 3}, 0.37, 0.1);
  const Tensor all = whole(x).value();
  parts(x.slice(1, 0, 2));
  const Tensor second = parts(x.slice(1, 2, 6)).value();
  CHECK(allclose(second, all.slice(1, 2, 6), 1e-14, 1e-14));
}

TEST_CASE("the carried state is a constant: gradients stop at the call boundary", "[recurrent]") {
  nn::LSTM carried(3, 4, f64({.stateful = true}));
  nn::LSTM fresh(3, 4, f64({}));
  set_wave_parameters(carried);
  set_wave_parameters(fresh);
  const Tensor x = wave({6, 2, 3}, 0.37, 0.1);
  ModuleGraph g1 = carried(x.slice(0, 0, 3));
  const Tensor h = carried.last_state().h.value(), c = carried.last_state().c.value();
  carried.zero_grad();
  ModuleGraph g2 = carried(x.slice(0, 3, 6));
  g2.back(wave({3, 2, 4}, 0.53, 0.2));
  // The same as starting a fresh layer from the carried values as plain constants...
  fresh.zero_grad();
  ModuleGraph g3 = fresh(x.slice(0, 3, 6), h, c);
  g3.back(wave({3, 2, 4}, 0.53, 0.2));
  for (const char* name : {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}) {
    INFO(name);
    CHECK(allclose(carried.param(name).grad(), fresh.param(name).grad(), 1e-14, 1e-14));
  }
  // ...and the second call's graph holds none of the first call's nodes.
  CHECK(g2.call_id() != g1.call_id());
  for (const auto& node : g2.nodes()) CHECK(node->call_id() == g2.call_id());
}

TEST_CASE("a stateful layer given an explicit initial state computes what a non-stateful one does from it",
          "[recurrent]") {
  nn::LSTM stateful(3, 4, f64({.num_layers = 2, .stateful = true}));
  nn::LSTM plain(3, 4, f64({.num_layers = 2}));
  set_wave_parameters(stateful);
  set_wave_parameters(plain);
  const Tensor x = wave({5, 2, 3}, 0.37, 0.1);
  const Tensor h0 = wave({2, 2, 4}, 0.41, 0.2, 0.8), c0 = wave({2, 2, 4}, 0.29, 0.5, 0.8);
  stateful(wave({3, 2, 3}, 0.61, 0.4));  // a carried state, which the explicit one replaces
  CHECK(allclose(stateful(x, h0, c0).value(), plain(x, h0, c0).value(), 0.0, 0.0));
  CHECK(allclose(stateful.last_state().h.value(), plain.last_state().h.value(), 0.0, 0.0));
  CHECK(allclose(stateful.last_state().c.value(), plain.last_state().c.value(), 0.0, 0.0));
}

TEST_CASE("after an explicit initial state, a stateful layer's next call continues from that call's final state",
          "[recurrent]") {
  nn::GRU stateful(3, 4, f64({.stateful = true}));
  nn::GRU plain(3, 4, f64({}));
  set_wave_parameters(stateful);
  set_wave_parameters(plain);
  const Tensor x = wave({6, 2, 3}, 0.37, 0.1);
  const Tensor h0 = wave({1, 2, 4}, 0.41, 0.2, 0.8);
  const Tensor all = plain(x, h0).value();
  stateful(x.slice(0, 0, 2), h0);
  CHECK(allclose(stateful(x.slice(0, 2, 6)).value(), all.slice(0, 2, 6), 1e-14, 1e-14));
}

TEST_CASE("an explicit initial state may change a stateful layer's batch size; the new state is carried on",
          "[recurrent]") {
  nn::RNN rnn(3, 4, f64({.stateful = true}));
  rnn(wave({2, 3, 3}, 0.37, 0.1));  // carries a batch of 3
  CHECK(rnn(wave({2, 5, 3}, 0.37, 0.1), Tensor::zeros({1, 5, 4})).value().shape() == Shape{2, 5, 4});
  CHECK(rnn.carried_state().h.shape() == Shape{1, 5, 4});
  CHECK(rnn(wave({2, 5, 3}, 0.37, 0.1)).value().shape() == Shape{2, 5, 4});
}

TEST_CASE("a stateful layer differentiates through an explicit initial state from an enclosing call",
          "[recurrent]") {
  // Each evaluation starts from the given state, so the carry between them changes nothing.
  nn::LSTM lstm(3, 4, f64({.num_layers = 2, .stateful = true}));
  require_layer_gradcheck(lstm, {3, 2, 3});
}

TEST_CASE("set_carried_state makes a stateful layer's next call start from the given values", "[recurrent]") {
  nn::LSTM stateful(3, 4, f64({.stateful = true}));
  nn::LSTM plain(3, 4, f64({}));
  set_wave_parameters(stateful);
  set_wave_parameters(plain);
  const Tensor x = wave({4, 2, 3}, 0.37, 0.1);
  const Tensor h = wave({1, 2, 4}, 0.41, 0.2, 0.8), c = wave({1, 2, 4}, 0.29, 0.5);
  stateful.set_carried_state({h.to(DType::Float32).to(DType::Float64), c});
  CHECK_FALSE(stateful.last_state().h.defined());
  CHECK(allclose(stateful(x).value(), plain(x, h.to(DType::Float32).to(DType::Float64), c).value(), 0.0, 0.0));
}

TEST_CASE("set_carried_state refuses a state that does not fit the layer, naming both shapes", "[recurrent]") {
  nn::LSTM lstm(3, 4, f64({.num_layers = 2, .stateful = true}));
  CHECK_THROWS_WITH(lstm.set_carried_state({Tensor::zeros({2, 2, 5}), Tensor::zeros({2, 2, 5})}),
                    Contains("LSTM(3, 4): carried h (2,2,5) must be (num_layers, batch, hidden_size) = (2,batch,4)"));
  CHECK_THROWS_WITH(lstm.set_carried_state({Tensor::zeros({2, 2, 4}), Tensor::zeros({2, 3, 4})}),
                    Contains("LSTM(3, 4): carried c (2,3,4) must have h's shape (2,2,4)"));
  CHECK_THROWS_AS(lstm.set_carried_state({Tensor::zeros({2, 2, 4}), Tensor()}), UsageError);
  nn::GRU plain(3, 4);
  CHECK_THROWS_AS(plain.set_carried_state({Tensor::zeros({1, 2, 4}), Tensor()}), UsageError);
}

TEST_CASE("reset_state makes the next stateful call start from zeros", "[recurrent]") {
  nn::RNN rnn(3, 4, f64({.stateful = true}));
  const Tensor x = wave({4, 2, 3}, 0.37, 0.1);
  const Tensor first = rnn(x).value();
  const Tensor second = rnn(x).value();
  CHECK_FALSE(allclose(first, second));
  rnn.reset_state();
  CHECK_FALSE(rnn.last_state().h.defined());
  CHECK(allclose(rnn(x).value(), first, 0.0, 0.0));
}

TEST_CASE("without stateful, every call starts from zeros", "[recurrent]") {
  nn::GRU gru(3, 4, f64({}));
  const Tensor x = wave({4, 2, 3}, 0.37, 0.1);
  const Tensor first = gru(x).value();
  CHECK(allclose(gru(x).value(), first, 0.0, 0.0));
}

TEST_CASE("last_state is part of the call's graph: a head on h_n differentiates through it", "[recurrent]") {
  nn::LSTM lstm(3, 4, f64({.num_layers = 2}));
  nn::Linear head(4, 2, {.dtype = DType::Float64});
  set_wave_parameters(lstm);
  const auto r = gradcheck(
      [&](std::span<const NodeRef> in) {
        lstm(in[0]);
        const NodeRef top = op::reshape(op::slice(lstm.last_state().h, 0, 1, 2), {2, 4});
        return head(op::add(top, op::reshape(op::slice(lstm.last_state().c, 0, 0, 1), {2, 4})));
      },
      {wave({5, 2, 3}, 0.37, 0.1)});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("an LSTM runs inside a Sequential on its input sequence", "[recurrent]") {
  nn::Sequential model;
  model.add<nn::LSTM>(3, 8);
  model.add<nn::Linear>(8, 2);
  ModuleGraph y = model(Tensor::zeros({5, 4, 3}, DType::Float32));
  CHECK(y.value().shape() == Shape{5, 4, 2});
  CHECK(model.named_parameters()[0].first == "0.weight_ih_l0");
}

TEST_CASE("a model summary shows a recurrent layer's output sequence and parameter count", "[recurrent]") {
  nn::Sequential model;
  model.add<nn::LSTM>(10, 64, nn::RecurrentOptions{.num_layers = 2});
  model.add<nn::GRU>(64, 8, nn::RecurrentOptions{.batch_first = true});
  const nn::ModelSummary s = nn::summarize(model, Tensor::zeros({50, 32, 10}, DType::Float32));
  REQUIRE(s.rows.size() == 2);
  CHECK(s.rows[0].output_shapes == std::vector<Shape>{{50, 32, 64}});
  CHECK(s.rows[0].params == 4 * 64 * (10 + 64 + 2) + 4 * 64 * (64 + 64 + 2));  // torch: 52,736
  CHECK(s.rows[1].output_shapes == std::vector<Shape>{{50, 32, 8}});
}

TEST_CASE("a float32 LSTM runs, backpropagates and agrees with float64", "[recurrent]") {
  nn::LSTM a(3, 16, {.num_layers = 2});
  nn::LSTM b(3, 16, f64({.num_layers = 2}));
  set_wave_parameters(b);
  for (auto& [name, p] : a.named_parameters()) p.set_value(b.param(name).value().to(DType::Float32));
  const Tensor x = wave({6, 5, 3}, 0.37, 0.1);
  ModuleGraph ya = a(x.to(DType::Float32));
  ModuleGraph yb = b(x);
  CHECK(ya.value().dtype() == DType::Float32);
  CHECK(allclose(ya.value().to(DType::Float64), yb.value(), 1e-5, 1e-6));
  ya.back(Tensor::ones({6, 5, 16}, DType::Float32));
  yb.back(Tensor::ones({6, 5, 16}));
  CHECK(allclose(a.param("weight_hh_l0").grad().to(DType::Float64), b.param("weight_hh_l0").grad(), 1e-4, 1e-5));
}

// ---- errors -----------------------------------------------------------------------------

TEST_CASE("a recurrent layer fed the wrong input shape names the layer and the shapes", "[recurrent]") {
  nn::LSTM lstm(5, 4);
  CHECK_THROWS_AS(lstm(Tensor::zeros({4, 3, 6}, DType::Float32)), ShapeError);
  CHECK_THROWS_WITH(lstm(Tensor::zeros({4, 3, 6}, DType::Float32)),
                    Contains("LSTM(5, 4): input (4,3,6) must be (seq_len, batch, 5)"));
  nn::GRU gru(5, 4, {.batch_first = true});
  CHECK_THROWS_WITH(gru(Tensor::zeros({3, 5}, DType::Float32)),
                    Contains("GRU(5, 4): input (3,5) must be (batch, seq_len, 5)"));
  nn::Sequential model;
  model.add<nn::Linear>(3, 6);
  model.add<nn::RNN>(5, 4);
  CHECK_THROWS_WITH(model(Tensor::zeros({2, 2, 3}, DType::Float32)),
                    Catch::Matchers::StartsWith("Sequential.1 (RNN): RNN(5, 4): input (2,2,6)"));
}

TEST_CASE("an explicit initial state of the wrong shape is a ShapeError naming the layer", "[recurrent]") {
  nn::LSTM lstm(5, 4, {.num_layers = 2});
  const Tensor x = Tensor::zeros({4, 3, 5}, DType::Float32);
  const Tensor good = Tensor::zeros({2, 3, 4}, DType::Float32);
  const Tensor bad = Tensor::zeros({1, 3, 4}, DType::Float32);
  CHECK_THROWS_AS(lstm(x, bad, good), ShapeError);
  CHECK_THROWS_WITH(lstm(x, good, bad),
                    Contains("LSTM(5, 4): initial c0 (1,3,4) must be (num_layers, batch, hidden_size) = (2,3,4)"));
  CHECK(lstm(x, good, good).value().shape() == Shape{4, 3, 4});
  CHECK(lstm(x).value().shape() == Shape{4, 3, 4});  // the explicit state served one call only
}

TEST_CASE("a stateful layer's explicit initial state of the wrong shape names the layer's path and both shapes",
          "[recurrent]") {
  nn::Sequential model;
  model.add<nn::LSTM>(5, 4, nn::RecurrentOptions{.num_layers = 2, .stateful = true});
  const Tensor x = Tensor::zeros({4, 3, 5}, DType::Float32);
  const Tensor good = Tensor::zeros({2, 3, 4}, DType::Float32);
  const Tensor bad = Tensor::zeros({2, 2, 4}, DType::Float32);
  auto& lstm = dynamic_cast<nn::LSTM&>(*model.children()[0].second);
  CHECK_THROWS_WITH(lstm(x, bad, good),
                    Contains("LSTM(5, 4): initial h0 (2,2,4) must be (num_layers, batch, hidden_size) = (2,3,4)"));
  Lambda outer({"x"}, [&](std::span<const NodeRef> in) { return lstm(in[0], good, bad); });
  CHECK_THROWS_WITH(outer(x), Contains("0 (LSTM): LSTM(5, 4): initial c0 (2,2,4) must be"));
}

TEST_CASE("a carried state of another batch size is a ShapeError until reset_state()", "[recurrent]") {
  nn::LSTM lstm(5, 4, {.stateful = true});
  lstm(Tensor::zeros({4, 3, 5}, DType::Float32));
  CHECK_THROWS_WITH(lstm(Tensor::zeros({4, 2, 5}, DType::Float32)),
                    Contains("LSTM(5, 4): the carried state (1,3,4) does not fit input (4,2,5)"));
  lstm.reset_state();
  CHECK(lstm(Tensor::zeros({4, 2, 5}, DType::Float32)).value().shape() == Shape{4, 2, 4});
}

TEST_CASE("recurrent layers refuse sizes below 1 and a relu LSTM or GRU", "[recurrent]") {
  CHECK_THROWS_AS(nn::LSTM(5, 4, {.num_layers = 0}), ShapeError);
  CHECK_THROWS_AS(nn::GRU(0, 4), ShapeError);
  CHECK_THROWS_AS(nn::LSTM(5, 4, {.nonlinearity = op::RnnActivation::Relu}), UsageError);
}

// ---- pictures: the state drawn by name ------------------------------------------------------

namespace {

// The label text of every node of a DOT graph, with the DOT escapes as written ("h_n\\n(1,2,3)").
std::vector<std::string> dot_labels(const std::string& dot) {
  std::vector<std::string> out;
  const std::regex node(R"re(^\s*n\d+ \[label="((?:[^"\\]|\\.)*)")re");
  std::istringstream in(dot);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, node)) out.push_back(m[1]);
  }
  return out;
}

bool has_label(const std::vector<std::string>& labels, const std::string& label) {
  return std::find(labels.begin(), labels.end(), label) != labels.end();
}

bool any_label_starts(const std::vector<std::string>& labels, const std::string& prefix) {
  return std::any_of(labels.begin(), labels.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
}

}  // namespace

TEST_CASE("an LSTM's picture draws its state by name: h0 and c0 zeros, h_1..h_T, h_n and c_n", "[recurrent][dot]") {
  nn::LSTM lstm(3, 4, f64({}));
  const auto labels = dot_labels(to_dot(lstm(wave({5, 2, 3}, 0.37, 0.1))));
  CHECK(has_label(labels, "h0\\nzeros (2,4) float64"));
  CHECK(has_label(labels, "c0\\nzeros (2,4) float64"));
  CHECK(has_label(labels, "h_1..h_5\\n(5,2,4)"));
  CHECK(has_label(labels, "h_n\\n(1,2,4)"));
  CHECK(has_label(labels, "c_n\\n(1,2,4)"));
  CHECK(has_label(labels, "lstm\\n(6,2,4)"));
  CHECK_FALSE(any_label_starts(labels, "slice"));    // no anonymous slices of the fused result
  CHECK_FALSE(any_label_starts(labels, "reshape"));
}

TEST_CASE("a stateful LSTM's next call draws the carried state as h0 (carried) and c0 (carried)", "[recurrent][dot]") {
  nn::LSTM lstm(3, 5, f64({.stateful = true}));  // states of 10 values: summarized, not listed
  lstm(wave({5, 2, 3}, 0.37, 0.1));
  const auto labels = dot_labels(to_dot(lstm(wave({5, 2, 3}, 0.41, 0.2))));
  CHECK(has_label(labels, "h0 (carried)\\nconst (1,2,5) float64\\n(2,5)"));
  CHECK(has_label(labels, "c0 (carried)\\nconst (1,2,5) float64\\n(2,5)"));
  CHECK(has_label(labels, "h_n\\n(1,2,5)"));
  CHECK_FALSE(any_label_starts(labels, "reshape"));
}

TEST_CASE("a GRU's picture draws h0 and h_n by name, the sequence as the operator's output", "[recurrent][dot]") {
  nn::GRU gru(3, 4, f64({.num_layers = 2}));
  const auto labels = dot_labels(to_dot(gru(wave({5, 2, 3}, 0.37, 0.1))));
  CHECK(std::count(labels.begin(), labels.end(), "h0\\nzeros (2,4) float64") == 2);  // one per layer
  CHECK(std::count(labels.begin(), labels.end(), "h_n\\n(2,4)") == 2);
  CHECK(has_label(labels, "h_n\\n(2,2,4)"));  // both layers' stacked
  CHECK(std::count(labels.begin(), labels.end(), "gru\\n(5,2,4)") == 2);
  CHECK_FALSE(any_label_starts(labels, "slice"));
}

TEST_CASE("an LSTM cell's picture names its new state h' and c'", "[recurrent][dot]") {
  nn::LSTM weights(3, 4, f64({}));
  Lambda step({"x", "h", "c"}, [&](std::span<const NodeRef> in) {
    const auto [h, c] = op::lstm_cell(in[0], in[1], in[2], weights.param("weight_ih_l0"), weights.param("weight_hh_l0"));
    return op::add(h, c);
  });
  const auto labels = dot_labels(to_dot(step(wave({2, 3}, 0.3, 0.1), wave({2, 4}, 0.5, 0.2), wave({2, 4}, 0.7, 0.3))));
  CHECK(has_label(labels, "h'\\n(2,4)"));
  CHECK(has_label(labels, "c'\\n(2,4)"));
}
