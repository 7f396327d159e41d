// softmax, log_softmax, logsumexp and the losses (cross_entropy, nll_loss, mse_loss,
// binary_cross_entropy_with_logits): float64 gradient checks on random inputs for every
// axis and reduction, values and gradients against torch 1.13, stability on large logits,
// and the errors for bad targets and shapes.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;
using op::Reduction;

namespace {

// Float64 results against torch's float64 ones: equal to rounding.
bool close(const Tensor& a, const Tensor& b) { return allclose(a, b, 1e-12, 1e-15); }

Tensor labels(const std::vector<std::int64_t>& values) {
  return Tensor::from_vector(values, Shape{static_cast<std::int64_t>(values.size())});
}

Tensor label(std::int64_t value) { return Tensor::from_vector(std::vector<std::int64_t>{value}, Shape{}); }

// n random class indices in [0, c).
Tensor random_labels(std::int64_t n, std::int64_t c, Generator& gen) {
  std::vector<std::int64_t> out;
  std::uniform_int_distribution<std::int64_t> pick(0, c - 1);
  for (std::int64_t i = 0; i < n; ++i) out.push_back(pick(gen.engine()));
  return labels(out);
}

const Tensor kX{{1.0, 2.0, 3.0}, {-1.0, 0.5, 4.0}};
const Tensor kSeed{{0.3, -1.0, 2.0}, {1.5, 0.25, -0.5}};

// Logits (3, 4) with classes 1, 2, 0.
const Tensor kLogits{{1.0, 2.0, 0.5, -1.0}, {0.0, -2.0, 3.0, 1.0}, {2.5, 2.5, -0.5, 0.0}};
const Tensor kLabels = labels({1, 2, 0});
const Tensor kSampleSeed{2.0, -1.0, 0.5};  // seed for Reduction::None over the 3 samples

// mse_loss operands.
const Tensor kMseIn{{0.5, -1.0, 2.0}, {3.0, 0.0, -0.5}};
const Tensor kMseTarget{{1.0, 1.0, 1.0}, {2.0, -1.0, 0.5}};

// binary_cross_entropy_with_logits operands (a logit of 40 included).
const Tensor kBceIn{{-3.0, -0.5, 0.0}, {0.5, 2.0, 40.0}};
const Tensor kBceTarget{{0.0, 1.0, 0.5}, {1.0, 0.2, 0.0}};

const std::vector<Reduction> kReductions{Reduction::None, Reduction::Mean, Reduction::Sum};

std::string reduction_name(Reduction r) {
  return r == Reduction::None ? "none" : r == Reduction::Mean ? "mean" : "sum";
}

}  // namespace

// ---- softmax -----------------------------------------------------------------------------

TEST_CASE("softmax along the last axis matches torch") {
  // torch 1.13: F.softmax(X, dim=-1), X = [[1, 2, 3], [-1, 0.5, 4]] float64
  CHECK(close(op::softmax(kX).value(), Tensor{{0.09003057317038045, 0.2447284710547976, 0.6652409557748218},
                                              {0.00649794331566194, 0.0291217615374784, 0.9643802951468596}}));
}

TEST_CASE("softmax along axis 0 matches torch") {
  // torch 1.13: F.softmax(X, dim=0)
  CHECK(close(op::softmax(kX, 0).value(), Tensor{{0.8807970779778823, 0.8175744761936437, 0.2689414213699951},
                                                 {0.11920292202211755, 0.18242552380635632, 0.7310585786300049}}));
}

TEST_CASE("softmax along a middle axis sums to one over that axis") {
  Generator gen(1);
  const Tensor y = op::softmax(Tensor::randn({2, 3, 4}, gen), 1).value();
  CHECK(allclose(op::sum(y, {1}).value(), Tensor::ones({2, 4}), 1e-14));
  CHECK(allclose(op::sum(y, {2}).value(), Tensor::ones({2, 3}), 1e-14) == false);
}

TEST_CASE("softmax gradient matches torch along both axes") {
  // torch 1.13: y = F.softmax(X, dim); y.backward(G), G = [[0.3, -1, 2], [1.5, 0.25, -0.5]]
  const Body last = [](std::span<const NodeRef> x) { return op::softmax(x[0]); };
  CHECK(close(vjp(last, {kX}, kSeed)[0], Tensor{{-0.07317348384996558, -0.5170531638456397, 0.5902266476956054},
                                                {0.0127695164298647, 0.020826800295378967, -0.03359631672524365}}));
  const Body first = [](std::span<const NodeRef> x) { return op::softmax(x[0], 0); };
  CHECK(close(vjp(first, {kX}, kSeed)[0], Tensor{{-0.12599230248420776, -0.18643306508791607, 0.49152983310370457},
                                                 {0.1259923024842078, 0.18643306508791602, -0.4915298331037046}}));
}

TEST_CASE("softmax passes gradcheck along every axis of a 3-d tensor") {
  Generator gen(2);
  for (std::int64_t axis : {-1, 0, 1, 2, -3}) {
    INFO("axis " << axis);
    const Body f = [axis](std::span<const NodeRef> x) { return op::softmax(x[0], axis); };
    require_gradcheck(f, {Tensor::randn({2, 3, 4}, gen)});
  }
}

