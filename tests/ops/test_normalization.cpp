// layer_norm, batch_norm, dropout and bmm: float64 gradient checks for every option, values,
// gradients and updated running statistics against torch 1.13 (computed with Debian's
// /usr/bin/python3, torch.nn.functional in float64 unless noted), dropout's statistics and
// reproducibility, and the errors for bad shapes and arguments.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/framework/graph.h>
#include <zkynet/framework/module.h>
#include <zkynet/ops/bmm.h>
#include <zkynet/ops/normalization.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <cmath>
#include <string>
#include <vector>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {

// Float64 results against torch's float64 ones: equal up to the rounding of a different
// summation order (the normalizations subtract nearly equal sums).
bool close(const Tensor& a, const Tensor& b) { return allclose(a, b, 1e-10, 1e-12); }

// amplitude * sin(frequency * i) (or cos), i = 0 .. numel - 1, reshaped: torch's
// (torch.sin(torch.arange(n, dtype=torch.float64) * frequency) * amplitude).reshape(shape).
Tensor wave(const Shape& shape, double frequency, double amplitude, bool cosine = false) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double a = static_cast<double>(i) * frequency;
    v[i] = (cosine ? std::cos(a) : std::sin(a)) * amplitude;
  }
  return Tensor::from_vector(v, shape);
}

// ---- shared operands ----------------------------------------------------------------------

// layer_norm: X (2, 3) over its last axis.
const Tensor kX{{1.0, 2.0, 4.0}, {-1.0, 0.5, 3.0}};
const Tensor kW{0.5, -1.0, 2.0};
const Tensor kB{0.1, 0.2, -0.3};
const Tensor kSeed{{0.3, -1.0, 2.0}, {1.5, 0.25, -0.5}};

// layer_norm over the last two axes of X3 (2, 2, 3).
const Tensor kX3{{{1.0, 2.0, 4.0}, {-1.0, 0.5, 3.0}}, {{0.0, -2.0, 1.0}, {2.5, 2.5, -0.5}}};
const Tensor kW3{{0.5, -1.0, 2.0}, {1.0, 1.5, -0.5}};
const Tensor kB3{{0.1, 0.2, -0.3}, {0.0, 0.4, 1.0}};
const Tensor kSeed3{{{0.3, -1.0, 2.0}, {1.5, 0.25, -0.5}}, {{1.0, 0.0, -2.0}, {0.5, 0.5, 3.0}}};

// batch_norm on (N, C) = (4, 3), running statistics before the call, weight and bias kW, kB.
const Tensor kXB{{1.0, 2.0, 4.0}, {-1.0, 0.5, 3.0}, {0.0, -2.0, 1.0}, {2.5, 2.5, -0.5}};
const Tensor kSeedB{{0.3, -1.0, 2.0}, {1.5, 0.25, -0.5}, {1.0, 0.0, -2.0}, {0.5, 0.5, 3.0}};
Tensor running_mean0() { return Tensor{0.5, -0.2, 0.1}; }
Tensor running_var0() { return Tensor{1.0, 2.0, 0.5}; }

// batch_norm on (N, C, H, W) = (2, 3, 2, 2).
Tensor x4() { return wave({2, 3, 2, 2}, 0.7, 2.0); }           // torch.sin(arange(24) * 0.7) * 2
Tensor seed4() { return wave({2, 3, 2, 2}, 0.3, 1.0, true); }  // torch.cos(arange(24) * 0.3)

const Body kLayerNormAffine = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {3}, x[1], x[2]); };
const Body kBatchNormTrainAffine = [](std::span<const NodeRef> x) {
  return op::batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true);
};

}  // namespace

// ---- layer_norm ----------------------------------------------------------------------------

TEST_CASE("layer_norm with weight and bias matches torch's values", "[normalization]") {
  // torch 1.13: F.layer_norm(X, (3,), W, B), X = [[1, 2, 4], [-1, 0.5, 3]], W = [0.5, -1, 2], B = [0.1, 0.2, -0.3]
  CHECK(close(op::layer_norm(kX, {3}, kW, kB).value(),
              Tensor{{-0.43452076572514897, 0.4672603828625746, 2.372603828625744},
                     {-0.4555828790463038, 0.40203013783501956, 2.3263917918552544}}));
}

