// The fused recurrent operators (op::rnn, op::lstm, op::gru and their cells): values and
// gradients against a step-by-step composition of primitive operators with torch's equations,
// float64 gradient checks with respect to every operand, float32 against float64 (the float32
// path has its own exp and tanh), and the errors for bad shapes and dtypes. torch's own values
// are compared in tests/nn/test_recurrent_layers.cpp.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/module.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/framework/session.h>
#include <zkynet/ops/indexing.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/recurrent.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <cmath>
#include <functional>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// wave(shape, a, b)[i] = scale sin(a i + b) over the flat index i.
Tensor wave(const Shape& shape, double a, double b, double scale = 1.0, DType dtype = DType::Float64) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * std::sin(a * static_cast<double>(i) + b);
  return Tensor::from_vector(v, shape).to(dtype);
}

// Operands of a layer with G gates: x (T, B, I), h0, c0 (B, H), w_ih, w_hh, b_ih, b_hh.
struct Operands {
  Tensor x, h0, c0, w_ih, w_hh, b_ih, b_hh;
};

Operands operands(std::int64_t gates, std::int64_t T, std::int64_t B, std::int64_t I, std::int64_t H,
                  double scale = 1.0, DType dtype = DType::Float64) {
  return {wave({T, B, I}, 0.37, 0.1, scale, dtype),        wave({B, H}, 0.23, 0.5, 1.0, dtype),
          wave({B, H}, 0.41, 0.9, 1.0, dtype),             wave({gates * H, I}, 0.7, 0.0, 0.5 * scale, dtype),
          wave({gates * H, H}, 0.83, 0.3, 0.5 * scale, dtype), wave({gates * H}, 0.96, 0.6, 0.5, dtype),
          wave({gates * H}, 1.09, 0.9, 0.5, dtype)};
}

// A whole result as one node: output, then h_n and (lstm) c_n as one more step each.
NodeRef packed(const op::RecurrentResult& r) {
  const Shape& s = r.output.shape();
  std::vector<NodeRef> parts{r.output, op::reshape(r.h_n, {1, s[1], s[2]})};
  if (r.c_n.defined()) parts.push_back(op::reshape(r.c_n, {1, s[1], s[2]}));
  return op::concat(parts, 0);
}

// The same recurrences, one step at a time with primitive operators (torch's equations).
op::RecurrentResult naive(const std::string& cell, std::span<const NodeRef> in) {
  const bool lstm = cell == "lstm";
  const NodeRef& x = in[0];
  NodeRef h = in[1];
  NodeRef c = lstm ? in[2] : NodeRef();
  const std::size_t k = lstm ? 3 : 2;
  const NodeRef &w_ih = in[k], &w_hh = in[k + 1], &b_ih = in[k + 2], &b_hh = in[k + 3];
  const std::int64_t T = x.shape()[0], B = x.shape()[1], I = x.shape()[2], H = h.shape()[1];
  std::vector<NodeRef> outs;
  for (std::int64_t t = 0; t < T; ++t) {
    const NodeRef xt = op::reshape(op::slice(x, 0, t, t + 1), {B, I});
    const NodeRef gi = op::add(op::matmul(xt, op::transpose(w_ih)), b_ih);
    const NodeRef gh = op::add(op::matmul(h, op::transpose(w_hh)), b_hh);
    if (lstm) {
      const auto g = op::split(op::add(gi, gh), H, 1);
      c = op::add(op::mult(op::sigmoid(g[1]), c), op::mult(op::sigmoid(g[0]), op::tanh(g[2])));
      h = op::mult(op::sigmoid(g[3]), op::tanh(c));
    } else if (cell == "gru") {
      const auto a = op::split(gi, H, 1);
      const auto b = op::split(gh, H, 1);
      const NodeRef r = op::sigmoid(op::add(a[0], b[0]));
      const NodeRef z = op::sigmoid(op::add(a[1], b[1]));
      const NodeRef n = op::tanh(op::add(a[2], op::mult(r, b[2])));
      h = op::add(op::mult(op::sub(1.0, z), n), op::mult(z, h));
    } else {
      const NodeRef a = op::add(gi, gh);
      h = cell == "rnn_relu" ? op::relu(a) : op::tanh(a);
    }
    outs.push_back(h);
  }
  return {op::stack(outs, 0), h, c};
}

op::RecurrentResult fused(const std::string& cell, std::span<const NodeRef> in) {
  if (cell == "lstm") return op::lstm(in[0], in[1], in[2], in[3], in[4], in[5], in[6]);
  if (cell == "gru") return op::gru(in[0], in[1], in[2], in[3], in[4], in[5]);
  return op::rnn(in[0], in[1], in[2], in[3], in[4], in[5],
                 cell == "rnn_relu" ? op::RnnActivation::Relu : op::RnnActivation::Tanh);
}

