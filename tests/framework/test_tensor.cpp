#include <zkynet/framework/tensor.h>

#include <catch2/catch.hpp>

#include <sstream>

using namespace zkynet;

TEST_CASE("nested initializer lists give float64 tensors of the nested shape") {
  Tensor t = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.dtype() == DType::Float64);
  CHECK(t.at({1, 2}) == 6.0);
  CHECK(t.strides() == Shape{3, 1});
  CHECK_THROWS_AS((Tensor{{1.0, 2.0}, {3.0}}), ShapeError);
}

TEST_CASE("scalars are 0-d tensors") {
  Tensor s = 3.5;
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 3.5);
  CHECK(Tensor::scalar(2, DType::Int64).dtype() == DType::Int64);
}

TEST_CASE("buffers with a shape: copied from a vector or wrapped without a copy") {
  Tensor v = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  CHECK(v.dtype() == DType::Float32);
  CHECK(v.at({2, 1}) == 6.0);
  CHECK_THROWS_AS(Tensor::from_vector<double>({1, 2, 3}, {2, 2}), ShapeError);

  std::vector<std::int64_t> owned{7, 8, 9};
  bool released = false;
  {
    Tensor w = Tensor::from_blob(owned.data(), {3}, DType::Int64, [&](void*) { released = true; });
    CHECK(w.data<std::int64_t>() == owned.data());
    owned[1] = 42;
    CHECK(w.at({1}) == 42.0);
  }
  CHECK(released);
}

TEST_CASE("seeded generators give reproducible samples") {
  Generator g1(7), g2(7), g3(8);
  Tensor a = Tensor::randn({100}, g1, DType::Float32);
  Tensor b = Tensor::randn({100}, g2, DType::Float32);
  Tensor c = Tensor::randn({100}, g3, DType::Float32);
  CHECK(allclose(a, b, 0.0, 0.0));
  CHECK_FALSE(allclose(a, c));
  Generator g4(1);
  Tensor u = Tensor::uniform({1000}, -2.0, 3.0, g4);
  for (double x : u.to_doubles()) {
    REQUIRE(x >= -2.0);
    REQUIRE(x < 3.0);
  }
}

TEST_CASE("reshape, transpose and slice are views of the same storage") {
  Tensor t = Tensor::arange(12).reshape({3, 4});
  Tensor tr = t.transpose(0, 1);
  CHECK(tr.shares_storage_with(t));
  CHECK(tr.shape() == Shape{4, 3});
  CHECK(tr.at({3, 2}) == 11.0);
  CHECK_FALSE(tr.is_contiguous());

  Tensor s = t.slice(1, 1, 4, 2);  // columns 1 and 3
  CHECK(s.shares_storage_with(t));
  CHECK(s.shape() == Shape{3, 2});
  CHECK(s.at({2, 1}) == 11.0);

  Tensor r = t.reshape({2, -1});
  CHECK(r.shares_storage_with(t));
  CHECK(r.shape() == Shape{2, 6});
  s.fill_(-1.0);
  CHECK(t.at({0, 1}) == -1.0);
  CHECK(t.at({0, 0}) == 0.0);
}

TEST_CASE("reshape of a non-contiguous view copies") {
  Tensor t = Tensor::arange(6).reshape({2, 3});
  Tensor flat = t.transpose(0, 1).reshape({6});
  CHECK_FALSE(flat.shares_storage_with(t));
  CHECK(flat.to_doubles() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK_THROWS_AS(t.reshape({4, 2}), ShapeError);
}

TEST_CASE("expand broadcasts with zero strides") {
  Tensor row = Tensor{1.0, 2.0, 3.0};
  Tensor e = row.expand({2, 3});
  CHECK(e.strides() == Shape{0, 1});
  CHECK(e.contiguous().to_doubles() == std::vector<double>{1, 2, 3, 1, 2, 3});
  CHECK_THROWS_AS(row.expand({2, 4}), ShapeError);
}

TEST_CASE("dtype conversion and typed access") {
  Tensor t = Tensor{1.5, -2.5};
  Tensor f = t.to(DType::Float32);
  CHECK(f.dtype() == DType::Float32);
  CHECK(f.data<float>()[1] == -2.5f);
  CHECK_THROWS_AS(t.data<float>(), TypeError);
  CHECK(t.to(DType::Int64).to_doubles() == std::vector<double>{1, -2});
}

TEST_CASE("printing shows values, shape and dtype") {
  std::ostringstream os;
  os << Tensor{{1.0, 2.0}, {3.0, 4.0}};
  CHECK(os.str() == "tensor([[1, 2],\n        [3, 4]], shape=(2,2), dtype=float64)");
  CHECK(Tensor::arange(100).str().find("...") != std::string::npos);
}

TEST_CASE("in-place helpers check shapes") {
  Tensor a = Tensor::ones({2, 2});
  a.add_(Tensor{{1.0, 2.0}, {3.0, 4.0}});
  CHECK(a.to_doubles() == std::vector<double>{2, 3, 4, 5});
  CHECK_THROWS_AS(a.add_(Tensor{1.0, 2.0}), ShapeError);
  CHECK_THROWS_AS(a.copy_(Tensor::zeros({3})), ShapeError);
}