TEST_CASE("layer_norm with weight and bias matches torch's gradients", "[normalization]") {
  // torch 1.13: y = F.layer_norm(X, (3,), W, B); y.backward(G), G = [[0.3, -1, 2], [1.5, 0.25, -0.5]]
  const auto g = vjp(kLayerNormAffine, {kX, kW, kB}, kSeed);
  CHECK(close(g[0], Tensor{{0.14889318105713079, -0.22335557802672734, 0.074462396969597},
                           {0.08503992429753346, -0.1360607989585313, 0.05102087466099789}}));
  CHECK(close(g[1], Tensor{-1.9874610965740007, 0.2167528484038197, 2.01600588066193}));
  CHECK(close(g[2], Tensor{1.8, -0.75, 1.5}));
}

TEST_CASE("layer_norm without weight and bias matches torch", "[normalization]") {
  // torch 1.13: y = F.layer_norm(X, (3,)); y.backward(G)
  CHECK(close(op::layer_norm(kX, {3}).value(), Tensor{{-1.069041531450298, -0.2672603828625746, 1.3363019143128718},
                                                      {-1.1111657580926075, -0.20203013783501955, 1.313195895927627}}));
  const Body f = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {3}); };
  CHECK(close(vjp(f, {kX}, kSeed)[0], Tensor{{0.6414201082142128, -0.9621385809692593, 0.3207184727550467},
                                             {0.12369387873026638, -0.19790671786906378, 0.0742128391387975}}));
}

TEST_CASE("layer_norm with a weight only and eps = 0.5 matches torch", "[normalization]") {
  // torch 1.13: y = F.layer_norm(X, (3,), W, None, eps=0.5); y.backward(G)
  CHECK(close(op::layer_norm(kX, {3}, kW, NodeRef(), 0.5).value(),
              Tensor{{-0.46499055497527725, 0.23249527748763876, 2.3249527748763854},
                     {-0.5106621799868926, 0.1856953381770518, 2.4140393963016744}}));
  const Body f = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {3}, x[1], NodeRef(), 0.5); };
  const auto g = vjp(f, {kX, kW}, kSeed);
  CHECK(close(g[0], Tensor{{-0.16777361915999872, -0.26862630034044715, 0.4363999195004464},
                           {0.14527458568592638, -0.11285794259898409, -0.032416643086942254}}));
  CHECK(close(g[1], Tensor{-1.810980872945844, 0.1860714429433758, 1.7214429258009667}));
}

TEST_CASE("layer_norm over the last two axes matches torch", "[normalization]") {
  // torch 1.13: y = F.layer_norm(X3, (2, 3), W3, B3); y.backward(G3), operands as kX3, kW3, kB3, kSeed3
  CHECK(close(op::layer_norm(kX3, {2, 3}, kW3, kB3).value(),
              Tensor{{{-0.07745671584290206, -0.05350959406128858, 2.6407112911109483},
                      {-1.5717594831799895, -0.5886874168390258, 0.5690336900958093}},
                     {{-0.08025882665805126, 1.7965781789713113, 0.2150252190230038},
                      {1.1845580037529087, 2.176837005629363, 1.3347663923649524}}}));
  const Body f = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {2, 3}, x[1], x[2]); };
  const auto g = vjp(f, {kX3, kW3, kB3}, kSeed3);
  CHECK(close(g[0], Tensor{{{-0.513562704012837, -0.22420900785943515, 1.145448317918589},
                            {0.7634201322089924, -0.2627645853539275, -0.9083321529013817}},
                           {{0.7426197371286714, 0.5958984049638397, -2.119663345220034},
                            {0.5397524880674581, 0.6942600537743593, -0.45286733871429485}}}));
  CHECK(close(g[1], Tensor{{-0.4669916828218438, -0.2535095940612886, 2.4256860720879443},
                           {-1.76536022289353, 0.4274977657366167, -2.439564664093905}}));
  CHECK(close(g[2], Tensor{{1.3, -1.0, 0.0}, {2.0, 0.75, 2.5}}));
}

TEST_CASE("layer_norm in float32 matches torch's float32 result", "[normalization]") {
  // torch 1.13: F.layer_norm(X.float(), (3,), W.float(), B.float())
  const Tensor y = op::layer_norm(kX.to(DType::Float32), {3}, kW.to(DType::Float32), kB.to(DType::Float32)).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{{-0.4345206916332245, 0.46726030111312866, 2.37260365486145},
                           {-0.4555828869342804, 0.40203016996383667, 2.3263919353485107}},
                 1e-6, 1e-6));
}

TEST_CASE("layer_norm gives every row zero mean and unit variance", "[normalization]") {
  Generator gen(11);
  const Tensor y = op::layer_norm(Tensor::randn({8, 50}, gen), {50}, NodeRef(), NodeRef(), 0.0).value();
  CHECK(allclose(op::mean(y, {1}).value(), Tensor::zeros({8}), 0.0, 1e-12));
  CHECK(allclose(op::mean(op::square(y), {1}).value(), Tensor::ones({8}), 1e-12));
}