std::vector<Tensor> inputs_for(const std::string& cell, const Operands& o) {
  if (cell == "lstm") return {o.x, o.h0, o.c0, o.w_ih, o.w_hh, o.b_ih, o.b_hh};
  return {o.x, o.h0, o.w_ih, o.w_hh, o.b_ih, o.b_hh};
}

std::int64_t gates_of(const std::string& cell) { return cell == "lstm" ? 4 : cell == "gru" ? 3 : 1; }

struct ValueAndGrads {
  Tensor value;
  std::vector<Tensor> grads;
};

// The value of f and the gradients of sum(seed * f) with respect to each input, by reverse mode.
ValueAndGrads run(const Body& f, const std::vector<Tensor>& inputs) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < inputs.size(); ++i) names.push_back("x" + std::to_string(i));
  Lambda module(names, f);
  const std::vector<NodeRef> refs(inputs.begin(), inputs.end());
  ModuleGraph g = module.invoke(refs);
  g.back(wave(g.value().shape(), 0.53, 0.2, 1.0, g.value().dtype()));
  ValueAndGrads out{g.value(), {}};
  for (const auto& name : names) out.grads.push_back(g.grad(module.input(name)));
  return out;
}

void require_matches_naive(const std::string& cell) {
  const auto in = inputs_for(cell, operands(gates_of(cell), 4, 3, 5, 4));
  const ValueAndGrads a = run([&](std::span<const NodeRef> x) { return packed(fused(cell, x)); }, in);
  const ValueAndGrads b = run([&](std::span<const NodeRef> x) { return packed(naive(cell, x)); }, in);
  REQUIRE(a.value.shape() == b.value.shape());
  CHECK(allclose(a.value, b.value, 1e-12, 1e-12));
  for (std::size_t i = 0; i < in.size(); ++i) {
    INFO("gradient of input " << i);
    CHECK(allclose(a.grads[i], b.grads[i], 1e-10, 1e-12));
  }
}

void require_gradcheck(const std::string& cell) {
  const auto in = inputs_for(cell, operands(gates_of(cell), 3, 2, 3, 2));
  const GradcheckResult r = gradcheck([&](std::span<const NodeRef> x) { return packed(fused(cell, x)); }, in);
  INFO(r.message);
  REQUIRE(r.ok);
}

// float32 against float64 on the same (float32-representable) operands, values and gradients.
void require_float32_close(const std::string& cell, double scale) {
  const auto in32 = inputs_for(cell, operands(gates_of(cell), 6, 5, 7, 16, scale, DType::Float32));
  std::vector<Tensor> in64;
  for (const auto& t : in32) in64.push_back(t.to(DType::Float64));
  const Body f = [&](std::span<const NodeRef> x) { return packed(fused(cell, x)); };
  const ValueAndGrads a = run(f, in32);
  const ValueAndGrads b = run(f, in64);
  CHECK(a.value.dtype() == DType::Float32);
  CHECK(allclose(a.value.to(DType::Float64), b.value, 1e-5, 1e-6));
  for (std::size_t i = 0; i < in32.size(); ++i) {
    INFO("gradient of input " << i);
    CHECK(allclose(a.grads[i].to(DType::Float64), b.grads[i], 1e-4, 1e-5));
  }
}

}  // namespace

TEST_CASE("op::lstm equals the step-by-step LSTM equations in value and gradient", "[recurrent]") {
  require_matches_naive("lstm");
}

TEST_CASE("op::gru equals the step-by-step GRU equations in value and gradient", "[recurrent]") {
  require_matches_naive("gru");
}

TEST_CASE("op::rnn with tanh equals the step-by-step equations in value and gradient", "[recurrent]") {
  require_matches_naive("rnn_tanh");
}

TEST_CASE("op::rnn with relu equals the step-by-step equations in value and gradient", "[recurrent]") {
  require_matches_naive("rnn_relu");
}

TEST_CASE("op::lstm passes gradcheck with respect to x, h0, c0, weights and biases", "[recurrent]") {
  require_gradcheck("lstm");
}

TEST_CASE("op::gru passes gradcheck with respect to x, h0, weights and biases", "[recurrent]") {
  require_gradcheck("gru");
}

TEST_CASE("op::rnn with tanh passes gradcheck", "[recurrent]") { require_gradcheck("rnn_tanh"); }

TEST_CASE("op::rnn with relu passes gradcheck", "[recurrent]") { require_gradcheck("rnn_relu"); }