TEST_CASE("softmax of logits in the thousands is finite and exact") {
  // torch 1.13: F.softmax([-1000, 0, 1000]) = [0, 0, 1]; in float32, F.softmax([1000, 1001, 1002])
  CHECK(close(op::softmax(Tensor{-1000.0, 0.0, 1000.0}).value(), Tensor{0.0, 0.0, 1.0}));
  const Tensor y = op::softmax(Tensor{1000.0, 1001.0, 1002.0}.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{0.09003057330846786, 0.2447284758090973, 0.6652409434318542}, 1e-6));
}

TEST_CASE("softmax of a 0-d tensor is 1") {
  // torch 1.13: F.softmax(torch.tensor(3.0), 0) = 1
  const Tensor y = op::softmax(Tensor(3.0)).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == 1.0);
}

TEST_CASE("softmax rejects an axis out of range, naming the operator") {
  CHECK_THAT(error_message<IndexError>([] { op::softmax(kX, 2); }), Contains("softmax") && Contains("axis 2"));
  CHECK_THROWS_AS(op::softmax(kX, -3), IndexError);
}

TEST_CASE("softmax rejects an int64 tensor") {
  CHECK_THROWS_AS(op::softmax(Tensor::arange(3, DType::Int64)), TypeError);
}

// ---- log_softmax -------------------------------------------------------------------------

TEST_CASE("log_softmax along the last axis matches torch") {
  // torch 1.13: F.log_softmax(X, dim=-1)
  CHECK(close(op::log_softmax(kX).value(), Tensor{{-2.4076059644443806, -1.4076059644443804, -0.4076059644443804},
                                                  {-5.036269565124779, -3.5362695651247793, -0.03626956512477912}}));
}

TEST_CASE("log_softmax along axis 0 matches torch") {
  // torch 1.13: F.log_softmax(X, dim=0)
  CHECK(close(op::log_softmax(kX, 0).value(), Tensor{{-0.1269280110429726, -0.20141327798275246, -1.3132616875182228},
                                                     {-2.1269280110429727, -1.7014132779827524, -0.31326168751822286}}));
}

TEST_CASE("log_softmax gradient matches torch along both axes") {
  // torch 1.13: y = F.log_softmax(X, dim); y.backward(G)
  const Body last = [](std::span<const NodeRef> x) { return op::log_softmax(x[0]); };
  CHECK(close(vjp(last, {kX}, kSeed)[0], Tensor{{0.18296025487850542, -1.3181470123712369, 1.1351867574927317},
                                                {1.4918775708554226, 0.213597798078152, -1.7054753689335747}}));
  const Body first = [](std::span<const NodeRef> x) { return op::log_softmax(x[0], 0); };
  CHECK(close(vjp(first, {kX}, kSeed)[0], Tensor{{-1.2854347403601882, -0.38681914285476726, 1.5965878679450074},
                                                 {1.2854347403601885, 0.38681914285476726, -1.5965878679450074}}));
}

TEST_CASE("log_softmax passes gradcheck along every axis of a 3-d tensor") {
  Generator gen(3);
  for (std::int64_t axis : {-1, 0, 1, 2, -2}) {
    INFO("axis " << axis);
    const Body f = [axis](std::span<const NodeRef> x) { return op::log_softmax(x[0], axis); };
    require_gradcheck(f, {Tensor::randn({2, 3, 4}, gen)});
  }
}

TEST_CASE("log_softmax of logits around 1000 is finite and matches torch") {
  // torch 1.13: F.log_softmax([1000, 1001, 1002]) equals F.log_softmax([1, 2, 3])
  CHECK(close(op::log_softmax(Tensor{1000.0, 1001.0, 1002.0}).value(),
              Tensor{-2.4076059644443806, -1.4076059644443804, -0.4076059644443804}));
  const Tensor f32 = op::log_softmax(Tensor{{1000.0, -1000.0}, {-1000.0, 1000.0}}.to(DType::Float32)).value();
  CHECK(allclose(f32, Tensor{{0.0, -2000.0}, {-2000.0, 0.0}}));
}

TEST_CASE("log_softmax of a row of -inf and finite values keeps -inf where the input is -inf") {
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor y = op::log_softmax(Tensor{-inf, 0.0, 0.0}).value();
  CHECK(y.at({0}) == -inf);
  CHECK(y.at({1}) == Approx(-std::log(2.0)).epsilon(1e-15));
}

TEST_CASE("softmax and log_softmax of a lane holding +inf, or only -inf, are NaN throughout, as torch") {
  // torch 1.13: F.softmax([[0.5, inf, -1.5], [1, 2, 3]], 1) = [[nan, nan, nan], [0.090.., 0.244.., 0.665..]],
  // likewise log_softmax, and backward(seed [[1, 2, 3], [1, 2, 3]]) gives NaN in row 0 only;
  // F.softmax([-inf, -inf]) = [nan, nan]. (Row 0 used to give softmax [0, nan, 0], log_softmax
  // [-inf, nan, -inf] with finite gradients 0.5 and 1.5.)
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x{{0.5, inf, -1.5}, {1.0, 2.0, 3.0}};
  const Tensor seed{{1.0, 2.0, 3.0}, {1.0, 2.0, 3.0}};
  CHECK(close(op::softmax(x, 1).value(),
              Tensor{{nan, nan, nan}, {0.09003057317038045, 0.2447284710547976, 0.6652409557748218}}));
  CHECK(close(vjp([](std::span<const NodeRef> in) { return op::softmax(in[0], 1); }, {x}, seed)[0],
              Tensor{{nan, nan, nan}, {-0.1418170936098121, -0.14077035746962996, 0.28258745107944266}}));
  CHECK(close(op::log_softmax(x, 1).value(),
              Tensor{{nan, nan, nan}, {-2.4076059644443806, -1.4076059644443804, -0.4076059644443804}}));
  CHECK(close(vjp([](std::span<const NodeRef> in) { return op::log_softmax(in[0], 1); }, {x}, seed)[0],
              Tensor{{nan, nan, nan}, {0.4598165609777174, 0.5316291736712142, -0.9914457346489307}}));
  CHECK(close(op::softmax(Tensor{-inf, -inf}).value(), Tensor{nan, nan}));
  CHECK(close(op::log_softmax(Tensor{-inf, -inf}.to(DType::Float32)).value(), Tensor{nan, nan}));
}