TEST_CASE("layer_norm passes gradcheck with weight and bias", "[normalization]") {
  Generator gen(1);
  require_gradcheck(kLayerNormAffine, {Tensor::randn({4, 3}, gen), Tensor::randn({3}, gen), Tensor::randn({3}, gen)});
}

TEST_CASE("layer_norm passes gradcheck without weight and bias", "[normalization]") {
  Generator gen(2);
  const Body f = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {5}); };
  require_gradcheck(f, {Tensor::randn({2, 3, 5}, gen)});
}

TEST_CASE("layer_norm passes gradcheck with a weight only and with a bias only", "[normalization]") {
  Generator gen(3);
  const Body weight_only = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {4}, x[1], NodeRef(), 0.1); };
  require_gradcheck(weight_only, {Tensor::randn({3, 4}, gen), Tensor::randn({4}, gen)});
  const Body bias_only = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {4}, NodeRef(), x[1]); };
  require_gradcheck(bias_only, {Tensor::randn({3, 4}, gen), Tensor::randn({4}, gen)});
}

TEST_CASE("layer_norm passes gradcheck over two trailing axes", "[normalization]") {
  Generator gen(4);
  const Body f = [](std::span<const NodeRef> x) { return op::layer_norm(x[0], {3, 2}, x[1], x[2]); };
  require_gradcheck(f, {Tensor::randn({2, 3, 2}, gen), Tensor::randn({3, 2}, gen), Tensor::randn({3, 2}, gen)});
}

TEST_CASE("layer_norm rejects an input that does not end with normalized_shape", "[normalization]") {
  const std::string msg = error_message<ShapeError>([] { op::layer_norm(kX, {4}); });
  CHECK_THAT(msg, Contains("layer_norm") && Contains("(2,3)") && Contains("(4,)"));
  CHECK_THROWS_AS(op::layer_norm(Tensor{1.0, 2.0}, {2, 1}), ShapeError);
  CHECK_THROWS_AS(op::layer_norm(kX, {}), ShapeError);
}

TEST_CASE("layer_norm rejects a weight or bias of the wrong shape", "[normalization]") {
  CHECK_THAT(error_message<ShapeError>([] { op::layer_norm(kX, {3}, Tensor{1.0, 2.0}); }),
             Contains("layer_norm") && Contains("weight (2,)") && Contains("(3,)"));
  CHECK_THAT(error_message<ShapeError>([] { op::layer_norm(kX, {3}, kW, Tensor::zeros({2, 3})); }),
             Contains("layer_norm") && Contains("bias (2,3)"));
}

TEST_CASE("layer_norm rejects int64 inputs and mixed dtypes", "[normalization]") {
  CHECK_THROWS_AS(op::layer_norm(Tensor::arange(3, DType::Int64), {3}), TypeError);
  CHECK_THROWS_AS(op::layer_norm(kX, {3}, kW.to(DType::Float32)), TypeError);
}

// ---- batch_norm ----------------------------------------------------------------------------

TEST_CASE("batch_norm in training mode on (N, C) matches torch's values", "[normalization]") {
  // torch 1.13: F.batch_norm(XB, rm, rv, W, B, training=True, momentum=0.1, eps=1e-5)
  Tensor rm = running_mean0(), rv = running_var0();
  CHECK(close(op::batch_norm(kXB, rm, rv, kW, kB, true).value(),
              Tensor{{0.24501003968261298, -0.5142845481078122, 2.134786576190148},
                     {-0.5283768386246563, 0.34285690962156246, 0.9890046579830196},
                     {-0.14168339947102165, 1.771426005837187, -1.3025591784312374},
                     {0.8250501984130649, -0.7999983673509371, -3.02123205574193}}));
}

TEST_CASE("batch_norm in training mode on (N, C) matches torch's gradients", "[normalization]") {
  // torch 1.13: y = F.batch_norm(XB, rm, rv, W, B, training=True); y.backward(GB)
  const auto g = vjp(kBatchNormTrainAffine, {kXB, kW, kB}, kSeedB);
  CHECK(close(g[0], Tensor{{-0.15937578126327878, 0.5102033319466549, 1.9125733262439977},
                           {0.07191888282839284, -0.17346912120011218, -1.11052767572521},
                           {-0.005059105302079523, 0.02040794668985881, -3.1464929659386756},
                           {0.09251600373696554, -0.35714215743640154, 2.3444473154198877}}));
  CHECK(close(g[1], Tensor{-1.5564410925933796, -0.2499995918377343, -0.9667534934872647}));
  CHECK(close(g[2], Tensor{3.3, -0.25, 2.5}));
}