TEST_CASE("op::lstm in float32 agrees with float64, saturated gates included", "[recurrent]") {
  require_float32_close("lstm", 1.0);
  require_float32_close("lstm", 40.0);  // pre-activations far beyond exp's range: no inf or NaN
}

TEST_CASE("op::gru in float32 agrees with float64, saturated gates included", "[recurrent]") {
  require_float32_close("gru", 1.0);
  require_float32_close("gru", 40.0);
}

TEST_CASE("op::rnn in float32 agrees with float64", "[recurrent]") {
  require_float32_close("rnn_tanh", 1.0);
  require_float32_close("rnn_tanh", 40.0);
  require_float32_close("rnn_relu", 1.0);
}

TEST_CASE("float32 tanh and sigmoid of the fused cell stay accurate near zero and far out", "[recurrent]") {
  // A one-step RNN with identity input weights and no recurrence is tanh(x) elementwise.
  std::vector<double> v{0.0, 1e-6, -3e-4, 0.01, -0.3, 0.6, 0.624, 0.626, -0.7, 2.0, -5.0, 9.0, 20.0, -50.0, 100.0, -1e4};
  const auto n = static_cast<std::int64_t>(v.size());
  const Tensor x = Tensor::from_vector(v, {1, n, 1}).to(DType::Float32);
  const Tensor w_ih = Tensor::ones({1, 1}, DType::Float32);
  const Tensor w_hh = Tensor::zeros({1, 1}, DType::Float32);
  const Tensor h = op::rnn(x, NodeRef(), w_ih, w_hh).output.value();
  for (std::int64_t i = 0; i < n; ++i) {
    const double want = std::tanh(static_cast<double>(static_cast<float>(v[static_cast<std::size_t>(i)])));
    const double got = h.at({0, i, 0});
    INFO("tanh(" << v[static_cast<std::size_t>(i)] << ") = " << got << ", want " << want);
    CHECK(std::abs(got - want) <= 4e-7 * std::abs(want) + 1e-30);
  }
}

TEST_CASE("gradients are the same bits with one thread and with two (overlapped accumulation)", "[recurrent]") {
  // With two threads the weight gradients of finished steps are summed on a helper thread
  // while the recurrence goes on; with one, inline; in the same order either way.
  const int threads = num_threads();
  for (const std::string cell : {"lstm", "gru", "rnn_tanh"}) {
    INFO(cell);
    const auto in = inputs_for(cell, operands(gates_of(cell), 60, 16, 8, 48, 0.3));
    const Body f = [&](std::span<const NodeRef> x) { return packed(fused(cell, x)); };
    set_num_threads(1);
    const ValueAndGrads one = run(f, in);
    set_num_threads(2);
    for (int repeat = 0; repeat < 3; ++repeat) {
      const ValueAndGrads two = run(f, in);
      CHECK(allclose(two.value, one.value, 0.0, 0.0));
      for (std::size_t i = 0; i < in.size(); ++i) {
        INFO("gradient of input " << i);
        CHECK(allclose(two.grads[i], one.grads[i], 0.0, 0.0));
      }
    }
  }
  set_num_threads(threads);
}

TEST_CASE("the recurrent cells are one-step sequences, as torch's RNNCell, LSTMCell and GRUCell", "[recurrent]") {
  const Operands o = operands(4, 1, 3, 5, 4);
  const Tensor x = o.x.reshape({3, 5});
  const auto [h1, c1] = op::lstm_cell(x, o.h0, o.c0, o.w_ih, o.w_hh, o.b_ih, o.b_hh);
  const op::RecurrentResult r = op::lstm(o.x, o.h0, o.c0, o.w_ih, o.w_hh, o.b_ih, o.b_hh);
  CHECK(h1.shape() == Shape{3, 4});
  CHECK(allclose(h1.value(), r.h_n.value(), 0.0, 0.0));
  CHECK(allclose(c1.value(), r.c_n.value(), 0.0, 0.0));

  const Operands g = operands(3, 1, 3, 5, 4);
  CHECK(allclose(op::gru_cell(g.x.reshape({3, 5}), g.h0, g.w_ih, g.w_hh, g.b_ih, g.b_hh).value(),
                 op::gru(g.x, g.h0, g.w_ih, g.w_hh, g.b_ih, g.b_hh).h_n.value(), 0.0, 0.0));
  const Operands e = operands(1, 1, 3, 5, 4);
  CHECK(allclose(op::rnn_cell(e.x.reshape({3, 5}), e.h0, e.w_ih, e.w_hh, e.b_ih, e.b_hh, op::RnnActivation::Relu).value(),
                 op::rnn(e.x, e.h0, e.w_ih, e.w_hh, e.b_ih, e.b_hh, op::RnnActivation::Relu).h_n.value(), 0.0, 0.0));
}