TEST_CASE("log_softmax equals the log of softmax") {
  Generator gen(4);
  const Tensor x = Tensor::randn({3, 5}, gen);
  CHECK(allclose(op::log_softmax(x).value(), op::log(op::softmax(x)).value(), 1e-13));
}

TEST_CASE("log_softmax rejects an axis out of range, naming the operator") {
  CHECK_THAT(error_message<IndexError>([] { op::log_softmax(kX, -3); }), Contains("log_softmax") && Contains("axis -3"));
}

// ---- logsumexp ---------------------------------------------------------------------------

TEST_CASE("logsumexp over one axis matches torch") {
  // torch 1.13: torch.logsumexp(X, 1)
  const Tensor y = op::logsumexp(kX, {1}).value();
  CHECK(y.shape() == Shape{2});
  CHECK(close(y, Tensor{3.4076059644443806, 4.036269565124779}));
}

TEST_CASE("logsumexp with keepdim keeps the reduced axis as 1") {
  // torch 1.13: torch.logsumexp(X, 0, keepdim=True)
  const Tensor y = op::logsumexp(kX, {0}, true).value();
  CHECK(y.shape() == Shape{1, 3});
  CHECK(close(y, Tensor{{1.1269280110429727, 2.2014132779827524, 4.313261687518223}}));
}

TEST_CASE("logsumexp over all axes (empty axes) gives a 0-d result") {
  // torch 1.13: torch.logsumexp(X, (0, 1))
  const Tensor y = op::logsumexp(kX, {}).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == Approx(4.463694470291293).epsilon(1e-14));
}

TEST_CASE("logsumexp over two axes of a 3-d tensor, in any order and sign") {
  // torch 1.13: torch.logsumexp(torch.arange(24.).reshape(2, 3, 4) / 4, (0, 2))
  const Tensor x = op::div(Tensor::arange(24).reshape({2, 3, 4}), 4.0).value();
  const Tensor expected{4.848603755632692, 5.848603755632692, 6.848603755632692};
  CHECK(close(op::logsumexp(x, {0, 2}).value(), expected));
  CHECK(close(op::logsumexp(x, {-1, -3}).value(), expected));
  CHECK(close(op::logsumexp(x, {2, 0}, true).value(), expected.reshape({1, 3, 1})));
}

TEST_CASE("logsumexp gradient matches torch") {
  // torch 1.13: torch.logsumexp(X, 1).backward([0.5, -2]);
  //             torch.logsumexp(X, 0, keepdim=True).backward([[1, -1, 0.5]]);
  //             torch.logsumexp(X, (0, 1)).backward()
  const Body rows = [](std::span<const NodeRef> x) { return op::logsumexp(x[0], {1}); };
  CHECK(close(vjp(rows, {kX}, Tensor{0.5, -2.0})[0],
              Tensor{{0.04501528658519022, 0.12236423552739879, 0.33262047788741084},
                     {-0.012995886631323884, -0.058243523074956824, -1.92876059029372}}));
  const Body cols = [](std::span<const NodeRef> x) { return op::logsumexp(x[0], {0}, true); };
  CHECK(close(vjp(cols, {kX}, Tensor{{1.0, -1.0, 0.5}})[0],
              Tensor{{0.8807970779778823, -0.8175744761936437, 0.13447071068499758},
                     {0.11920292202211753, -0.18242552380635632, 0.3655292893150025}}));
  const Body all = [](std::span<const NodeRef> x) { return op::logsumexp(x[0], {}); };
  CHECK(close(vjp(all, {kX}, Tensor(1.0))[0], Tensor{{0.03131385992657585, 0.08511989641732304, 0.23137986767152538},
                                                     {0.004237870102394759, 0.018992816119415046, 0.628955689762766}}));
}

TEST_CASE("logsumexp passes gradcheck over all, given, negative and kept axes") {
  Generator gen(5);
  const std::vector<std::pair<Shape, bool>> configs = {
      {{}, false}, {{}, true}, {{0}, false}, {{1}, true}, {{-1}, false}, {{0, 2}, false}, {{-1, -3}, true}, {{2, 0, 1}, false}};
  for (const auto& [axes, keepdim] : configs) {
    INFO("axes " << shape_str(axes) << " keepdim " << keepdim);
    const Body f = [axes = axes, keepdim = keepdim](std::span<const NodeRef> x) {
      return op::logsumexp(x[0], axes, keepdim);
    };
    require_gradcheck(f, {Tensor::randn({2, 3, 4}, gen)});
  }
}

