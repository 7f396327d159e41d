// LayerNorm, BatchNorm1d, BatchNorm2d and Dropout: parameters and buffers, train/eval
// behaviour, running statistics over several batches against torch 1.13 (computed with
// Debian's /usr/bin/python3, torch.nn layers in float64), gradient checks, and errors.
#include <zkynet/framework/gradcheck.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/dropout.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/normalization.h>
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
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// Float64 results against torch's float64 ones, up to summation order.
bool close(const Tensor& a, const Tensor& b) { return allclose(a, b, 1e-10, 1e-12); }

std::vector<std::string> names_of(const auto& named) {
  std::vector<std::string> out;
  for (const auto& [name, value] : named) out.push_back(name);
  return out;
}

void require_gradcheck(const std::function<NodeRef(std::span<const NodeRef>)>& f, const std::vector<Tensor>& inputs) {
  const GradcheckResult r = gradcheck(f, inputs);
  INFO(r.message);
  REQUIRE(r.ok);
}

// amplitude * sin(frequency * i), i = 0 .. numel - 1, reshaped (torch.sin(torch.arange(n) * f) * a).
Tensor wave(const Shape& shape, double frequency, double amplitude) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(static_cast<double>(i) * frequency) * amplitude;
  return Tensor::from_vector(v, shape);
}

const Tensor kX{{1.0, 2.0, 4.0}, {-1.0, 0.5, 3.0}};
// Two batches for BatchNorm1d(3).
const Tensor kXB{{1.0, 2.0, 4.0}, {-1.0, 0.5, 3.0}, {0.0, -2.0, 1.0}, {2.5, 2.5, -0.5}};
const Tensor kXB2{{0.5, -1.0, 2.0}, {3.0, 1.0, 0.0}, {-2.0, 0.0, 1.5}};

// torch 1.13: bn = nn.BatchNorm1d(3).double(); bn(XB); bn(XB2) -> running statistics
const Tensor kRunningMean2{0.10625000000000001, 0.06750000000000002, 0.2854166666666667};
const Tensor kRunningVar2{1.635625, 1.2775, 1.2839583333333333};
// ... and the second batch's output (normalized with its own statistics)
const Tensor kBatch2Out{{0.0, -1.2247356859083902, 0.9805738871259695},
                        {1.2247434017003886, 1.2247356859083902, -1.3728034419763577},
                        {-1.2247434017003886, 0.0, 0.3922295548503877}};

const nn::BatchNormOptions kF64{.dtype = DType::Float64};

}  // namespace

// ---- LayerNorm -----------------------------------------------------------------------------

