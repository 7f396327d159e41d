// Conv2d, MaxPool2d, AvgPool2d, Flatten, Embedding and LeakyReLU layers against torch 1.13.
//
// Reference values: Debian's /usr/bin/python3 with torch 1.13 in float64, inputs and weights
// from pattern(shape, a, b)[i] = sin(a * i + b) over the row-major elements, e.g.
//   conv = torch.nn.Conv2d(4, 6, (3,2), stride=(2,1), padding=(1,0), dilation=(1,2), groups=2)
//   conv.weight.copy_(pattern((6,2,3,2), 0.91, -0.3)); conv.bias.copy_(pattern((6,), 1.3, 0.5))
//   x = pattern((1,4,5,5), 0.37, 0.1); y = conv(x); y.backward(pattern(y.shape, 0.23, 0.7))
// (printed with "%.12g").
#include <zkynet/framework/gradcheck.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/embedding.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/init.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using namespace zkynet;

namespace {

Tensor pattern(const Shape& shape, double a, double b) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(a * static_cast<double>(i) + b);
  return Tensor::from_vector(v, shape);
}

Tensor values(const std::vector<double>& v, const Shape& shape) { return Tensor::from_vector(v, shape); }

constexpr double kRtol = 1e-9;
constexpr double kAtol = 1e-10;

}  // namespace

TEST_CASE("Conv2d has torch's parameter names and shapes", "[layers][conv]") {
  nn::Conv2d c(4, 6, {3, 2}, {.groups = 2});
  const auto named = c.named_parameters();
  REQUIRE(named.size() == 2);
  CHECK(named[0].first == "weight");
  CHECK(named[0].second.value().shape() == Shape{6, 2, 3, 2});
  CHECK(named[1].first == "bias");
  CHECK(named[1].second.value().shape() == Shape{6});
  CHECK(named[0].second.value().dtype() == DType::Float32);
  CHECK(c.functional_name() == "Conv2d");
  CHECK(c.kernel_size() == nn::IntPair{3, 2});
  CHECK(nn::Conv2d(3, 8, 5, {.bias = false}).named_parameters().size() == 1);
}

TEST_CASE("Conv2d matches torch's values and gradients with the same weights", "[layers][conv]") {
  nn::Conv2d conv(4, 6, {3, 2},
                  {.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 2, .dtype = DType::Float64});
  conv.param("weight").set_value(pattern({6, 2, 3, 2}, 0.91, -0.3));
  conv.param("bias").set_value(pattern({6}, 1.3, 0.5));
  const Tensor x = pattern({1, 4, 5, 5}, 0.37, 0.1);
  ModuleGraph y = conv(x);
  // torch: conv(x)
  const Tensor expected = values(
      {-0.484949128387, -0.140387132864, 0.288063600069, 1.87029492877,  1.07953202548,  0.207547524411,
       0.0598368922948, 0.504615835121,  0.945985389486, 1.27403366366,  1.72633363497,  2.0767881557,
       -0.295085412707, -0.455516681237, -0.422490195574, 2.38116477099, 2.1754258935,   1.80705903502,
       0.960625816781,  0.547764383476,  0.0663933581438, -1.15767382843, -0.342685043778, 0.52431230154,
       0.248657755469,  -0.165053642467, -0.550798056601, -0.966566136162, -1.41420065518, -1.79922462638,
       0.282411863947,  0.505780580169,  0.531899391055,  -2.46500748785, -2.38022933965, -2.10209319302,
       -1.74400341725,  -1.37986032966,  -0.903492324473, 1.08470341973,  0.386762044182, -0.438058464472,
       -0.895256240335, -0.519394364112, -0.147767602104, 0.852147311671, 1.24479449987,  1.55788464618,
       -0.823978817705, -0.941955080738, -0.84352208843,  2.22242381994,  2.08088874833,  1.7466352006},
      {1, 6, 3, 3});
  CHECK(allclose(y.value(), expected, kRtol, kAtol));

  y.back(pattern({1, 6, 3, 3}, 0.23, 0.7));
  // torch: conv.weight.grad, conv.bias.grad after y.backward(pattern(y.shape, 0.23, 0.7))
  const Tensor weight_grad = values(
      {1.4160967061,    1.09353190818,   0.787914569838,  0.977548953716,  0.846085085851,  1.36914015117,
       -1.38219859544,  -1.23381073523,  -0.673865600102, -0.97968319918,  -0.64124200705,  -1.30573500652,
       -0.338517925659, -1.24867115378,  -1.29603568776,  -0.173722779227, 0.64811671757,   -0.60359926271,
       0.0758133381465, 1.07914902394,   1.4783081682,    0.472221840465,  -0.917330491584, 0.312313318631,
       -1.09198167273,  0.1020121443,    0.45297880198,   -0.811217542235, -1.46662643868,  -0.791222172984,
       1.3096108807,    0.200576169505,  -0.741545121023, 0.527552939656,  1.51954291922,   1.00670965508,
       1.2348538608,    1.35265052478,   0.650887023178,  0.974453666712,  0.302632558919,  1.15233871364,
       -1.10237783252,  -1.39289496047,  -0.513628242629, -0.941887036483, -0.0584834395035, -0.993375479539,
       0.305022056828,  -0.79804642535,  -1.63071060798,  -0.705179690584, 1.23640297604,   0.0882127830805,
       -0.564268824792, 0.55524678946,   1.73456477323,   0.980679040514,  -1.43027929032,  -0.388920716919,
       -1.52689817112,  -0.588558510205, 0.910441884587,  -0.299277194144, -1.48643040674,  -1.23679831523,
       1.64263876146,   0.861272207125,  -1.14713615639,  0.00293286049466, 1.42790876318,  1.36574882106},
      {6, 2, 3, 2});
  CHECK(allclose(conv.param("weight").grad(), weight_grad, kRtol, kAtol));
  const Tensor bias_grad =
      values({7.48450098617, -3.90661385044, -3.74410149019, 7.4914153852, -3.42857730624, -4.20871345481}, {6});
  CHECK(allclose(conv.param("bias").grad(), bias_grad, kRtol, kAtol));
  // torch: x.grad (first and last rows of the 100 values)
  const Tensor input_grad = y.grad(conv.input("x"));
  REQUIRE(input_grad.shape() == Shape{1, 4, 5, 5});
  CHECK(allclose(input_grad.reshape({100}).slice(0, 0, 5),
                 values({1.56933594815, 1.70049966785, 3.17255051802, 1.33467161575, 1.16860209768}, {5}), kRtol,
                 kAtol));
  CHECK(allclose(input_grad.reshape({100}).slice(0, 95, 100),
                 values({0.62789926594, 0.259037396224, -0.682446034826, -0.768792279679, -0.938115630535}, {5}),
                 kRtol, kAtol));
}