TEST_CASE("logsumexp of large values is finite and exact") {
  // torch 1.13: torch.logsumexp([1000, 1000], 0) = 1000.6931471805599
  CHECK(op::logsumexp(Tensor{1000.0, 1000.0}, {0}).value().item() == Approx(1000.6931471805599).epsilon(1e-15));
  CHECK(op::logsumexp(Tensor{-1000.0, -1000.0}, {0}).value().item() == Approx(-999.3068528194401).epsilon(1e-15));
}

TEST_CASE("logsumexp of only -inf, or of nothing, is -inf as in torch") {
  // torch 1.13: torch.logsumexp([-inf, -inf], 0) = -inf; torch.logsumexp(torch.zeros(2, 0), 1) = [-inf, -inf]
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(op::logsumexp(Tensor{-inf, -inf}, {0}).value().item() == -inf);
  const Tensor empty = op::logsumexp(Tensor::zeros({2, 0}), {1}).value();
  CHECK(empty.shape() == Shape{2});
  CHECK(empty.at({0}) == -inf);
  CHECK(empty.at({1}) == -inf);
}

TEST_CASE("logsumexp rejects an axis out of range or repeated, naming the operator") {
  CHECK_THAT(error_message<IndexError>([] { op::logsumexp(kX, {2}); }), Contains("logsumexp") && Contains("axis 2"));
  CHECK_THROWS_AS(op::logsumexp(kX, {0, -2}), IndexError);
}

// ---- cross_entropy -----------------------------------------------------------------------

TEST_CASE("cross_entropy with mean reduction matches torch, value and gradient") {
  // torch 1.13: F.cross_entropy(L, [1, 2, 0]).backward(), L = kLogits float64
  const Body f = [](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1]); };
  CHECK(op::cross_entropy(kLogits, kLabels).value().item() == Approx(0.4758992530347687).epsilon(1e-14));
  CHECK(close(vjp(f, {kLogits, kLabels}, Tensor(1.0))[0],
              Tensor{{0.07473593934940037, -0.13017998746704096, 0.045329638597835176, 0.010114409519805408},
                     {0.013924190171783486, 0.001884434220738777, -0.053658497512489335, 0.037849873119967084},
                     {-0.17697623363002302, 0.1563570997033103, 0.007784561612729628, 0.012834572313983031}}));
}

TEST_CASE("cross_entropy with sum reduction matches torch, value and gradient") {
  // torch 1.13: F.cross_entropy(L, [1, 2, 0], reduction="sum").backward()
  const Body f = [](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1], Reduction::Sum); };
  CHECK(op::cross_entropy(kLogits, kLabels, Reduction::Sum).value().item() ==
        Approx(1.427697759104306).epsilon(1e-14));
  CHECK(close(vjp(f, {kLogits, kLabels}, Tensor(1.0))[0],
              Tensor{{0.22420781804820114, -0.3905399624011229, 0.13598891579350553, 0.030343228559416225},
                     {0.04177257051535046, 0.005653302662216331, -0.160975492537468, 0.11354961935990125},
                     {-0.530928700890069, 0.46907129910993095, 0.023353684838188886, 0.038503716941949095}}));
}

TEST_CASE("cross_entropy without reduction gives per-sample losses and seeded gradients like torch") {
  // torch 1.13: F.cross_entropy(L, [1, 2, 0], reduction="none").backward([2, -1, 0.5])
  const Body f = [](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1], Reduction::None); };
  const Tensor y = op::cross_entropy(kLogits, kLabels, Reduction::None).value();
  CHECK(y.shape() == Shape{3});
  CHECK(close(y, Tensor{0.49518189808585605, 0.1755153626167145, 0.7570004984017354}));
  CHECK(close(vjp(f, {kLogits, kLabels}, kSampleSeed)[0],
              Tensor{{0.4484156360964023, -0.7810799248022458, 0.27197783158701105, 0.06068645711883245},
                     {-0.04177257051535046, -0.005653302662216331, 0.160975492537468, -0.11354961935990125},
                     {-0.2654643504450345, 0.23453564955496548, 0.011676842419094443, 0.019251858470974548}}));
}

TEST_CASE("cross_entropy accepts unbatched logits (C,) with a 0-d target") {
  // torch 1.13: F.cross_entropy([0.5, -1, 2], torch.tensor(2)).backward();
  //             F.cross_entropy([0.5, -1, 2], torch.tensor(1), reduction="none")
  const Tensor logits{0.5, -1.0, 2.0};
  const Body f = [](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1]); };
  const Tensor y = op::cross_entropy(logits, label(2)).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == Approx(0.24131129665715703).epsilon(1e-14));
  CHECK(close(vjp(f, {logits, label(2)}, Tensor(1.0))[0],
              Tensor{0.1752903921400367, 0.03911257327068745, -0.21440296541072412}));
  const Tensor none = op::cross_entropy(logits, label(1), Reduction::None).value();
  CHECK(none.shape() == Shape{});
  CHECK(none.item() == Approx(3.241311296657157).epsilon(1e-14));
}

TEST_CASE("cross_entropy passes gradcheck for every reduction") {
  Generator gen(6);
  for (Reduction r : kReductions) {
    INFO("reduction " << reduction_name(r));
    const Body f = [r](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1], r); };
    require_gradcheck(f, {Tensor::randn({4, 5}, gen), random_labels(4, 5, gen)});
  }
}

TEST_CASE("cross_entropy passes gradcheck on unbatched logits") {
  Generator gen(7);
  for (Reduction r : kReductions) {
    INFO("reduction " << reduction_name(r));
    const Body f = [r](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1], r); };
    require_gradcheck(f, {Tensor::randn({5}, gen), label(3)});
  }
}

