// Shape arithmetic never wraps: negative sizes and element or byte counts beyond int64 are
// refused with a ShapeError instead of a too small allocation that later reads garbage.
#include <zkynet/framework/tensor.h>

#include <catch2/catch.hpp>
#include "testing/error_message.h"

#include <cstdint>

using namespace zkynet;
using namespace zkynet::testing;
using Catch::Matchers::Contains;

namespace {
constexpr std::int64_t k2to62 = std::int64_t{1} << 62;
}

TEST_CASE("a shape whose element count overflows int64 is refused") {
  CHECK_THAT(error_message<ShapeError>([] { Tensor::empty({k2to62, 4}); }), Contains("(4611686018427387904,4)"));
  CHECK_THROWS_AS(shape_numel({k2to62, 4}), ShapeError);
}

TEST_CASE("a shape whose byte count overflows int64 is refused") {
  // 2^61 elements fit int64; 2^64 bytes of float64 do not.
  CHECK_THAT(error_message<ShapeError>([] { Tensor::zeros({std::int64_t{1} << 61}, DType::Float64); }),
             Contains("2^63 bytes"));
}

TEST_CASE("factories refuse negative sizes") {
  CHECK_THAT(error_message<ShapeError>([] { Tensor::empty({2, -3}); }), Contains("negative"));
  CHECK_THROWS_AS(Tensor::arange(-1), ShapeError);
}

TEST_CASE("reshape refuses negative sizes other than one -1") {
  const Tensor t = Tensor::zeros({6});
  CHECK_THAT(error_message<ShapeError>([&] { t.reshape({-2, -3}); }), Contains("negative size -2"));
  CHECK_THAT(error_message<ShapeError>([&] { t.reshape({-1, -1}); }), Contains("more than one -1"));
  CHECK(t.reshape({-1, 2}).shape() == Shape{3, 2});
}

TEST_CASE("reshape of an empty tensor cannot infer a -1 next to a 0") {
  const Tensor t = Tensor::zeros({0, 4});
  CHECK_THAT(error_message<ShapeError>([&] { t.reshape({-1, 0}); }), Contains("cannot infer"));
  CHECK(t.reshape({-1, 2}).shape() == Shape{0, 2});
}

TEST_CASE("reshape refuses sizes whose product overflows int64") {
  const Tensor t = Tensor::zeros({4});
  CHECK_THROWS_AS(t.reshape({k2to62, 4, 0}), ShapeError);
}

TEST_CASE("empty tensors are contiguous whatever their strides") {
  CHECK(Tensor::zeros({5, 0}).is_contiguous());
  CHECK(Tensor::zeros({0, 5}).transpose(0, 1).is_contiguous());
}
