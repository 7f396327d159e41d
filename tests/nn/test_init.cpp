// Initializers against torch.nn.init's rules (torch 1.13, Debian's /usr/bin/python3):
// fans from torch.nn.init._calculate_fan_in_and_fan_out, gains from calculate_gain, and the
// statistics of each distribution on large tensors.
#include <zkynet/framework/error.h>
#include <zkynet/nn/init.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

using namespace zkynet;
using namespace zkynet::nn::init;

namespace {

struct Stats {
  double mean = 0.0, std = 0.0, min = 0.0, max = 0.0;
};

Stats stats(const Tensor& t) {
  Stats s;
  const auto v = t.to_doubles();
  double sum = 0.0, sq = 0.0;
  s.min = s.max = v.front();
  for (double x : v) {
    sum += x;
    sq += x * x;
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
  }
  const double n = static_cast<double>(v.size());
  s.mean = sum / n;
  s.std = std::sqrt(sq / n - s.mean * s.mean);
  return s;
}

// Mean within 5 standard errors of 0, std within 1.5 %, for ~150k draws.
void check_moments(const Tensor& t, double std) {
  const Stats s = stats(t);
  INFO("mean " << s.mean << ", std " << s.std << " (expected " << std << ")");
  CHECK(std::abs(s.mean) < 5.0 * std / std::sqrt(static_cast<double>(t.numel())));
  CHECK(s.std == Approx(std).epsilon(0.015));
}

// Every value in [-bound, bound], the extremes within 1 % of the bounds.
void check_uniform_bounds(const Tensor& t, double bound) {
  const Stats s = stats(t);
  INFO("min " << s.min << ", max " << s.max << ", bound " << bound);
  CHECK(s.max <= bound);
  CHECK(s.min >= -bound);
  CHECK(s.max > 0.99 * bound);
  CHECK(s.min < -0.99 * bound);
}

}  // namespace

TEST_CASE("calculate_fans matches torch's _calculate_fan_in_and_fan_out", "[layers][init]") {
  // torch: _calculate_fan_in_and_fan_out(torch.empty(shape)) -> (fan_in, fan_out)
  const auto fans = [](const Shape& s) {
    const Fans f = calculate_fans(s);
    return std::pair{f.fan_in, f.fan_out};
  };
  CHECK(fans({3, 5}) == std::pair<std::int64_t, std::int64_t>{5, 3});
  CHECK(fans({16, 3, 3, 3}) == std::pair<std::int64_t, std::int64_t>{27, 144});
  CHECK(fans({8, 4, 2, 3, 5}) == std::pair<std::int64_t, std::int64_t>{120, 240});
  CHECK(fans({10, 1}) == std::pair<std::int64_t, std::int64_t>{1, 10});
  CHECK(fans({32, 16, 1, 1}) == std::pair<std::int64_t, std::int64_t>{16, 32});
}

TEST_CASE("fans of tensors with fewer than 2 dimensions are refused, as in torch", "[layers][init]") {
  CHECK_THROWS_AS(calculate_fans({5}), ShapeError);
  CHECK_THROWS_AS(calculate_fans({}), ShapeError);
  Generator gen(0);
  CHECK_THROWS_AS(kaiming_normal({5}, gen), ShapeError);
  CHECK_THROWS_AS(xavier_uniform({5}, gen), ShapeError);
}

TEST_CASE("calculate_gain matches torch.nn.init.calculate_gain", "[layers][init]") {
  // torch: calculate_gain(name, param)
  CHECK(calculate_gain(Nonlinearity::Linear) == 1.0);
  CHECK(calculate_gain(Nonlinearity::Sigmoid) == 1.0);
  CHECK(calculate_gain(Nonlinearity::Tanh) == Approx(1.6666666666666667).epsilon(1e-15));
  CHECK(calculate_gain(Nonlinearity::ReLU) == Approx(1.4142135623730951).epsilon(1e-15));
  CHECK(calculate_gain(Nonlinearity::LeakyReLU) == Approx(1.4141428569978354).epsilon(1e-15));
  CHECK(calculate_gain(Nonlinearity::LeakyReLU, 0.2) == Approx(1.3867504905630728).epsilon(1e-15));
  CHECK(calculate_gain(Nonlinearity::LeakyReLU, std::sqrt(5.0)) == Approx(0.5773502691896257).epsilon(1e-15));
  CHECK(calculate_gain(Nonlinearity::SELU) == 0.75);
}

TEST_CASE("kaiming_uniform with torch's defaults draws U(-sqrt(6/fan_in), sqrt(6/fan_in))", "[layers][init]") {
  Generator gen(1);
  const Shape shape{256, 64, 3, 3};  // fan_in 576
  const Tensor w = kaiming_uniform(shape, gen, KaimingOptions{});
  CHECK(w.dtype() == DType::Float32);
  CHECK(w.shape() == shape);
  const double bound = std::sqrt(6.0 / 576.0);  // gain sqrt(2) (leaky_relu, a = 0), bound sqrt(3) gain / sqrt(fan)
  check_uniform_bounds(w, bound);
  check_moments(w, bound / std::sqrt(3.0));
}