TEST_CASE("cross_entropy equals nll_loss of log_softmax, in value and gradient") {
  Generator gen(8);
  const Tensor logits = Tensor::randn({6, 4}, gen);
  const Tensor target = random_labels(6, 4, gen);
  const Body fused = [](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1]); };
  const Body composed = [](std::span<const NodeRef> x) { return op::nll_loss(op::log_softmax(x[0], 1), x[1]); };
  CHECK(allclose(op::cross_entropy(logits, target).value(), op::nll_loss(op::log_softmax(logits), target).value(),
                 1e-14));
  CHECK(allclose(vjp(fused, {logits, target}, Tensor(1.0))[0], vjp(composed, {logits, target}, Tensor(1.0))[0],
                 1e-13, 1e-16));
}

TEST_CASE("cross_entropy of logits around 1000 is finite and matches torch") {
  // torch 1.13: F.cross_entropy([[1000, 1002, 999], [-1000, -998, -1001]], [1, 0]).backward()
  const Tensor logits{{1000.0, 1002.0, 999.0}, {-1000.0, -998.0, -1001.0}};
  const Tensor target = labels({1, 0});
  const Body f = [](std::span<const NodeRef> x) { return op::cross_entropy(x[0], x[1]); };
  CHECK(op::cross_entropy(logits, target).value().item() == Approx(1.1698460195562856).epsilon(1e-14));
  CHECK(allclose(vjp(f, {logits, target}, Tensor(1.0))[0],
                 Tensor{{0.05709759969229724, -0.07810263275933027, 0.021005033067033024},
                        {-0.4429024003077028, 0.42189736724066973, 0.021005033067033024}},
                 1e-12, 1e-15));
  const Tensor f32 = op::cross_entropy(logits.to(DType::Float32), target).value();
  CHECK(f32.dtype() == DType::Float32);
  CHECK(f32.item() == Approx(1.1698460195562856).epsilon(1e-6));
}

TEST_CASE("cross_entropy of a row holding +inf is NaN with a NaN gradient row, as torch") {
  // torch 1.13: F.cross_entropy([[0.5, inf, -1.5], [1, 2, 3]], [0, 1], reduction="none")
  //   = [nan, 1.4076..], backward(ones) -> [[nan, nan, nan], [0.0900.., -0.7552.., 0.6652..]]
  // (row 0 used to give the loss inf and the gradient [0, nan, 0] minus the one-hot target)
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x{{0.5, inf, -1.5}, {1.0, 2.0, 3.0}};
  const Tensor target = labels({0, 1});
  CHECK(close(op::cross_entropy(x, target, Reduction::None).value(), Tensor{nan, 1.4076059644443804}));
  const Body f = [&](std::span<const NodeRef> in) { return op::cross_entropy(in[0], target, Reduction::None); };
  CHECK(close(vjp(f, {x}, Tensor{1.0, 1.0})[0],
              Tensor{{nan, nan, nan}, {0.09003057317038043, -0.7552715289452023, 0.6652409557748218}}));
}

TEST_CASE("cross_entropy leaves the integer target's gradient undefined") {
  NodeRef target_node;
  Lambda module({"logits", "target"}, [&](std::span<const NodeRef> x) {
    target_node = x[1];
    return op::cross_entropy(x[0], x[1]);
  });
  ModuleGraph g = module(kLogits, kLabels);
  REQUIRE(target_node.in_graph());
  REQUIRE(target_node.node()->requires_grad());  // the framework asks; the operator declines
  const std::vector<Tensor> grads = backward_pass(*g.root().tape(), *g.root().node(), Tensor(1.0));
  CHECK_FALSE(grads[target_node.node()->index()].defined());
  g.back();
  CHECK(g.grad(module.input("logits")).shape() == kLogits.shape());
}

TEST_CASE("cross_entropy rejects a floating-point target") {
  const std::string msg = error_message<TypeError>([] { op::cross_entropy(kLogits, Tensor{1.0, 2.0, 0.0}); });
  CHECK_THAT(msg, Contains("cross_entropy") && Contains("int64"));
}

TEST_CASE("cross_entropy rejects integer logits") {
  CHECK_THROWS_AS(op::cross_entropy(Tensor::arange(6, DType::Int64).reshape({2, 3}), labels({0, 1})), TypeError);
}

TEST_CASE("cross_entropy rejects a class index out of range, naming the index and C") {
  const std::string msg = error_message<IndexError>([] { op::cross_entropy(kLogits, labels({1, 4, 0})); });
  CHECK_THAT(msg, Contains("cross_entropy") && Contains("4") && Contains("C = 4"));
  CHECK_THAT(error_message<IndexError>([] { op::cross_entropy(kLogits, labels({-1, 0, 0})); }),
             Contains("class index -1") && Contains("C = 4"));
  CHECK_THROWS_AS(op::cross_entropy(Tensor{0.5, 1.0}, label(2)), IndexError);
}

TEST_CASE("cross_entropy rejects a target whose length differs from the batch, naming both shapes") {
  const std::string msg = error_message<ShapeError>([] { op::cross_entropy(kLogits, labels({1, 2})); });
  CHECK_THAT(msg, Contains("cross_entropy") && Contains("(3,4)") && Contains("(2,)"));
  CHECK_THROWS_AS(op::cross_entropy(Tensor{0.5, 1.0}, labels({0})), ShapeError);
}

