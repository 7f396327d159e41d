#include <zkynet/framework/allocator.h>
#include <zkynet/framework/tensor.h>

#include <catch2/catch.hpp>

using namespace zkynet;

TEST_CASE("freed buffers are reused for the same size") {
  if (!cpu_allocator_caching()) {
    SUCCEED("sanitizer build: the cache is off so AddressSanitizer sees every free");
    return;
  }
  const Shape shape{1000, 37};
  void* first = nullptr;
  {
    Tensor a = Tensor::empty(shape, DType::Float32);
    first = a.raw_data();
  }
  const auto before = cpu_allocator_stats();
  Tensor b = Tensor::empty(shape, DType::Float32);
  const auto after = cpu_allocator_stats();
  CHECK(b.raw_data() == first);
  CHECK(after.hits == before.hits + 1);
  CHECK(after.misses == before.misses);
}

TEST_CASE("allocated bytes follow live tensors and empty_cpu_cache releases the cache") {
  const auto base = cpu_allocator_stats();
  {
    Tensor a = Tensor::empty({4096}, DType::Float64);
    CHECK(cpu_allocator_stats().allocated_bytes >= base.allocated_bytes + 4096 * 8);
  }
  CHECK(cpu_allocator_stats().allocated_bytes == base.allocated_bytes);
  empty_cpu_cache();
  CHECK(cpu_allocator_stats().cached_bytes == 0);
}

TEST_CASE("buffers are 64-byte aligned") {
  for (std::int64_t n : {1, 3, 17, 1000, 600000}) {
    Tensor t = Tensor::empty({n}, DType::Float32);
    CHECK(reinterpret_cast<std::uintptr_t>(t.raw_data()) % 64 == 0);
  }
}