TEST_CASE("batch_norm in training mode updates the running statistics in place as torch", "[normalization]") {
  // torch 1.13: rm = [0.5, -0.2, 0.1], rv = [1, 2, 0.5]; F.batch_norm(XB, rm, rv, W, B, training=True)
  // leaves rm, rv as below (running_var blends in the unbiased batch variance).
  Tensor rm = running_mean0(), rv = running_var0();
  const Tensor rm_alias = rm;  // the same storage
  op::batch_norm(kXB, rm, rv, kW, kB, true);
  CHECK(close(rm, Tensor{0.5125, -0.10500000000000001, 0.2775}));
  CHECK(close(rv, Tensor{1.1229166666666668, 2.2083333333333335, 0.85625}));
  CHECK(close(rm_alias, rm));
}

TEST_CASE("batch_norm in evaluation mode uses the running statistics and leaves them alone", "[normalization]") {
  // torch 1.13: y = F.batch_norm(XB, rm, rv, W, B, training=False); y.backward(GB)
  Tensor rm = running_mean0(), rv = running_var0();
  const Body f = [&](std::span<const NodeRef> x) { return op::batch_norm(x[0], rm, rv, x[1], x[2], false); };
  CHECK(close(op::batch_norm(kXB, rm, rv, kW, kB, false).value(),
              Tensor{{0.34999875000937497, -1.355631029537692, 10.73075547950688},
                     {-0.6499962500281248, -0.29497350939835654, 7.90235663860768},
                     {-0.14999875000937493, 1.4727890241672026, 2.2455589568092797},
                     {1.0999950000374998, -1.7091835362508039, -1.99703930453952}}));
  const auto g = vjp(f, {kXB, kW, kB}, kSeedB);
  CHECK(close(g[0], Tensor{{0.14999925000562495, 0.7071050134262237, 5.6567976817984},
                           {0.7499962500281248, -0.17677625335655592, -1.4141994204496},
                           {0.4999975000187499, -0.0, -5.6567976817984},
                           {0.24999875000937494, -0.35355250671311184, 8.4851965226976}}));
  CHECK(close(g[1], Tensor{-1.5999920000599996, -0.4772958840627012, 3.8890484062364}));
  CHECK(close(g[2], Tensor{3.3, -0.25, 2.5}));
  CHECK(close(rm, running_mean0()));
  CHECK(close(rv, running_var0()));
}

TEST_CASE("batch_norm in training mode on (N, C, H, W) without affine matches torch", "[normalization]") {
  // torch 1.13: X4 = (sin(arange(24) * 0.7) * 2).reshape(2, 3, 2, 2), G4 = cos(arange(24) * 0.3).reshape(...);
  // y = F.batch_norm(X4, rm, rv, None, None, training=True, momentum=0.3); y.backward(G4)
  Tensor rm = running_mean0(), rv = running_var0();
  const Body f = [&](std::span<const NodeRef> x) {
    return op::batch_norm(x[0], rm, rv, NodeRef(), NodeRef(), true, 0.3);
  };
  const Tensor y = op::batch_norm(x4(), rm, rv, NodeRef(), NodeRef(), true, 0.3).value();
  CHECK(close(y, Tensor{{{{-0.4829744192879224, 0.5454201294341547}, {1.0901446527841534, 0.8950066958751032}},
                         {{1.1511373182597382, -0.008948905916766095}, {-0.8899484289446776, -1.077513409146693}},
                         {{-1.6651735118783375, -0.5637353808024453}, {0.5242630678118133, 1.08711916313644}}},
                        {{{0.8812614218456375, 0.02641708430973967}, {-1.0680020368299399, -1.8872735281309259}},
                         {{-1.0719734473962272, -0.4612185229689318}, {0.6413325704142964, 1.7171328256992615}},
                         {{1.0912645457201442, 0.8450684389311037}, {-0.07714979990716717, -1.2416565230115515}}}}));
  CHECK(close(rm, Tensor{0.5315299373816796, -0.3472959120906687, 0.27910774162054897}));
  CHECK(close(rv, Tensor{1.2381659089614032, 1.879234700021773, 0.8247968204785083}));
  CHECK(close(vjp(f, {x4()}, seed4())[0],
              Tensor{{{{0.767961246236395, 0.5675147630637681}, {0.37646101569890006, 0.245122966321429}},
                      {{-0.19933100445197494, -0.11054489914101141}, {-0.10780303928480514, -0.288405897819866}},
                      {{-0.4696679653930867, -0.7226407575733738}, {-0.9056293069995588, -0.9603881683113613}}},
                     {{{-0.964595301648598, -0.6912601368664851}, {-0.3277759672378797, 0.026571414432470804}},
                      {{0.2110129345459162, 0.2801036993025}, {0.17843033805520828, 0.03653786879403295}},
                      {{0.69424639814036, 0.7528581140616807}, {0.8039062277702603, 0.8073154583050792}}}}));
}