TEST_CASE("cross_entropy rejects logits that are neither (N, C) nor (C,)") {
  CHECK_THAT(error_message<ShapeError>([] { op::cross_entropy(Tensor::zeros({2, 3, 4}), labels({0, 1})); }),
             Contains("cross_entropy") && Contains("(2,3,4)"));
}

TEST_CASE("cross_entropy of an empty batch with mean reduction is NaN, as in torch") {
  // torch 1.13: F.cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=long)) = nan
  CHECK(std::isnan(op::cross_entropy(Tensor::zeros({0, 3}), labels({})).value().item()));
}

// ---- nll_loss ----------------------------------------------------------------------------

TEST_CASE("nll_loss with mean reduction matches torch, value and gradient") {
  // torch 1.13: F.nll_loss(L, [1, 2, 0]).backward()
  const Body mean = [](std::span<const NodeRef> x) { return op::nll_loss(x[0], x[1]); };
  CHECK(op::nll_loss(kLogits, kLabels).value().item() == -2.5);
  CHECK(close(vjp(mean, {kLogits, kLabels}, Tensor(1.0))[0],
              Tensor{{0.0, -1.0 / 3, 0.0, 0.0}, {0.0, 0.0, -1.0 / 3, 0.0}, {-1.0 / 3, 0.0, 0.0, 0.0}}));
}

TEST_CASE("nll_loss with sum reduction matches torch, value and gradient") {
  // torch 1.13: F.nll_loss(L, [1, 2, 0], reduction="sum").backward()
  const Body sum = [](std::span<const NodeRef> x) { return op::nll_loss(x[0], x[1], Reduction::Sum); };
  CHECK(op::nll_loss(kLogits, kLabels, Reduction::Sum).value().item() == -7.5);
  CHECK(close(vjp(sum, {kLogits, kLabels}, Tensor(1.0))[0],
              Tensor{{0.0, -1.0, 0.0, 0.0}, {0.0, 0.0, -1.0, 0.0}, {-1.0, 0.0, 0.0, 0.0}}));
}

TEST_CASE("nll_loss without reduction gives per-sample losses and seeded gradients like torch") {
  // torch 1.13: F.nll_loss(L, [1, 2, 0], reduction="none").backward([2, -1, 0.5])
  const Body none = [](std::span<const NodeRef> x) { return op::nll_loss(x[0], x[1], Reduction::None); };
  CHECK(close(op::nll_loss(kLogits, kLabels, Reduction::None).value(), Tensor{-2.0, -3.0, -2.5}));
  CHECK(close(vjp(none, {kLogits, kLabels}, kSampleSeed)[0],
              Tensor{{0.0, -2.0, 0.0, 0.0}, {0.0, 0.0, 1.0, 0.0}, {-0.5, 0.0, 0.0, 0.0}}));
}

TEST_CASE("nll_loss accepts unbatched log-probabilities (C,) with a 0-d target") {
  // torch 1.13: F.nll_loss([0.5, -1, 2], torch.tensor(0)).backward()
  const Body f = [](std::span<const NodeRef> x) { return op::nll_loss(x[0], x[1]); };
  const Tensor lp{0.5, -1.0, 2.0};
  const Tensor y = op::nll_loss(lp, label(0)).value();
  CHECK(y.shape() == Shape{});
  CHECK(y.item() == -0.5);
  CHECK(close(vjp(f, {lp, label(0)}, Tensor(1.0))[0], Tensor{-1.0, 0.0, 0.0}));
}

TEST_CASE("nll_loss passes gradcheck for every reduction") {
  Generator gen(9);
  for (Reduction r : kReductions) {
    INFO("reduction " << reduction_name(r));
    const Body f = [r](std::span<const NodeRef> x) { return op::nll_loss(x[0], x[1], r); };
    require_gradcheck(f, {Tensor::randn({4, 3}, gen), random_labels(4, 3, gen)});
    require_gradcheck(f, {Tensor::randn({3}, gen), label(1)});
  }
}

TEST_CASE("nll_loss rejects a class index out of range, naming the index and C") {
  CHECK_THAT(error_message<IndexError>([] { op::nll_loss(kLogits, labels({0, 0, 7})); }),
             Contains("nll_loss") && Contains("7") && Contains("C = 4"));
}

TEST_CASE("nll_loss rejects a wrong target dtype or shape") {
  CHECK_THROWS_AS(op::nll_loss(kLogits, Tensor{0.0, 1.0, 2.0}), TypeError);
  CHECK_THAT(error_message<ShapeError>([] { op::nll_loss(kLogits, labels({0, 1, 2, 3})); }),
             Contains("nll_loss") && Contains("(3,4)") && Contains("(4,)"));
  CHECK_THROWS_AS(op::nll_loss(Tensor{0.5, 1.0}, labels({0, 1})), ShapeError);
}

// ---- mse_loss ----------------------------------------------------------------------------

TEST_CASE("mse_loss with mean reduction matches torch, value and both gradients") {
  // torch 1.13: F.mse_loss(I, T).backward(), both requiring grad
  const Body mean = [](std::span<const NodeRef> x) { return op::mse_loss(x[0], x[1]); };
  CHECK(op::mse_loss(kMseIn, kMseTarget).value().item() == 1.375);
  const auto g = vjp(mean, {kMseIn, kMseTarget}, Tensor(1.0));
  const Tensor dmean{{-1.0 / 6, -2.0 / 3, 1.0 / 3}, {1.0 / 3, 1.0 / 3, -1.0 / 3}};
  CHECK(close(g[0], dmean));
  CHECK(close(g[1], op::neg(dmean).value()));
}