TEST_CASE("kaiming_uniform with a = sqrt(5) is torch's Linear and Conv2d default U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
          "[layers][init]") {
  Generator gen(2);
  const Tensor w = kaiming_uniform({128, 32, 5, 5}, gen, {.a = std::sqrt(5.0)});  // fan_in 800
  check_uniform_bounds(w, 1.0 / std::sqrt(800.0));
  // For 2-d shapes it draws the same values as the dtype overload (nn.Linear's default).
  Generator g1(9), g2(9);
  CHECK(allclose(kaiming_uniform({30, 40}, g1, {.a = std::sqrt(5.0), .dtype = DType::Float64}),
                 kaiming_uniform({30, 40}, g2, DType::Float64), 1e-12, 0.0));
}

TEST_CASE("the dtype overload of kaiming_uniform keeps its last-dimension fan", "[layers][init]") {
  Generator gen(3);
  const Tensor w = kaiming_uniform({300, 400}, gen);
  CHECK(w.dtype() == DType::Float32);
  check_uniform_bounds(w, 1.0 / std::sqrt(400.0));
  Generator a(4), b(4);
  CHECK(allclose(kaiming_uniform({3, 7}, a, DType::Float64), uniform({3, 7}, 1.0 / std::sqrt(7.0), b, DType::Float64),
                 0.0, 0.0));
}

TEST_CASE("kaiming_uniform in fan_out mode for ReLU uses sqrt(6/fan_out)", "[layers][init]") {
  Generator gen(5);
  const Tensor w = kaiming_uniform({64, 256, 3, 3}, gen,
                                   {.mode = FanMode::FanOut, .nonlinearity = Nonlinearity::ReLU,
                                    .dtype = DType::Float64});  // fan_out 576
  CHECK(w.dtype() == DType::Float64);
  check_uniform_bounds(w, std::sqrt(6.0 / 576.0));
}

TEST_CASE("kaiming_normal draws N(0, gain^2 / fan)", "[layers][init]") {
  Generator gen(6);
  check_moments(kaiming_normal({256, 64, 3, 3}, gen), std::sqrt(2.0 / 576.0));
  check_moments(kaiming_normal({64, 256, 3, 3}, gen, {.mode = FanMode::FanOut, .nonlinearity = Nonlinearity::Tanh}),
                (5.0 / 3.0) / std::sqrt(576.0));
  check_moments(kaiming_normal({400, 400}, gen, {.a = 0.2}), std::sqrt(2.0 / 1.04) / 20.0);
}

TEST_CASE("xavier_uniform draws U(-a, a) with a = gain sqrt(6 / (fan_in + fan_out))", "[layers][init]") {
  Generator gen(7);
  check_uniform_bounds(xavier_uniform({300, 500}, gen), std::sqrt(6.0 / 800.0));
  const double gain = calculate_gain(Nonlinearity::Tanh);
  const Tensor w = xavier_uniform({64, 32, 3, 3}, gen, gain, DType::Float64);  // fans 288, 576
  CHECK(w.dtype() == DType::Float64);
  check_uniform_bounds(w, gain * std::sqrt(6.0 / (288.0 + 576.0)));
}

TEST_CASE("xavier_normal draws N(0, gain^2 2 / (fan_in + fan_out))", "[layers][init]") {
  Generator gen(8);
  check_moments(xavier_normal({300, 500}, gen), std::sqrt(2.0 / 800.0));
  check_moments(xavier_normal({64, 32, 3, 3}, gen, 0.5), 0.5 * std::sqrt(2.0 / 864.0));
}

TEST_CASE("initializers are reproducible from a seeded Generator", "[layers][init]") {
  const auto draw = [](std::uint64_t seed) {
    Generator gen(seed);
    return std::vector<Tensor>{kaiming_uniform({8, 4, 3, 3}, gen, {.a = 1.0}), kaiming_normal({8, 4, 3, 3}, gen),
                               xavier_uniform({8, 4}, gen), xavier_normal({8, 4}, gen), normal({5}, 1.0, 2.0, gen)};
  };
  const auto a = draw(42), b = draw(42), c = draw(43);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(allclose(a[i], b[i], 0.0, 0.0));
    CHECK_FALSE(allclose(a[i], c[i], 0.0, 0.0));
  }
}

TEST_CASE("normal draws N(mean, std^2) and equals randn for N(0, 1)", "[layers][init]") {
  Generator gen(10);
  const Tensor t = normal({400, 400}, 3.0, 0.5, gen, DType::Float64);
  const Stats s = stats(t);
  CHECK(s.mean == Approx(3.0).margin(0.005));
  CHECK(s.std == Approx(0.5).epsilon(0.015));
  Generator a(11), b(11);
  CHECK(allclose(normal({10}, 0.0, 1.0, a), Tensor::randn({10}, b, DType::Float32), 0.0, 0.0));
  CHECK_THROWS_AS(normal({3}, 0.0, -1.0, gen), UsageError);
}