TEST_CASE("batch_norm in training mode on (N, C, H, W) with affine matches torch", "[normalization]") {
  // torch 1.13: y = F.batch_norm(X4, rm, rv, W, B, training=True); y.backward(G4)
  Tensor rm = running_mean0(), rv = running_var0();
  const Tensor y = op::batch_norm(x4(), rm, rv, kW, kB, true).value();
  CHECK(close(y, Tensor{{{{-0.1414872096439612, 0.37271006471707735}, {0.6450723263920767, 0.5475033479375516}},
                         {{-0.9511373182597381, 0.20894890591676615}, {1.0899484289446777, 1.2775134091466929}},
                         {{-3.630347023756675, -1.4274707616048905}, {0.7485261356236268, 1.8742383262728806}}},
                        {{{0.5406307109228188, 0.11320854215486983}, {-0.43400101841496996, -0.843636764065463}},
                         {{1.2719734473962274, 0.6612185229689318}, {-0.4413325704142963, -1.5171328256992613}},
                         {{1.8825290914402886, 1.3901368778622076}, {-0.45429959981433415, -2.783313046023103}}}}));
  CHECK(close(rm, Tensor{0.5105099791272265, -0.24909863736355625, 0.15970258054018302}));
  CHECK(close(rv, Tensor{1.0793886363204677, 1.9597449000072578, 0.6082656068261695}));
  const auto g = vjp(kBatchNormTrainAffine, {x4(), kW, kB}, seed4());
  CHECK(close(g[0], Tensor{{{{0.3839806231181975, 0.28375738153188407}, {0.18823050784945003, 0.1225614831607145}},
                            {{0.19933100445197494, 0.11054489914101141}, {0.10780303928480514, 0.288405897819866}},
                            {{-0.9393359307861734, -1.4452815151467475}, {-1.8112586139991176, -1.9207763366227226}}},
                           {{{-0.482297650824299, -0.34563006843324257}, {-0.16388798361893986, 0.013285707216235402}},
                            {{-0.2110129345459162, -0.2801036993025}, {-0.17843033805520828, -0.03653786879403295}},
                            {{1.38849279628072, 1.5057162281233614}, {1.6078124555405207, 1.6146309166101585}}}}));
  CHECK(close(g[1], Tensor{1.6061388993980004, 2.734902120962869, 0.951609374527823}));
  CHECK(close(g[2], Tensor{1.078534731000182, 1.6359291437856525, 0.10704849105005154}));
}

TEST_CASE("batch_norm in float32 matches torch to float32 precision", "[normalization]") {
  // The float64 references of the (N, C) training case; float32 keeps its dtype, running statistics included.
  const auto f32 = [](const Tensor& t) { return t.to(DType::Float32); };
  Tensor rm = f32(running_mean0()), rv = f32(running_var0());
  const Tensor y = op::batch_norm(f32(kXB), rm, rv, f32(kW), f32(kB), true).value();
  CHECK(y.dtype() == DType::Float32);
  CHECK(allclose(y, Tensor{{0.24501003968261298, -0.5142845481078122, 2.134786576190148},
                           {-0.5283768386246563, 0.34285690962156246, 0.9890046579830196},
                           {-0.14168339947102165, 1.771426005837187, -1.3025591784312374},
                           {0.8250501984130649, -0.7999983673509371, -3.02123205574193}},
                 1e-5, 1e-6));
  CHECK(rm.dtype() == DType::Float32);
  CHECK(allclose(rv, Tensor{1.1229166666666668, 2.2083333333333335, 0.85625}, 1e-6));
}

TEST_CASE("batch_norm without running statistics normalizes with the batch's", "[normalization]") {
  Tensor rm = running_mean0(), rv = running_var0();
  const Tensor with = op::batch_norm(kXB, rm, rv, kW, kB, true).value();
  const Tensor without = op::batch_norm(kXB, Tensor(), Tensor(), kW, kB, true).value();
  CHECK(allclose(with, without, 0.0, 0.0));
}