TEST_CASE("mse_loss with sum reduction matches torch, value and both gradients") {
  // torch 1.13: F.mse_loss(I, T, reduction="sum").backward(), both requiring grad
  const Body sum = [](std::span<const NodeRef> x) { return op::mse_loss(x[0], x[1], Reduction::Sum); };
  CHECK(op::mse_loss(kMseIn, kMseTarget, Reduction::Sum).value().item() == 8.25);
  const auto g = vjp(sum, {kMseIn, kMseTarget}, Tensor(1.0));
  CHECK(close(g[0], Tensor{{-1.0, -4.0, 2.0}, {2.0, 2.0, -2.0}}));
  CHECK(close(g[1], Tensor{{1.0, 4.0, -2.0}, {-2.0, -2.0, 2.0}}));
}

TEST_CASE("mse_loss without reduction gives elementwise losses and seeded gradients like torch") {
  // torch 1.13: F.mse_loss(I, T, reduction="none").backward(G), both requiring grad
  const Body none = [](std::span<const NodeRef> x) { return op::mse_loss(x[0], x[1], Reduction::None); };
  CHECK(close(op::mse_loss(kMseIn, kMseTarget, Reduction::None).value(), Tensor{{0.25, 4.0, 1.0}, {1.0, 1.0, 1.0}}));
  const auto g = vjp(none, {kMseIn, kMseTarget}, kSeed);
  CHECK(close(g[0], Tensor{{-0.3, 4.0, 4.0}, {3.0, 0.5, 1.0}}));
  CHECK(close(g[1], Tensor{{0.3, -4.0, -4.0}, {-3.0, -0.5, -1.0}}));
}

TEST_CASE("mse_loss passes gradcheck in both operands for every reduction") {
  Generator gen(10);
  for (Reduction r : kReductions) {
    INFO("reduction " << reduction_name(r));
    const Body f = [r](std::span<const NodeRef> x) { return op::mse_loss(x[0], x[1], r); };
    require_gradcheck(f, {Tensor::randn({2, 3, 2}, gen), Tensor::randn({2, 3, 2}, gen)});
  }
}

TEST_CASE("mse_loss with mean reduction of empty operands is NaN, as in torch") {
  // torch 1.13: F.mse_loss(torch.zeros(0), torch.zeros(0)) = nan
  CHECK(std::isnan(op::mse_loss(Tensor::zeros({0}), Tensor::zeros({0})).value().item()));
}

TEST_CASE("mse_loss rejects operands of different shapes, naming both") {
  CHECK_THAT(error_message<ShapeError>([] { op::mse_loss(kMseIn, Tensor::zeros({3, 2})); }),
             Contains("mse_loss") && Contains("(2,3)") && Contains("(3,2)"));
  CHECK_THROWS_AS(op::mse_loss(kMseIn, Tensor::zeros({3})), ShapeError);
}

TEST_CASE("mse_loss rejects operands of different dtypes") {
  CHECK_THROWS_AS(op::mse_loss(kMseIn, kMseTarget.to(DType::Float32)), TypeError);
}

// ---- binary_cross_entropy_with_logits ----------------------------------------------------

TEST_CASE("binary_cross_entropy_with_logits with mean reduction matches torch, value and both gradients") {
  // torch 1.13: F.binary_cross_entropy_with_logits(I, T).backward(), both requiring grad
  const Body f = [](std::span<const NodeRef> x) { return op::binary_cross_entropy_with_logits(x[0], x[1]); };
  CHECK(op::binary_cross_entropy_with_logits(kBceIn, kBceTarget).value().item() ==
        Approx(7.31946941858948).epsilon(1e-14));
  const auto g = vjp(f, {kBceIn, kBceTarget}, Tensor(1.0));
  CHECK(close(g[0], Tensor{{0.00790431219626113, -0.10374322186697577, 0.0},
                           {-0.0629234447996909, 0.11346617966298038, 0.16666666666666666}}));
  CHECK(close(g[1], Tensor{{0.5, 0.08333333333333333, 0.0}, {-0.08333333333333333, -0.3333333333333333, -6.666666666666667}}));
}

TEST_CASE("binary_cross_entropy_with_logits with sum reduction matches torch, value and both gradients") {
  // torch 1.13: F.binary_cross_entropy_with_logits(I, T, reduction="sum").backward(), both requiring grad
  const Body f = [](std::span<const NodeRef> x) {
    return op::binary_cross_entropy_with_logits(x[0], x[1], Reduction::Sum);
  };
  CHECK(op::binary_cross_entropy_with_logits(kBceIn, kBceTarget, Reduction::Sum).value().item() ==
        Approx(43.91681651153688).epsilon(1e-14));
  const auto g = vjp(f, {kBceIn, kBceTarget}, Tensor(1.0));
  CHECK(close(g[0], Tensor{{0.04742587317756678, -0.6224593312018546, 0.0}, {-0.3775406687981454, 0.6807970779778822, 1.0}}));
  CHECK(close(g[1], Tensor{{3.0, 0.5, 0.0}, {-0.5, -2.0, -40.0}}));
}