TEST_CASE("LayerNorm has a weight of ones and a bias of zeros, and no buffers", "[normalization]") {
  nn::LayerNorm ln({2, 3});
  CHECK(names_of(ln.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(ln.param("weight").value().dtype() == DType::Float32);
  CHECK(allclose(ln.param("weight").value(), Tensor::ones({2, 3}), 0.0, 0.0));
  CHECK(allclose(ln.param("bias").value(), Tensor::zeros({2, 3}), 0.0, 0.0));
  CHECK(ln.named_buffers().empty());
  CHECK(ln.normalized_shape() == Shape{2, 3});
  CHECK(ln.eps() == 1e-5);
}

TEST_CASE("LayerNorm without elementwise_affine has no parameters", "[normalization]") {
  nn::LayerNorm ln(3, {.elementwise_affine = false});
  CHECK(ln.named_parameters().empty());
  CHECK(ln.normalized_shape() == Shape{3});
}

TEST_CASE("LayerNorm matches torch with its default and with set parameters", "[normalization]") {
  nn::LayerNorm ln(3, {.dtype = DType::Float64});
  // torch 1.13: nn.LayerNorm(3).double()(X), X = [[1, 2, 4], [-1, 0.5, 3]]
  CHECK(close(ln(kX).value(), Tensor{{-1.069041531450298, -0.2672603828625746, 1.3363019143128718},
                                     {-1.1111657580926075, -0.20203013783501955, 1.313195895927627}}));
  // torch 1.13: F.layer_norm(X, (3,), W, B) with W = [0.5, -1, 2], B = [0.1, 0.2, -0.3]
  ln.param("weight").set_value(Tensor{0.5, -1.0, 2.0});
  ln.param("bias").set_value(Tensor{0.1, 0.2, -0.3});
  ModuleGraph y = ln(kX);
  CHECK(close(y.value(), Tensor{{-0.43452076572514897, 0.4672603828625746, 2.372603828625744},
                                {-0.4555828790463038, 0.40203013783501956, 2.3263917918552544}}));
  // ... and y.backward(G), G = [[0.3, -1, 2], [1.5, 0.25, -0.5]]: the parameters' gradients
  y.back(Tensor{{0.3, -1.0, 2.0}, {1.5, 0.25, -0.5}});
  CHECK(close(ln.param("weight").grad(), Tensor{-1.9874610965740007, 0.2167528484038197, 2.01600588066193}));
  CHECK(close(ln.param("bias").grad(), Tensor{1.8, -0.75, 1.5}));
}

TEST_CASE("LayerNorm passes gradcheck", "[normalization]") {
  Generator gen(1);
  nn::LayerNorm ln({2, 3}, {.dtype = DType::Float64});
  ln.param("weight").set_value(Tensor::randn({2, 3}, gen));
  ln.param("bias").set_value(Tensor::randn({2, 3}, gen));
  require_gradcheck([&](std::span<const NodeRef> x) { return ln(x[0]); }, {Tensor::randn({4, 2, 3}, gen)});
}

TEST_CASE("LayerNorm fed the wrong trailing shape names the layer and the shapes", "[normalization]") {
  nn::LayerNorm ln(4);
  CHECK_THAT(error_message<ShapeError>([&] { ln(Tensor::zeros({2, 3}, DType::Float32)); }),
             StartsWith("LayerNorm") && Contains("layer_norm") && Contains("(2,3)") && Contains("(4,)"));
  CHECK_THROWS_AS(nn::LayerNorm(Shape{}), ShapeError);
  CHECK_THROWS_AS(nn::LayerNorm(Shape{3, 0}), ShapeError);
}

// ---- BatchNorm1d / BatchNorm2d -------------------------------------------------------------

TEST_CASE("BatchNorm1d registers running statistics as buffers and weight and bias as parameters",
          "[normalization]") {
  nn::BatchNorm1d bn(3);
  CHECK(names_of(bn.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(names_of(bn.named_buffers()) ==
        std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
  CHECK(allclose(bn.buffer("running_mean"), Tensor::zeros({3}), 0.0, 0.0));
  CHECK(allclose(bn.buffer("running_var"), Tensor::ones({3}), 0.0, 0.0));
  CHECK(bn.buffer("running_mean").dtype() == DType::Float32);
  CHECK(bn.buffer("num_batches_tracked").dtype() == DType::Int64);
  CHECK(bn.buffer("num_batches_tracked").shape() == Shape{});
  CHECK(bn.buffer("num_batches_tracked").item() == 0.0);
  CHECK(bn.is_training());
}

TEST_CASE("BatchNorm1d without affine or tracking has no parameters or buffers", "[normalization]") {
  nn::BatchNorm1d bn(3, {.affine = false, .track_running_stats = false});
  CHECK(bn.named_parameters().empty());
  CHECK(bn.named_buffers().empty());
}

TEST_CASE("BatchNorm1d in training mode updates its buffers over batches as torch", "[normalization]") {
  nn::BatchNorm1d bn(3, kF64);
  bn(kXB);
  ModuleGraph y2 = bn(kXB2);
  CHECK(close(y2.value(), kBatch2Out));
  CHECK(close(bn.buffer("running_mean"), kRunningMean2));
  CHECK(close(bn.buffer("running_var"), kRunningVar2));
  CHECK(bn.buffer("num_batches_tracked").item() == 2.0);
}

TEST_CASE("BatchNorm1d in evaluation mode normalizes with the running statistics", "[normalization]") {
  nn::BatchNorm1d bn(3, kF64);
  bn(kXB);
  bn(kXB2);
  bn.eval();
  CHECK_FALSE(bn.is_training());
  // torch 1.13: ... bn.eval(); bn(XB)
  CHECK(close(bn(kXB).value(), Tensor{{0.698832118753876, 1.7097686450220202, 3.2781811551993485},
                                      {-0.8649880071289235, 0.3826519735948376, 2.39566463557193},
                                      {-0.08307794418752373, -1.8292091454504664, 0.6306315963170929},
                                      {1.8716972131659757, 2.152140868831081, -0.6931431831240351}}));
  CHECK(close(bn.buffer("running_mean"), kRunningMean2));  // unchanged
  CHECK(bn.buffer("num_batches_tracked").item() == 2.0);
}

TEST_CASE("BatchNorm1d resumes updating its statistics after train()", "[normalization]") {
  nn::BatchNorm1d bn(3, kF64);
  bn(kXB);
  bn.eval();
  bn(kXB2);
  bn(kXB2);
  bn.train();
  bn(kXB2);  // the second training batch: as torch's bn(XB); bn(XB2)
  CHECK(close(bn.buffer("running_mean"), kRunningMean2));
  CHECK(close(bn.buffer("running_var"), kRunningVar2));
  CHECK(bn.buffer("num_batches_tracked").item() == 2.0);
}

TEST_CASE("BatchNorm1d with momentum = nullopt keeps a cumulative average", "[normalization]") {
  // torch 1.13: bn = nn.BatchNorm1d(3, momentum=None).double(); bn(XB); bn(XB2)
  nn::BatchNorm1d bn(3, {.momentum = std::nullopt, .dtype = DType::Float64});
  bn(kXB);
  bn(kXB2);
  CHECK(close(bn.buffer("running_mean"), Tensor{0.5625, 0.375, 1.5208333333333335}));
  CHECK(close(bn.buffer("running_var"), Tensor{4.239583333333333, 2.5416666666666665, 2.572916666666667}));
}

TEST_CASE("BatchNorm1d without running statistics uses the batch's in evaluation mode too", "[normalization]") {
  // torch 1.13: nn.BatchNorm1d(3, affine=False, track_running_stats=False).double().eval()(XB2)
  nn::BatchNorm1d bn(3, {.affine = false, .track_running_stats = false, .dtype = DType::Float64});
  bn.eval();
  CHECK(close(bn(kXB2).value(), kBatch2Out));
}

TEST_CASE("BatchNorm1d on (N, C, L) matches torch", "[normalization]") {
  // torch 1.13: X = (sin(arange(12) * 0.9) * 3).reshape(2, 3, 2); bn = nn.BatchNorm1d(3).double(); bn(X)
  nn::BatchNorm1d bn(3, kF64);
  CHECK(close(bn(wave({2, 3, 2}, 0.9, 3.0)).value(),
              Tensor{{{-0.012439333442225631, 1.411282147519597},
                      {0.8216503717335724, -1.6366148901483062},
                      {-0.15279082596423432, -1.2262099429807052}},
                     {{-1.416963277578298, 0.018120463500926887},
                      {0.011118255869122668, 0.8038462625456113},
                      {1.5619179129338367, -0.1829171439888974}}}));
  CHECK(close(bn.buffer("running_mean"), Tensor{0.0020532241916884513, 0.23735888893546983, -0.10991009771201357}));
  CHECK(close(bn.buffer("running_var"), Tensor{1.2632584026193614, 0.9592984126227161, 1.1981013363732278}));
}

TEST_CASE("BatchNorm2d trains and evaluates as torch", "[normalization]") {
  // torch 1.13: X4 = (sin(arange(24) * 0.7) * 2).reshape(2, 3, 2, 2);
  // bn = nn.BatchNorm2d(3, eps=1e-3, momentum=0.2).double(), weight [0.5, -1, 2], bias [0.1, 0.2, -0.3] (float64);
  // bn(X4); bn.eval(); bn(X4)
  nn::BatchNorm2d bn(3, {.eps = 1e-3, .momentum = 0.2, .dtype = DType::Float64});
  bn.param("weight").set_value(Tensor{0.5, -1.0, 2.0});
  bn.param("bias").set_value(Tensor{0.1, 0.2, -0.3});
  const Tensor x = wave({2, 3, 2, 2}, 0.7, 2.0);
  bn(x);
  CHECK(close(bn.buffer("running_mean"), Tensor{0.1210199582544531, -0.1381972747271125, 0.13940516108036602}));
  CHECK(close(bn.buffer("running_var"), Tensor{1.1587772726409356, 1.1194898000145155, 1.116531213652339}));
  bn.eval();
  CHECK(close(bn(x).value(),
              Tensor{{{{0.04381250037727149, 0.64201103854758}, {0.9588674571063961, 0.8453592313873963}},
                      {{-0.5634853224711035, 0.7322174763506161}, {1.7162077384177108, 1.9256994682080608}},
                      {{-2.9523394658447386, -0.5001211033577387}, {1.9221754367512585, 3.175306242241486}}},
                     {{{0.8373638536975844, 0.34011633939231717}, {-0.29648750027692333, -0.7730429323043096}},
                      {{1.9195118730139717, 1.2373583843486398}, {0.0059166968527964115, -1.1956469220371115}},
                      {{3.1845354336091054, 2.6364096725632526}, {0.583202655578467, -2.0094302750126887}}}}));
}

TEST_CASE("BatchNorm2d passes gradcheck in training and in evaluation mode", "[normalization]") {
  Generator gen(2);
  nn::BatchNorm2d bn(2, kF64);
  bn.param("weight").set_value(Tensor::randn({2}, gen));
  bn.param("bias").set_value(Tensor::randn({2}, gen));
  require_gradcheck([&](std::span<const NodeRef> x) { return bn(x[0]); }, {Tensor::randn({2, 2, 3, 3}, gen)});
  bn.eval();
  require_gradcheck([&](std::span<const NodeRef> x) { return bn(x[0]); }, {Tensor::randn({2, 2, 3, 3}, gen)});
}

TEST_CASE("BatchNorm's weight and bias get torch's gradients", "[normalization]") {
  // torch 1.13: y = F.batch_norm(XB, rm, rv, W, B, training=True); y.backward(GB): W.grad, B.grad
  nn::BatchNorm1d bn(3, kF64);
  bn.param("weight").set_value(Tensor{0.5, -1.0, 2.0});
  ModuleGraph y = bn(kXB);
  y.back(Tensor{{0.3, -1.0, 2.0}, {1.5, 0.25, -0.5}, {1.0, 0.0, -2.0}, {0.5, 0.5, 3.0}});
  CHECK(close(bn.param("weight").grad(), Tensor{-1.5564410925933796, -0.2499995918377343, -0.9667534934872647}));
  CHECK(close(bn.param("bias").grad(), Tensor{3.3, -0.25, 2.5}));
}

TEST_CASE("BatchNorm layers reject inputs of the wrong rank or channel count", "[normalization]") {
  // torch 1.13: ValueError: expected 2D or 3D input (got 4D input) / expected 4D input (got 3D input)
  nn::BatchNorm1d bn1(3);
  nn::BatchNorm2d bn2(3);
  CHECK_THAT(error_message<ShapeError>([&] { bn1(Tensor::zeros({2, 3, 4, 5}, DType::Float32)); }),
             StartsWith("BatchNorm1d") && Contains("2-d (N, C) or 3-d (N, C, L)") && Contains("(2,3,4,5)"));
  CHECK_THAT(error_message<ShapeError>([&] { bn2(Tensor::zeros({2, 3, 4}, DType::Float32)); }),
             StartsWith("BatchNorm2d") && Contains("4-d (N, C, H, W)") && Contains("(2,3,4)"));
  CHECK_THAT(error_message<ShapeError>([&] { bn1(Tensor::zeros({4, 2}, DType::Float32)); }),
             StartsWith("BatchNorm1d") && Contains("(4,2)") && Contains("num_features = 3"));
  CHECK(bn1.buffer("num_batches_tracked").item() == 0.0);  // failed calls count no batch
}

TEST_CASE("BatchNorm's buffers go into state_dict and load back in place", "[normalization]") {
  nn::BatchNorm1d bn(3, kF64);
  bn(kXB);
  bn(kXB2);
  const nn::StateDict saved = nn::state_dict(bn);
  CHECK(names_of(saved) ==
        std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  nn::BatchNorm1d fresh(3, kF64);
  const Tensor running_mean = fresh.buffer("running_mean");  // a handle kept across the load
  nn::load_state_dict(fresh, saved);
  CHECK(close(running_mean, kRunningMean2));
  CHECK(fresh.buffer("num_batches_tracked").item() == 2.0);
  fresh.eval();
  bn.eval();
  CHECK(close(fresh(kXB).value(), bn(kXB).value()));
}

TEST_CASE("Sequential lists its layers' buffers and switches them with train() and eval()", "[normalization]") {
  nn::Sequential net;
  net.add<nn::Linear>(4, 3);
  net.add<nn::BatchNorm1d>(3);
  net.add<nn::ReLU>();
  net.add<nn::Dropout>(0.5);
  CHECK(names_of(net.named_buffers()) ==
        std::vector<std::string>{"1.running_mean", "1.running_var", "1.num_batches_tracked"});
  CHECK(names_of(net.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  net.eval();
  CHECK_FALSE(net[1].is_training());
  CHECK_FALSE(net[3].is_training());
  Generator gen(3);
  const Tensor x = Tensor::randn({5, 4}, gen).to(DType::Float32);
  CHECK(allclose(net(x).value(), net(x).value(), 0.0, 0.0));  // deterministic in evaluation mode
  CHECK(net[1].buffer("num_batches_tracked").item() == 0.0);
  net.train();
  net(x);
  CHECK(net[1].buffer("num_batches_tracked").item() == 1.0);
}

// ---- Dropout -------------------------------------------------------------------------------

TEST_CASE("Dropout in training mode zeroes about p of its input and scales the rest", "[normalization]") {
  nn::manual_seed(0);
  nn::Dropout drop(0.25);
  CHECK(drop.p() == 0.25);
  const std::vector<double> y = drop(Tensor::ones({20000})).value().to_doubles();
  std::int64_t zeros = 0;
  for (double v : y) {
    REQUIRE((v == 0.0 || v == 1.0 / 0.75));
    zeros += v == 0.0 ? 1 : 0;
  }
  CHECK(std::abs(static_cast<double>(zeros) / 20000.0 - 0.25) < 0.02);
}

TEST_CASE("Dropout in evaluation mode is the identity", "[normalization]") {
  nn::Dropout drop(0.9);
  drop.eval();
  const Tensor x{1.0, -2.0, 3.0};
  CHECK(allclose(drop(x).value(), x, 0.0, 0.0));
}

TEST_CASE("Dropout masks repeat after nn::manual_seed, and follow a given generator", "[normalization]") {
  nn::Dropout drop(0.5);
  const Tensor x = Tensor::ones({64});
  nn::manual_seed(7);
  const Tensor a = drop(x).value();
  nn::manual_seed(7);
  CHECK(allclose(drop(x).value(), a, 0.0, 0.0));
  CHECK_FALSE(allclose(drop(x).value(), a, 0.0, 0.0));
  Generator g1(5), g2(5);
  nn::Dropout d1(0.5, &g1), d2(0.5, &g2);
  CHECK(allclose(d1(x).value(), d2(x).value(), 0.0, 0.0));
}

TEST_CASE("Dropout's gradient is the mask it applied", "[normalization]") {
  Generator gen(11);
  nn::Dropout drop(0.5, &gen);
  Lambda f({"x"}, [&](std::span<const NodeRef> x) { return drop(x[0]); });
  ModuleGraph y = f(Tensor::full({50}, 3.0));
  y.back(Tensor::ones({50}));
  // y = 3 * mask, so the mask is y / 3
  CHECK(allclose(y.grad(f.input("x")), op::div(y.value(), 3.0).value(), 0.0, 1e-15));
}

TEST_CASE("Dropout rejects p outside [0, 1]", "[normalization]") {
  // torch 1.13: ValueError: dropout probability has to be between 0 and 1, but got 1.5
  CHECK_THAT(error_message<UsageError>([] { nn::Dropout(1.5); }), Contains("Dropout") && Contains("[0, 1]"));
  CHECK_THROWS_AS(nn::Dropout(-0.5), UsageError);
}