TEST_CASE("Conv2d input gradients through the layer pass gradcheck", "[layers][conv]") {
  Generator gen(11);
  nn::Conv2d conv(4, 6, 3,
                  {.stride = 2, .padding = 1, .dilation = {1, 2}, .groups = 2, .dtype = DType::Float64, .generator = &gen});
  const auto r = gradcheck([&](std::span<const NodeRef> x) { return conv(x[0]); }, {Tensor::randn({2, 4, 6, 7}, gen)});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("Conv2d weight and bias gradients match finite differences of the loss", "[layers][conv]") {
  Generator gen(12);
  nn::Conv2d conv(2, 3, 2, {.padding = 1, .dtype = DType::Float64, .generator = &gen});
  const Tensor x = Tensor::randn({2, 2, 4, 3}, gen);
  const Tensor seed = Tensor::randn({2, 3, 5, 4}, gen);
  const auto loss = [&] {
    ModuleGraph y = conv(x);
    return op::sum(op::mult(y, seed)).value().item();
  };
  ModuleGraph y = conv(x);
  y.back(seed);
  for (const char* name : {"weight", "bias"}) {
    Parameter& p = conv.param(name);
    const Tensor analytic = p.grad();
    Tensor value = p.value().clone();
    double* v = value.data<double>();
    for (std::int64_t i = 0; i < value.numel(); ++i) {
      const double old = v[i];
      v[i] = old + 1e-6;
      p.set_value(value.clone());
      const double up = loss();
      v[i] = old - 1e-6;
      p.set_value(value.clone());
      const double down = loss();
      v[i] = old;
      p.set_value(value.clone());
      INFO(name << "[" << i << "]");
      CHECK(analytic.to_doubles()[static_cast<std::size_t>(i)] == Approx((up - down) / 2e-6).epsilon(1e-6).margin(1e-8));
    }
  }
}

TEST_CASE("Conv2d initializes weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), reproducibly",
          "[layers][conv]") {
  nn::manual_seed(7);
  nn::Conv2d a(16, 32, 3);
  nn::manual_seed(7);
  nn::Conv2d b(16, 32, 3);
  CHECK(allclose(a.param("weight").value(), b.param("weight").value(), 0.0, 0.0));
  CHECK(allclose(a.param("bias").value(), b.param("bias").value(), 0.0, 0.0));
  const double bound = 1.0 / std::sqrt(16.0 * 9.0);  // fan_in = in * kH * kW
  double max_abs = 0.0;
  for (double w : a.param("weight").value().to_doubles()) {
    REQUIRE(std::abs(w) <= bound);
    max_abs = std::max(max_abs, std::abs(w));
  }
  CHECK(max_abs > 0.99 * bound);  // 4608 draws reach the bound
  for (double w : a.param("bias").value().to_doubles()) REQUIRE(std::abs(w) <= bound);
  // groups divide fan_in
  nn::Conv2d g(16, 32, 3, {.groups = 4});
  for (double w : g.param("weight").value().to_doubles()) REQUIRE(std::abs(w) <= 1.0 / std::sqrt(4.0 * 9.0));
}

TEST_CASE("Conv2d refuses channel counts that groups do not divide", "[layers][conv]") {
  CHECK_THROWS_AS(nn::Conv2d(4, 6, 3, {.groups = 3}), ShapeError);
  CHECK_THROWS_AS(nn::Conv2d(6, 4, 3, {.groups = 3}), ShapeError);
  CHECK_THROWS_AS(nn::Conv2d(0, 4, 3), ShapeError);
  CHECK_THROWS_AS(nn::Conv2d(3, 4, 0), ShapeError);
}

TEST_CASE("a Conv2d fed the wrong channel count names the layer", "[layers][conv]") {
  nn::Sequential net;
  net.add<nn::Conv2d>(3, 4, 3);
  CHECK_THROWS_WITH(net(Tensor::zeros({1, 2, 8, 8}, DType::Float32)),
                    Catch::Matchers::StartsWith("Sequential.0 (Conv2d)"));
}

TEST_CASE("MaxPool2d matches torch's values and gradients", "[layers][pooling]") {
  nn::MaxPool2d pool(3, {.stride = 2, .padding = 1});
  ModuleGraph y = pool(pattern({1, 2, 5, 6}, 0.61, 0.2));
  // torch: nn.MaxPool2d(3, stride=2, padding=1)(pattern((1,2,5,6), 0.61, 0.2))
  const Tensor expected =
      values({0.72428717437, 0.988651762852, 0.896405741152, 0.96214816445, 0.96214816445, 0.995694105267,
              0.763014013714, 0.429220345224, 0.995694105267, 0.257509679504, 0.995921011655, 0.995921011655,
              0.962821290617, 0.962821290617, 0.897502562194, 0.988276040021, 0.722574432381, 0.897502562194},
             {1, 2, 3, 3});
  CHECK(allclose(y.value(), expected, kRtol, kAtol));
  y.back(pattern({1, 2, 3, 3}, 0.23, 0.7));
  const Tensor expected_grad = values(
      {0, 0.644217687238, 0.801619940884, 0.916803108772, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1.98249055828, 0,
       0, 0, 0, 0, 0, 0, 0.739005278059, 0, 1.52723143342, 0.873132979508, 0, 0, 0, 0, 0,
       0, 0.363099847204, 0, 0.0528277798773, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.834383149457, 0,
       0, 0, 0, 0, 0, 0, 0, 0, -1.69690911481, -0.845983701075, -0.945265512188, 0, 0, 0, 0},
      {1, 2, 5, 6});
  CHECK(allclose(y.grad(pool.input("x")), expected_grad, kRtol, kAtol));
}

TEST_CASE("MaxPool2d's stride defaults to the kernel size", "[layers][pooling]") {
  nn::MaxPool2d pool(2);
  ModuleGraph y = pool(Tensor::zeros({64, 16, 26, 26}, DType::Float32));
  CHECK(y.value().shape() == Shape{64, 16, 13, 13});
  CHECK(pool.named_parameters().empty());
  CHECK(nn::AvgPool2d({2, 3})(Tensor::zeros({1, 1, 6, 6})).value().shape() == Shape{1, 1, 3, 2});
}

TEST_CASE("AvgPool2d matches torch's values and gradients without counting the padding", "[layers][pooling]") {
  nn::AvgPool2d pool({3, 2}, {.stride = 2, .padding = 1, .count_include_pad = false});
  ModuleGraph y = pool(pattern({1, 2, 5, 6}, 0.61, 0.2));
  // torch: nn.AvgPool2d((3,2), stride=(2,2), padding=1, count_include_pad=False)(pattern((1,2,5,6), 0.61, 0.2))
  const Tensor expected = values(
      {-0.229758569655, -0.0477542439734, 0.208759314836, 0.239186411579, -0.232161189876, -0.195934248855,
       0.0534881473976, 0.223820090307, -0.110013856514, -0.238999347954, -0.130478368644, 0.0883786528027,
       -0.25526541902, -0.165957790106, 0.111560942364, 0.252080147408, -0.155902287733, -0.234281987882,
       -0.0735855433389, 0.137874741132, 0.0270993824113, -0.176918465278, -0.219254819211, -0.0502977766036},
      {1, 2, 3, 4});
  CHECK(allclose(y.value(), expected, kRtol, kAtol));
  y.back(pattern({1, 2, 3, 4}, 0.23, 0.7));
  const Tensor expected_grad = values(
      {0.322108843619,   0.200404985221,   0.200404985221,  0.229200777193,   0.229200777193,  0.491850407406,
       0.655038758109,   0.36061751905,    0.36061751905,   0.374722940444,   0.374722940444,  0.738185500092,
       0.33292991449,    0.160212533829,   0.160212533829,  0.145522163251,   0.145522163251,  0.246335092686,
       0.615908029715,   0.25098749563,    0.25098749563,   0.180802165266,   0.180802165266,  0.202188978595,
       0.282978115224,   0.090774961801,   0.090774961801,  0.035280002015,   0.035280002015,  -0.0441461140913,
       -0.156527179551,  -0.130332197589,  -0.130332197589, -0.175536572183,  -0.175536572183, -0.422991850538,
       -0.471615683614,  -0.296126001934,  -0.296126001934, -0.340848031735,  -0.340848031735, -0.735237093346,
       -0.315088504063,  -0.165793804346,  -0.165793804346, -0.165311459552,  -0.165311459552, -0.312245242808,
       -0.731222225175,  -0.336785292315,  -0.336785292315, -0.290221930331,  -0.290221930331, -0.456746777998,
       -0.416133721112,  -0.170991487969,  -0.170991487969, -0.124910470779,  -0.124910470779, -0.14450153519},
      {1, 2, 5, 6});
  CHECK(allclose(y.grad(pool.input("x")), expected_grad, kRtol, kAtol));
}

TEST_CASE("Flatten merges start_dim..end_dim as torch.nn.Flatten", "[layers][flatten]") {
  const Tensor x = Tensor::zeros({64, 32, 5, 5}, DType::Float32);
  CHECK(nn::Flatten()(x).value().shape() == Shape{64, 800});
  CHECK(nn::Flatten(0)(x).value().shape() == Shape{51200});
  CHECK(nn::Flatten(1, 2)(x).value().shape() == Shape{64, 160, 5});
  CHECK(nn::Flatten(-3, -2)(x).value().shape() == Shape{64, 160, 5});
  CHECK(nn::Flatten(2, 2)(x).value().shape() == Shape{64, 32, 5, 5});
  CHECK_THROWS_AS(nn::Flatten(4)(x), IndexError);
  CHECK_THROWS_AS(nn::Flatten(2, 1)(x), IndexError);
}

TEST_CASE("Flatten keeps the row-major order and passes gradients back in the input's shape", "[layers][flatten]") {
  nn::Flatten flat;
  const Tensor x = pattern({2, 3, 2, 2}, 0.5, 0.0);
  ModuleGraph y = flat(x);
  CHECK(allclose(y.value(), x.reshape({2, 12}), 0.0, 0.0));
  const auto r = gradcheck([&](std::span<const NodeRef> in) { return flat(in[0]); }, {x});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("Embedding matches torch's lookup and scatter-added weight gradient", "[layers][embedding]") {
  nn::Embedding emb(5, 3, {.dtype = DType::Float64});
  emb.param("weight").set_value(pattern({5, 3}, 0.53, 0.4));
  const Tensor idx = Tensor::from_vector(std::vector<std::int64_t>{0, 3, 3, 4, 1, 0}, {2, 3});
  ModuleGraph y = emb(idx);
  // torch: emb(torch.tensor([[0, 3, 3], [4, 1, 0]])) with emb.weight = pattern((5,3), 0.53, 0.4)
  const Tensor expected = values({0.389418342309, 0.801619940884, 0.993868363412, -0.89711052285, -0.550685542598,
                                  -0.0531602367174, -0.89711052285, -0.550685542598, -0.0531602367174,
                                  0.458951486378, 0.845133411657, 0.999422679835, 0.913413361341, 0.582330649524,
                                  0.0914646422324, 0.389418342309, 0.801619940884, 0.993868363412},
                                 {2, 3, 3});
  CHECK(allclose(y.value(), expected, kRtol, kAtol));
  y.back(pattern({2, 3, 3}, 0.23, 0.7));
  const Tensor expected_grad =
      values({-0.201766013838, -0.143645571304, -0.0779597173029, -0.313054359103, -0.521328790354, -0.702146288731,
              0, 0, 0, 1.85683379432, 1.73779502153, 1.52723143342, 0.363099847204, 0.14112000806,
              -0.0882922281826},
             {5, 3});
  CHECK(allclose(emb.param("weight").grad(), expected_grad, kRtol, kAtol));
}

TEST_CASE("Embedding initializes its weight from N(0, 1), as torch", "[layers][embedding]") {
  Generator gen(21);
  nn::Embedding emb(1000, 100, {.generator = &gen});
  const Tensor w = emb.param("weight").value();
  CHECK(w.shape() == Shape{1000, 100});
  CHECK(w.dtype() == DType::Float32);
  double sum = 0.0, sq = 0.0;
  for (double v : w.to_doubles()) {
    sum += v;
    sq += v * v;
  }
  const double n = static_cast<double>(w.numel());
  const double mean = sum / n;
  CHECK(std::abs(mean) < 0.01);                             // 0 +- 3.3 standard errors
  CHECK(std::sqrt(sq / n - mean * mean) == Approx(1.0).margin(0.01));
  CHECK(emb.named_parameters().size() == 1);
  CHECK(emb.named_parameters()[0].first == "weight");
}

TEST_CASE("LeakyReLU matches torch's values and gradients, 0 included", "[layers][activation]") {
  nn::LeakyReLU act(0.2);
  ModuleGraph y = act(Tensor{-2.0, -0.5, 0.0, 0.25, 3.0});
  // torch: nn.LeakyReLU(0.2)(x), x.grad after backward(ones)
  CHECK(allclose(y.value(), Tensor{-0.4, -0.1, 0.0, 0.25, 3.0}, 1e-12, 0.0));
  y.back(Tensor::ones({5}));
  CHECK(allclose(y.grad(act.input("x")), Tensor{0.2, 0.2, 0.2, 1.0, 1.0}, 1e-12, 0.0));
  ModuleGraph f = nn::LeakyReLU()(Tensor::full({3}, -1.0, DType::Float32));
  CHECK(f.value().dtype() == DType::Float32);
  CHECK(f.value().to_doubles()[0] == Approx(-0.01));
}

TEST_CASE("the benchmark CNN maps (64,1,28,28) to (64,10) and passes gradcheck at a small size", "[layers]") {
  nn::manual_seed(0);
  nn::Sequential cnn;
  cnn.add<nn::Conv2d>(1, 16, 3);
  cnn.add<nn::ReLU>();
  cnn.add<nn::MaxPool2d>(2);
  cnn.add<nn::Conv2d>(16, 32, 3);
  cnn.add<nn::ReLU>();
  cnn.add<nn::MaxPool2d>(2);
  cnn.add<nn::Flatten>();
  cnn.add<nn::Linear>(800, 10);
  Generator gen(3);
  CHECK(cnn(Tensor::randn({64, 1, 28, 28}, gen, DType::Float32)).value().shape() == Shape{64, 10});

  nn::Sequential small;
  small.add<nn::Conv2d>(2, 3, 3, nn::Conv2dOptions{.padding = 1, .dtype = DType::Float64, .generator = &gen});
  small.add<nn::Tanh>();
  small.add<nn::AvgPool2d>(2);
  small.add<nn::Flatten>();
  small.add<nn::Linear>(12, 2, nn::LinearOptions{.dtype = DType::Float64, .generator = &gen});
  const auto r = gradcheck([&](std::span<const NodeRef> x) { return small(x[0]); }, {Tensor::randn({2, 2, 4, 4}, gen)});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("pooling layers refuse a given stride of 0 (unset means the kernel size), as torch") {
  CHECK_THROWS_AS(nn::MaxPool2d(2, {.stride = 0})(Tensor::ones({1, 1, 4, 4})), UsageError);
  CHECK_THROWS_AS(nn::AvgPool2d(2, {.stride = 0})(Tensor::ones({1, 1, 4, 4})), UsageError);
  CHECK(nn::MaxPool2d(2)(Tensor::ones({1, 1, 4, 4})).value().shape() == Shape{1, 1, 2, 2});
}