TEST_CASE("batch_norm in evaluation mode keeps the statistics of its call for the gradient", "[normalization]") {
  // Updating the running statistics after an evaluation-mode call does not change its gradient.
  Tensor rm = running_mean0(), rv = running_var0();
  Lambda f({"x"}, [&](std::span<const NodeRef> x) { return op::batch_norm(x[0], rm, rv, kW, NodeRef(), false); });
  ModuleGraph g = f(kXB);
  op::batch_norm(kXB, rm, rv, NodeRef(), NodeRef(), true);  // changes rv
  g.back(kSeedB);
  CHECK(close(g.grad(f.input("x")), Tensor{{0.14999925000562495, 0.7071050134262237, 5.6567976817984},
                                          {0.7499962500281248, -0.17677625335655592, -1.4141994204496},
                                          {0.4999975000187499, -0.0, -5.6567976817984},
                                          {0.24999875000937494, -0.35355250671311184, 8.4851965226976}}));
}

TEST_CASE("batch_norm in training mode on (N, C) passes gradcheck", "[normalization]") {
  Generator gen(5);
  require_gradcheck(kBatchNormTrainAffine,
                    {Tensor::randn({5, 3}, gen), Tensor::randn({3}, gen), Tensor::randn({3}, gen)});
}

TEST_CASE("batch_norm in training mode on (N, C, H, W) passes gradcheck", "[normalization]") {
  Generator gen(6);
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  const Body f = [&](std::span<const NodeRef> x) { return op::batch_norm(x[0], rm, rv, x[1], x[2], true); };
  require_gradcheck(f, {Tensor::randn({2, 2, 3, 2}, gen), Tensor::randn({2}, gen), Tensor::randn({2}, gen)});
}

TEST_CASE("batch_norm in training mode passes gradcheck without affine, with a weight only, with a bias only",
          "[normalization]") {
  Generator gen(7);
  const Body none = [](std::span<const NodeRef> x) {
    return op::batch_norm(x[0], Tensor(), Tensor(), NodeRef(), NodeRef(), true);
  };
  require_gradcheck(none, {Tensor::randn({3, 2, 4}, gen)});
  const Body weight = [](std::span<const NodeRef> x) {
    return op::batch_norm(x[0], Tensor(), Tensor(), x[1], NodeRef(), true, 0.1, 0.01);
  };
  require_gradcheck(weight, {Tensor::randn({4, 3}, gen), Tensor::randn({3}, gen)});
  const Body bias = [](std::span<const NodeRef> x) {
    return op::batch_norm(x[0], Tensor(), Tensor(), NodeRef(), x[1], true);
  };
  require_gradcheck(bias, {Tensor::randn({4, 3}, gen), Tensor::randn({3}, gen)});
}

TEST_CASE("batch_norm in evaluation mode passes gradcheck", "[normalization]") {
  Generator gen(8);
  Tensor rm = Tensor::randn({3}, gen), rv = Tensor::uniform({3}, 0.5, 2.0, gen);
  const Body f = [&](std::span<const NodeRef> x) { return op::batch_norm(x[0], rm, rv, x[1], x[2], false); };
  require_gradcheck(f, {Tensor::randn({2, 3, 2, 2}, gen), Tensor::randn({3}, gen), Tensor::randn({3}, gen)});
}

TEST_CASE("layer_norm and batch_norm accept non-contiguous inputs", "[normalization]") {
  Generator gen(10);
  const Tensor x = Tensor::randn({4, 3}, gen);
  const Tensor xt = x.transpose(0, 1);  // (3, 4), a strided view
  CHECK(allclose(op::layer_norm(xt, {4}).value(), op::layer_norm(xt.contiguous(), {4}).value(), 0.0, 0.0));
  CHECK(allclose(op::batch_norm(xt, Tensor(), Tensor(), NodeRef(), NodeRef(), true).value(),
                 op::batch_norm(xt.contiguous(), Tensor(), Tensor(), NodeRef(), NodeRef(), true).value(), 0.0, 0.0));
  const Body f = [](std::span<const NodeRef> in) {
    const NodeRef t = op::transpose(in[0]);
    return op::add(op::layer_norm(t, {4}, in[1]), op::batch_norm(t, Tensor(), Tensor(), NodeRef(), NodeRef(), true));
  };
  require_gradcheck(f, {x, Tensor::randn({4}, gen)});
}

TEST_CASE("batch_norm rejects inputs of fewer than 2 dimensions", "[normalization]") {
  CHECK_THAT(error_message<ShapeError>([] { op::batch_norm(Tensor{1.0, 2.0}, Tensor(), Tensor(), NodeRef(), NodeRef(), true); }),
             Contains("batch_norm") && Contains("(2,)"));
}