TEST_CASE("binary_cross_entropy_with_logits without reduction gives elementwise losses and seeded gradients like torch") {
  // torch 1.13: F.binary_cross_entropy_with_logits(I, T, reduction="none").backward(G), both requiring grad
  const Body f = [](std::span<const NodeRef> x) {
    return op::binary_cross_entropy_with_logits(x[0], x[1], Reduction::None);
  };
  CHECK(close(op::binary_cross_entropy_with_logits(kBceIn, kBceTarget, Reduction::None).value(),
              Tensor{{0.048587351573741965, 0.9740769841801067, 0.6931471805599453},
                     {0.4740769841801067, 1.7269280110429728, 40.0}}));
  const auto g = vjp(f, {kBceIn, kBceTarget}, kSeed);
  CHECK(close(g[0], Tensor{{0.014227761953270034, 0.6224593312018546, 0.0}, {-0.566311003197218, 0.17019926949447056, -0.5}}));
  CHECK(close(g[1], Tensor{{0.8999999999999999, -0.5, 0.0}, {-0.75, -0.5, 20.0}}));
}

TEST_CASE("binary_cross_entropy_with_logits passes gradcheck in both operands for every reduction") {
  Generator gen(11);
  for (Reduction r : kReductions) {
    INFO("reduction " << reduction_name(r));
    const Body f = [r](std::span<const NodeRef> x) { return op::binary_cross_entropy_with_logits(x[0], x[1], r); };
    const Tensor logits = op::mult(Tensor::randn({3, 4}, gen), 3.0).value();
    require_gradcheck(f, {logits, Tensor::uniform({3, 4}, 0.0, 1.0, gen)});
  }
}

TEST_CASE("binary_cross_entropy_with_logits of logits at +-1000 is finite and matches torch") {
  // torch 1.13: F.binary_cross_entropy_with_logits([-1000, 1000, -50, 50], [1, 0, 0, 1], reduction="none")
  //             .backward(ones) -> loss [1000, 1000, 0, 0], grad [-1, 1, 1.93e-22, 0]
  // (torch rounds the last two losses, exp(-50) ~ 1.9e-22, to 0; zkynet keeps them: within atol)
  const Body f = [](std::span<const NodeRef> x) {
    return op::binary_cross_entropy_with_logits(x[0], x[1], Reduction::None);
  };
  const Tensor logits{-1000.0, 1000.0, -50.0, 50.0};
  const Tensor target{1.0, 0.0, 0.0, 1.0};
  CHECK(allclose(op::binary_cross_entropy_with_logits(logits, target, Reduction::None).value(),
                 Tensor{1000.0, 1000.0, 0.0, 0.0}, 1e-15, 1e-20));
  CHECK(allclose(vjp(f, {logits, target}, Tensor::ones({4}))[0], Tensor{-1.0, 1.0, 1.928749847963918e-22, 0.0},
                 1e-12, 1e-30));
}

TEST_CASE("binary_cross_entropy_with_logits at infinite logits gives torch's values") {
  // torch 1.13: F.binary_cross_entropy_with_logits([inf, -inf, inf, -inf, 3], [0, 1, 1, 0, 0.5],
  //   reduction="none") = [inf, nan, nan, nan, 1.548587351573742], backward(ones) -> [1, -1, 0, 0, 0.4525..]
  // (the first used to be NaN: max(x, 0) - x y with x y = inf * 0)
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor logits{inf, -inf, inf, -inf, 3.0};
  const Tensor target{0.0, 1.0, 1.0, 0.0, 0.5};
  CHECK(close(op::binary_cross_entropy_with_logits(logits, target, Reduction::None).value(),
              Tensor{inf, nan, nan, nan, 1.548587351573742}));
  const Body f = [](std::span<const NodeRef> x) {
    return op::binary_cross_entropy_with_logits(x[0], x[1], Reduction::None);
  };
  CHECK(close(vjp(f, {logits, target}, Tensor::ones({5}))[0], Tensor{1.0, -1.0, 0.0, 0.0, 0.45257412682243336}));
}

TEST_CASE("binary_cross_entropy_with_logits rejects operands of different shapes, naming both") {
  CHECK_THAT(error_message<ShapeError>([] { op::binary_cross_entropy_with_logits(kBceIn, Tensor::zeros({2, 1})); }),
             Contains("binary_cross_entropy_with_logits") && Contains("(2,3)") && Contains("(2,1)"));
}

TEST_CASE("binary_cross_entropy_with_logits rejects an int64 target") {
  CHECK_THROWS_AS(op::binary_cross_entropy_with_logits(kBceIn, Tensor::zeros({2, 3}, DType::Int64)), TypeError);
}

// ---- non-contiguous operands -------------------------------------------------------------

TEST_CASE("softmax, log_softmax and logsumexp of a transposed view equal those of its copy") {
  Generator gen(12);
  const Tensor view = Tensor::randn({4, 3}, gen).transpose(0, 1);
  const Tensor copy = view.contiguous();
  CHECK(allclose(op::softmax(view, 0).value(), op::softmax(copy, 0).value(), 1e-15));
  CHECK(allclose(op::log_softmax(view).value(), op::log_softmax(copy).value(), 1e-15));
  CHECK(allclose(op::logsumexp(view, {1}).value(), op::logsumexp(copy, {1}).value(), 1e-15));
}

TEST_CASE("cross_entropy passes gradcheck on transposed logits") {
  Generator gen(13);
  const Body f = [](std::span<const NodeRef> x) { return op::cross_entropy(op::transpose(x[0]), x[1]); };
  require_gradcheck(f, {Tensor::randn({5, 3}, gen), random_labels(3, 5, gen)});
}
