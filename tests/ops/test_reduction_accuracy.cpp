// Reductions at training sizes: float32 sums of up to 1e8 elements agree with a long double
// reference to 1e-6, on any axis, contiguous or strided (the contract of kernels/accumulate.h).
#include <zkynet/framework/module.h>
#include <zkynet/framework/parallel.h>
#include <zkynet/ops/kernels.h>
#include <zkynet/ops/loss.h>
#include <zkynet/ops/ops.h>
#include <zkynet/ops/select.h>

#include <catch2/catch.hpp>
#include "ops/helpers.h"

#include <cmath>
#include <cstdint>
#include <limits>

using namespace zkynet;
using namespace zkynet::testing;

namespace {

// Deterministic values in [-1, 1) + 0.01: mixed signs, and a total that does not cancel to 0.
Tensor mixed_signs(const Shape& shape, std::uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::Float32);
  float* p = t.data<float>();
  std::uint64_t s = seed;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    s += 0x9E3779B97F4A7C15ull;  // splitmix64
    std::uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    p[i] = static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0 + 0.01);
  }
  return t;
}

// Sum of t[offset + i * stride] for i < n, in long double.
long double reference_sum(const float* p, std::int64_t n, std::int64_t stride) {
  long double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += p[i * stride];
  return s;
}

double relative_error(double got, long double want) {
  return static_cast<double>(std::fabs((static_cast<long double>(got) - want) / want));
}

constexpr std::int64_t kLarge = 100'000'000;

}  // namespace

TEST_CASE("float32 sum of 3e7 ones is exact (sequential float32 stalls at 2^24)") {
  const Tensor ones = Tensor::ones({30'000'000}, DType::Float32);
  CHECK(op::sum(ones).value().item() == 30'000'000.0);
  CHECK(op::mean(ones).value().item() == 1.0);
}

TEST_CASE("float32 sum of 1e8 mixed-sign elements is within 1e-6 of the exact total") {
  const Tensor x = mixed_signs({kLarge}, 1);
  const long double want = reference_sum(x.data<float>(), kLarge, 1);
  CHECK(relative_error(op::sum(x).value().item(), want) <= 1e-6);
  CHECK(relative_error(op::mean(x).value().item(), want / kLarge) <= 1e-6);
}

TEST_CASE("float32 sums of 1e8 elements along either axis, contiguous or strided, are within 1e-6") {
  constexpr std::int64_t kCols = 4;
  constexpr std::int64_t kRows = kLarge / kCols;
  const Tensor m = mixed_signs({kRows, kCols}, 2);
  const float* p = m.data<float>();
  SECTION("down the rows (a column of accumulators)") {
    const Tensor s = kernels::sum(m, {0});
    for (std::int64_t j = 0; j < kCols; ++j) {
      CHECK(relative_error(s.at({j}), reference_sum(p + j, kRows, kCols)) <= 1e-6);
    }
  }
  SECTION("along a strided axis of a transposed view") {
    const Tensor s = kernels::sum(m.transpose(0, 1), {1});
    for (std::int64_t j = 0; j < kCols; ++j) {
      CHECK(relative_error(s.at({j}), reference_sum(p + j, kRows, kCols)) <= 1e-6);
    }
  }
  SECTION("along the contiguous axis") {
    const Tensor wide = m.reshape({kCols, kRows});
    const Tensor s = kernels::sum(wide, {-1});
    for (std::int64_t j = 0; j < kCols; ++j) {
      CHECK(relative_error(s.at({j}), reference_sum(p + j * kRows, kRows, 1)) <= 1e-6);
    }
  }
  SECTION("over every other row of a sliced view") {
    const Tensor s = kernels::sum(m.slice(0, 0, kRows, 2), {0, 1});
    long double want = 0;
    for (std::int64_t j = 0; j < kCols; ++j) want += reference_sum(p + j, kRows / 2, 2 * kCols);
    CHECK(relative_error(s.item(), want) <= 1e-6);
  }
}

TEST_CASE("mse_loss over an image batch (64,3,256,256) is within 1e-6 of the exact mean") {
  const Tensor pred = mixed_signs({64, 3, 256, 256}, 3);
  const Tensor target = mixed_signs({64, 3, 256, 256}, 4);
  const float* a = pred.data<float>();
  const float* b = target.data<float>();
  long double want = 0;
  for (std::int64_t i = 0; i < pred.numel(); ++i) {
    const float d = a[i] - b[i];
    want += static_cast<long double>(d * d);
  }
  want /= pred.numel();
  CHECK(relative_error(op::mse_loss(pred, target).value().item(), want) <= 1e-6);
}

TEST_CASE("broadcasting's backward (sum_to) adds 2^25 float32 gradients exactly") {
  constexpr std::int64_t n = std::int64_t{1} << 25;
  const std::vector<Tensor> g = vjp([](auto in) { return op::add(in[0], in[1]); },
                                    {Tensor::zeros({n}, DType::Float32), Tensor::zeros({1}, DType::Float32)},
                                    Tensor::ones({n}, DType::Float32));
  CHECK(g[1].item() == static_cast<double>(n));
}

TEST_CASE("linear's bias gradient sums 2^25 float32 rows exactly") {
  constexpr std::int64_t n = std::int64_t{1} << 25;
  const Tensor x = Tensor::zeros({n, 1}, DType::Float32);
  const std::vector<Tensor> g = vjp([](auto in) { return op::linear(in[0], in[1], in[2]); },
                                    {x, Tensor::zeros({1, 1}, DType::Float32), Tensor::zeros({1}, DType::Float32)},
                                    Tensor::ones({n, 1}, DType::Float32));
  CHECK(g[2].item() == static_cast<double>(n));
}

TEST_CASE("float32 variance of 2^25 offset elements is within 1e-6 of the exact value") {
  constexpr std::int64_t n = std::int64_t{1} << 25;
  Tensor x = mixed_signs({n}, 5);
  const float* p = x.data<float>();
  const long double mean = reference_sum(p, n, 1) / n;
  long double ss = 0;
  for (std::int64_t i = 0; i < n; ++i) ss += (p[i] - mean) * (p[i] - mean);
  CHECK(relative_error(op::var(x).value().item(), ss / (n - 1)) <= 1e-6);
}

TEST_CASE("a sum does not depend on the number of threads") {
  const Tensor x = mixed_signs({10'000'000}, 6);
  const int before = num_threads();
  set_num_threads(1);
  const double one = kernels::sum(x).item();
  set_num_threads(2);
  const double two = kernels::sum(x).item();
  set_num_threads(before);
  CHECK(one == two);
}

TEST_CASE("int64 sums are exact beyond 2^53") {
  const Tensor x = Tensor::from_vector<std::int64_t>({std::int64_t{1} << 60, 1, -(std::int64_t{1} << 60), 3}, {4});
  CHECK(kernels::sum(x).data<std::int64_t>()[0] == 4);
}

TEST_CASE("the mean of an empty tensor is NaN and its sum is 0, as in PyTorch") {
  const Tensor empty = Tensor::zeros({0, 3}, DType::Float32);
  CHECK(std::isnan(op::mean(empty).value().item()));
  CHECK(op::sum(empty).value().item() == 0.0);
  const Tensor columns = op::mean(empty, {0}).value();
  CHECK(columns.shape() == Shape{3});
  CHECK(std::isnan(columns.at({1})));
}