TEST_CASE("batch_norm rejects running statistics and affine parameters of the wrong size", "[normalization]") {
  CHECK_THAT(error_message<ShapeError>([] { op::batch_norm(kXB, Tensor::zeros({2}), Tensor::ones({2}), NodeRef(), NodeRef(), true); }),
             Contains("batch_norm") && Contains("(4,3)") && Contains("running_mean") && Contains("(2,)"));
  CHECK_THAT(error_message<ShapeError>([] { op::batch_norm(kXB, Tensor(), Tensor(), Tensor::ones({4}), NodeRef(), true); }),
             Contains("batch_norm") && Contains("weight (4,)") && Contains("(3,)"));
}

TEST_CASE("batch_norm in training mode needs more than one value per channel", "[normalization]") {
  // torch 1.13: ValueError: Expected more than 1 value per channel when training
  CHECK_THAT(error_message<ShapeError>([] { op::batch_norm(Tensor{{1.0, 2.0, 3.0}}, Tensor(), Tensor(), NodeRef(), NodeRef(), true); }),
             Contains("batch_norm") && Contains("(1,3)") && Contains("more than 1 value per channel"));
  CHECK_NOTHROW(op::batch_norm(Tensor{{1.0, 2.0, 3.0}}, running_mean0(), running_var0(), NodeRef(), NodeRef(), false));
}

TEST_CASE("batch_norm in evaluation mode needs both running statistics", "[normalization]") {
  // torch 1.13: RuntimeError: running_mean must be defined in evaluation mode
  CHECK_THROWS_AS(op::batch_norm(kXB, Tensor(), Tensor(), NodeRef(), NodeRef(), false), UsageError);
  CHECK_THROWS_AS(op::batch_norm(kXB, running_mean0(), Tensor(), NodeRef(), NodeRef(), true), UsageError);
}

// ---- dropout -------------------------------------------------------------------------------

TEST_CASE("dropout zeroes a fraction p of the elements", "[normalization]") {
  Generator gen(1);
  const Tensor y = op::dropout(Tensor::ones({100000}), 0.3, true, gen).value();
  std::int64_t zeros = 0;
  for (double v : y.to_doubles()) zeros += v == 0.0 ? 1 : 0;
  // 100000 Bernoulli(0.3) draws: the standard deviation of the fraction is 0.00145.
  CHECK(std::abs(static_cast<double>(zeros) / 1e5 - 0.3) < 0.01);
}

TEST_CASE("dropout scales the kept elements by 1 / (1 - p)", "[normalization]") {
  Generator gen(2);
  const Tensor x = Tensor::full({1000}, 2.0);
  const std::vector<double> y = op::dropout(x, 0.2, true, gen).value().to_doubles();
  for (double v : y) REQUIRE((v == 0.0 || v == 2.0 / 0.8));
  const Tensor y32 = op::dropout(x.to(DType::Float32), 0.2, true, gen).value();
  CHECK(y32.dtype() == DType::Float32);
  for (double v : y32.to_doubles()) REQUIRE((v == 0.0 || v == static_cast<double>(2.0f * static_cast<float>(1.0 / 0.8))));
}

TEST_CASE("dropout draws the same mask from the same seed", "[normalization]") {
  Generator a(42), b(42), c(43);
  const Tensor x = Tensor::ones({200});
  const Tensor ya = op::dropout(x, 0.5, true, a).value();
  CHECK(allclose(ya, op::dropout(x, 0.5, true, b).value(), 0.0, 0.0));
  CHECK_FALSE(allclose(ya, op::dropout(x, 0.5, true, c).value(), 0.0, 0.0));
  CHECK_FALSE(allclose(ya, op::dropout(x, 0.5, true, a).value(), 0.0, 0.0));  // the generator moved on
}

TEST_CASE("dropout in evaluation mode or with p = 0 returns its input and draws nothing", "[normalization]") {
  Generator gen(3), fresh(3);
  const NodeRef x(Tensor{1.0, -2.0, 3.0});
  CHECK(op::dropout(x, 0.5, false, gen) == x);
  CHECK(op::dropout(x, 0.0, true, gen) == x);
  CHECK(gen.engine()() == fresh.engine()());
}

TEST_CASE("dropout with p = 1 zeroes everything", "[normalization]") {
  // torch 1.13: F.dropout(torch.ones(3), 1.0) = [0, 0, 0]
  Generator gen(4);
  CHECK(allclose(op::dropout(Tensor::ones({3}), 1.0, true, gen).value(), Tensor::zeros({3}), 0.0, 0.0));
}

