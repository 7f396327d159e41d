// Pinned host memory and non-blocking copies on a GPU (issue 13 §2): values survive the round
// trip, a non-blocking copy equals a blocking one, kernels see a copy only once it has landed,
// and a pinned buffer is not handed out again while a queued copy still reads it. Part of the
// CUDA suite (skipped without a device); the pool's logic is also tested on the CPU.
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/framework/tensor.h>

#include <catch2/catch.hpp>

#include "spin.h"

#include <vector>

using namespace zkynet;

namespace {

const Device kGpu = Device::cuda();

}  // namespace

TEST_CASE("pin_memory copies the values into pinned memory, views included", "[cuda][pinned]") {
  Generator gen(1);
  for (DType dtype : {DType::Float32, DType::Float64, DType::Int64}) {
    const Tensor x = Tensor::uniform({5, 7}, -3.0, 3.0, gen, dtype);
    const Tensor view = x.transpose(0, 1).slice(0, 1, 6, 2);  // not contiguous
    const Tensor p = view.pin_memory();
    CHECK(p.is_pinned());
    CHECK_FALSE(x.is_pinned());
    CHECK(p.shape() == view.shape());
    CHECK(p.to_doubles() == view.to_doubles());
    CHECK(p.pin_memory().shares_storage_with(p));  // pinned already: itself
    CHECK(p.slice(0, 1, 2).is_pinned());          // a view of pinned storage is pinned
  }
}

TEST_CASE("empty_pinned gives pinned memory of the shape and dtype asked", "[cuda][pinned]") {
  const Tensor t = Tensor::empty_pinned({3, 4}, DType::Float32);
  CHECK(t.is_pinned());
  CHECK(t.shape() == Shape{3, 4});
  CHECK(t.dtype() == DType::Float32);
  CHECK(Tensor::empty_pinned({0}).is_pinned());
}

TEST_CASE("pin_memory of a CUDA tensor is refused, naming its device", "[cuda][pinned]") {
  const Tensor g = Tensor::ones({2}).to(kGpu);
  CHECK_THROWS_AS(g.pin_memory(), UsageError);
  CHECK_FALSE(g.is_pinned());
}

TEST_CASE("non-blocking copies host -> device -> host equal the blocking ones", "[cuda][pinned]") {
  Generator gen(2);
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const Tensor x = Tensor::randn({64, 33}, gen, dtype);
    for (const Tensor& src : {x, x.pin_memory()}) {  // from pageable and from pinned memory
      const Tensor d_async = src.to(kGpu, true);
      const Tensor d_sync = src.to(kGpu);
      CHECK(d_async.device() == kGpu);
      const Tensor back = d_async.to(Device::cpu(), true);
      CHECK(back.is_pinned());  // as PyTorch: a non-blocking copy to the host lands in pinned memory
      cuda::synchronize();      // the host may read it only now
      CHECK(back.to_doubles() == x.to_doubles());
      CHECK(d_sync.cpu().to_doubles() == x.to_doubles());
    }
  }
}

TEST_CASE("kernels queued after a non-blocking copy read the copied values", "[cuda][pinned]") {
  const Tensor x = Tensor::arange(1 << 16, DType::Float32).pin_memory();
  zkynet_test::spin(cuda::stream(), 20000);  // the copy stream waits behind this
  Tensor y = x.to(kGpu, true);
  y.add_(y);  // on the compute stream: must wait for the copy
  const std::vector<double> got = y.cpu().to_doubles();
  REQUIRE(got.size() == std::size_t{1} << 16);
  for (std::size_t i = 0; i < got.size(); i += 997) CHECK(got[i] == 2.0 * static_cast<double>(i));
}

TEST_CASE("a pinned buffer is not reused while a queued copy still reads it", "[cuda][pinned]") {
  constexpr std::int64_t n = 1 << 20;  // 4 MiB of float32
  Tensor host = Tensor::full({n}, 1.0, DType::Float32).pin_memory();
  const void* first = host.raw_data();
  zkynet_test::spin(cuda::stream(), 200000);  // 0.2 s: the copy below stays queued meanwhile
  const Tensor dev = host.to(kGpu, true);
  host = Tensor();  // released with the copy pending
  Tensor again = Tensor::full({n}, 2.0, DType::Float32).pin_memory();  // written by the host now
  CHECK(again.raw_data() != first);
  const void* second = again.raw_data();
  const std::vector<double> got = dev.cpu().to_doubles();  // waits for the spin and the copy
  CHECK(got.front() == 1.0);
  CHECK(got.back() == 1.0);
  again = Tensor();
  cuda::synchronize();
  const Tensor third = Tensor::empty_pinned({n}, DType::Float32);
  CHECK((third.raw_data() == first || third.raw_data() == second));  // reused once the copy is done
}

TEST_CASE("a blocking copy from pinned memory also keeps its buffer until it has run", "[cuda][pinned]") {
  constexpr std::int64_t n = 1 << 18;
  Tensor host = Tensor::full({n}, 3.0, DType::Float32).pin_memory();
  const void* first = host.raw_data();
  zkynet_test::spin(cuda::stream(), 100000);
  const Tensor dev = host.to(kGpu);  // queued on the compute stream behind the spin
  host = Tensor();
  Tensor again = Tensor::full({n}, 4.0, DType::Float32).pin_memory();
  CHECK(again.raw_data() != first);
  CHECK(dev.cpu().to_doubles().front() == 3.0);
}