TEST_CASE("an lstm_cell step differentiates through h, c and the weights (gradcheck)", "[recurrent]") {
  const Operands o = operands(4, 1, 2, 3, 2);
  const auto r = gradcheck(
      [](std::span<const NodeRef> x) {
        const auto [h, c] = op::lstm_cell(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
        return op::concat({h, c}, 1);
      },
      {o.x.reshape({2, 3}), o.h0, o.c0, o.w_ih, o.w_hh, o.b_ih, o.b_hh});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("omitted biases and initial states are zeros", "[recurrent]") {
  const Operands o = operands(4, 3, 2, 3, 4);
  const Tensor zb = Tensor::zeros({16});
  const Tensor zs = Tensor::zeros({2, 4});
  const op::RecurrentResult a = op::lstm(o.x, NodeRef(), NodeRef(), o.w_ih, o.w_hh);
  const op::RecurrentResult b = op::lstm(o.x, zs, zs, o.w_ih, o.w_hh, zb, zb);
  CHECK(allclose(packed(a).value(), packed(b).value(), 0.0, 0.0));
}

TEST_CASE("the fused operators compute the same values without recording a graph", "[recurrent]") {
  const Operands o = operands(3, 5, 2, 3, 4);
  const auto in = inputs_for("gru", o);
  const Tensor recorded = run([&](std::span<const NodeRef> x) { return packed(fused("gru", x)); }, in).value;
  NoGradGuard no_grad;
  const std::vector<NodeRef> refs(in.begin(), in.end());
  CHECK(allclose(packed(fused("gru", refs)).value(), recorded, 0.0, 0.0));
}

TEST_CASE("a whole LSTM sequence is one node of the graph", "[recurrent]") {
  const auto in = inputs_for("lstm", operands(4, 20, 2, 3, 4));
  Lambda f({"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"},
           [](std::span<const NodeRef> x) { return op::lstm(x[0], x[1], x[2], x[3], x[4], x[5], x[6]).output; });
  const std::vector<NodeRef> refs(in.begin(), in.end());
  ModuleGraph g = f.invoke(refs);
  int lstm_nodes = 0, operator_nodes = 0;
  for (const auto& node : g.nodes()) {
    if (node->kind() != NodeKind::Operator) continue;
    ++operator_nodes;
    if (node->label() == "lstm") ++lstm_nodes;
  }
  CHECK(lstm_nodes == 1);
  CHECK(operator_nodes <= 6);  // lstm, then the slices and reshapes that expose output, h_n and c_n
}

TEST_CASE("recurrent operators name the operator and the shapes of operands that do not fit", "[recurrent]") {
  const Operands o = operands(4, 3, 2, 3, 4);
  CHECK_THROWS_AS(op::lstm(o.x.reshape({6, 3}), o.h0, o.c0, o.w_ih, o.w_hh), ShapeError);
  CHECK_THROWS_WITH(op::lstm(o.x.reshape({6, 3}), o.h0, o.c0, o.w_ih, o.w_hh),
                    Contains("lstm: x (6,3) must be (seq_len, batch, input_size)"));
  CHECK_THROWS_WITH(op::lstm(o.x, o.h0, o.c0, Tensor::zeros({16, 4}), o.w_hh),
                    Contains("lstm: w_ih (16,4) must be (16, 3) for x (3,2,3)"));
  CHECK_THROWS_WITH(op::gru(o.x, o.h0, Tensor::zeros({12, 3}), o.w_hh),
                    Contains("gru: w_hh (16,4) must be (3 hidden_size, hidden_size)"));
  CHECK_THROWS_WITH(op::lstm(o.x, Tensor::zeros({3, 4}), o.c0, o.w_ih, o.w_hh),
                    Contains("lstm: h0 (3,4) must be (batch, hidden_size) = (2,4)"));
  CHECK_THROWS_WITH(op::lstm(o.x, o.h0, o.c0, o.w_ih, o.w_hh, Tensor::zeros({4})),
                    Contains("lstm: b_ih (4,) must be (16,)"));
  CHECK_THROWS_AS(op::lstm(o.x.to(DType::Float32), o.h0, o.c0, o.w_ih, o.w_hh), TypeError);
  CHECK_THROWS_WITH(op::lstm(o.x.to(DType::Float32), o.h0, o.c0, o.w_ih, o.w_hh),
                    Contains("lstm: h0 is float64 but x is float32"));
  CHECK_THROWS_AS(op::rnn_cell(o.x, o.h0, Tensor::zeros({4, 3}), Tensor::zeros({4, 4})), ShapeError);
}