TEST_CASE("dropout's gradient is its mask, scaled: gradcheck with a fixed seed", "[normalization]") {
  Generator gen(5);
  // A fresh generator per evaluation: every evaluation draws the same mask.
  const Body f = [](std::span<const NodeRef> x) {
    Generator g(99);
    return op::dropout(x[0], 0.4, true, g);
  };
  require_gradcheck(f, {Tensor::randn({3, 5}, gen)});
  Generator g(99);
  const Tensor mask = op::dropout(Tensor::ones({3, 5}), 0.4, true, g).value();
  CHECK(allclose(vjp(f, {Tensor::randn({3, 5}, gen)}, Tensor::ones({3, 5}))[0], mask, 0.0, 0.0));
}

TEST_CASE("dropout rejects p outside [0, 1] and int64 inputs", "[normalization]") {
  Generator gen(6);
  CHECK_THAT(error_message<UsageError>([&] { op::dropout(Tensor::ones({3}), 1.5, true, gen); }),
             Contains("dropout") && Contains("1.5"));
  CHECK_THROWS_AS(op::dropout(Tensor::ones({3}), -0.1, false, gen), UsageError);
  CHECK_THROWS_AS(op::dropout(Tensor::arange(3, DType::Int64), 0.5, true, gen), TypeError);
}

// ---- bmm -----------------------------------------------------------------------------------

TEST_CASE("bmm matches torch's values and gradients", "[normalization]") {
  // torch 1.13: y = torch.bmm(A, B); y.backward(G)
  const Tensor a{{{1.0, 2.0, 0.5}, {-1.0, 0.0, 3.0}}, {{2.0, -1.0, 1.0}, {0.5, 0.5, -2.0}}};
  const Tensor b{{{1.0, -1.0}, {0.5, 2.0}, {3.0, 0.0}}, {{-2.0, 1.0}, {1.0, 1.0}, {0.0, 4.0}}};
  const Tensor seed{{{0.3, -1.0}, {2.0, 1.5}}, {{0.25, -0.5}, {1.0, 0.0}}};
  CHECK(close(op::bmm(a, b).value(), Tensor{{{3.5, 3.0}, {8.0, 1.0}}, {{-5.0, 5.0}, {-0.5, -7.0}}}));
  const Body f = [](std::span<const NodeRef> x) { return op::bmm(x[0], x[1]); };
  const auto g = vjp(f, {a, b}, seed);
  CHECK(close(g[0], Tensor{{{1.3, -1.85, 0.8999999999999999}, {0.5, 4.0, 6.0}}, {{-1.0, -0.25, -2.0}, {-2.0, 1.0, 0.0}}}));
  CHECK(close(g[1], Tensor{{{-1.7, -2.5}, {0.6, -2.0}, {6.15, 4.0}}, {{1.0, -1.0}, {0.25, 0.5}, {-1.75, -0.5}}}));
}

TEST_CASE("bmm passes gradcheck, transposed operands included", "[normalization]") {
  Generator gen(9);
  const Body f = [](std::span<const NodeRef> x) { return op::bmm(x[0], x[1]); };
  require_gradcheck(f, {Tensor::randn({3, 2, 4}, gen), Tensor::randn({3, 4, 5}, gen)});
  const Body t = [](std::span<const NodeRef> x) { return op::bmm(x[0], op::transpose(x[1])); };
  require_gradcheck(t, {Tensor::randn({2, 3, 4}, gen), Tensor::randn({2, 5, 4}, gen)});
}

TEST_CASE("bmm rejects operands that are not 3-d or whose sizes differ", "[normalization]") {
  CHECK_THAT(error_message<ShapeError>([] { op::bmm(Tensor::ones({2, 3, 4}), Tensor::ones({3, 4, 5})); }),
             Contains("bmm (2,3,4) x (3,4,5)") && Contains("batch"));
  CHECK_THAT(error_message<ShapeError>([] { op::bmm(Tensor::ones({2, 3, 4}), Tensor::ones({2, 3, 5})); }),
             Contains("bmm (2,3,4) x (2,3,5)") && Contains("inner"));
  CHECK_THAT(error_message<ShapeError>([] { op::bmm(Tensor::ones({3, 4}), Tensor::ones({4, 5})); }),
             Contains("bmm (3,4) x (4,5)") && Contains("3-d"));
  CHECK_THROWS_AS(op::bmm(Tensor::ones({2, 3, 4}), Tensor::ones({2, 4, 5}, DType::Float32)), TypeError);
}
