// The device caching allocator, run over host memory: a counting malloc/free backend stands for
// cudaMalloc/cudaFree, with an optional capacity so that out-of-memory can be provoked.
#include <zkynet/framework/error.h>
#include <zkynet/internal/caching_allocator.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

using zkynet::OutOfMemoryError;
using zkynet::UsageError;
using zkynet::detail::CachingAllocator;
using zkynet::detail::format_bytes;
using zkynet::detail::MemoryBackend;

namespace {

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;
constexpr std::size_t GiB = 1024 * MiB;

// What the backend did; shared with the test so it outlives the allocator (which owns the backend).
struct Ledger {
  std::size_t capacity = std::numeric_limits<std::size_t>::max();
  std::size_t outstanding_bytes = 0;
  std::unordered_map<void*, std::size_t> live;  // segment -> size
  std::vector<std::size_t> requests;            // sizes of every allocate() call, failed ones too
  std::size_t failures = 0;
  std::size_t bad_releases = 0;  // releases of pointers the backend never gave out
};

// malloc/free with books. The allocator calls it under its own mutex.
class CountingBackend final : public MemoryBackend {
 public:
  explicit CountingBackend(std::shared_ptr<Ledger> ledger) : ledger_(std::move(ledger)) {}
  ~CountingBackend() override = default;

  void* allocate(std::size_t bytes) override {
    ledger_->requests.push_back(bytes);
    if (bytes > ledger_->capacity - ledger_->outstanding_bytes) {
      ++ledger_->failures;
      return nullptr;
    }
    void* ptr = std::malloc(bytes);
    if (ptr == nullptr) return nullptr;
    ledger_->live.emplace(ptr, bytes);
    ledger_->outstanding_bytes += bytes;
    return ptr;
  }
  void release(void* ptr) override {
    const auto it = ledger_->live.find(ptr);
    if (it == ledger_->live.end()) {
      ++ledger_->bad_releases;
      return;
    }
    ledger_->outstanding_bytes -= it->second;
    ledger_->live.erase(it);
    std::free(ptr);
  }
  std::size_t free_bytes() const override {
    if (ledger_->capacity == std::numeric_limits<std::size_t>::max()) return 64 * GiB;
    return ledger_->capacity - ledger_->outstanding_bytes;
  }

 private:
  std::shared_ptr<Ledger> ledger_;
};

struct Fixture {
  std::shared_ptr<Ledger> ledger = std::make_shared<Ledger>();
  std::unique_ptr<CachingAllocator> alloc;

  explicit Fixture(std::size_t capacity = std::numeric_limits<std::size_t>::max(), std::string name = "cuda:0") {
    ledger->capacity = capacity;
    alloc = std::make_unique<CachingAllocator>(std::make_unique<CountingBackend>(ledger), std::move(name));
  }
};

std::ptrdiff_t distance(const void* from, const void* to) {
  return static_cast<const char*>(to) - static_cast<const char*>(from);
}

}  // namespace

TEST_CASE("device allocator: requests are rounded up to multiples of 512 bytes", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* p1 = a.allocate(1);
  CHECK(a.stats().allocated_bytes == 512);
  void* p2 = a.allocate(512);
  CHECK(a.stats().allocated_bytes == 1024);
  void* p3 = a.allocate(513);
  CHECK(a.stats().allocated_bytes == 2048);
  void* p4 = a.allocate(1);
  // Consecutive blocks of one segment: each starts where the previous rounded block ended.
  CHECK(distance(p1, p2) == 512);
  CHECK(distance(p2, p3) == 512);
  CHECK(distance(p3, p4) == 1024);
  for (void* p : {p1, p2, p3, p4}) a.release(p);
}

TEST_CASE("device allocator: a zero-byte request gives nullptr and release(nullptr) does nothing", "[allocator]") {
  Fixture f;
  CHECK(f.alloc->allocate(0) == nullptr);
  f.alloc->release(nullptr);
  const auto s = f.alloc->stats();
  CHECK(s.allocations == 0);
  CHECK(s.reserved_bytes == 0);
  CHECK(f.ledger->requests.empty());
}

TEST_CASE("device allocator: the request's size picks the pool and the segment size", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  const auto segment_for = [&](std::size_t nbytes) {
    const std::size_t calls = f.ledger->requests.size();
    void* p = a.allocate(nbytes);
    REQUIRE(f.ledger->requests.size() == calls + 1);  // each needs a segment of its own
    a.release(p);
    a.empty_cache();
    return f.ledger->requests.back();
  };
  CHECK(segment_for(1) == 2 * MiB);                  // small pool
  CHECK(segment_for(1 * MiB) == 2 * MiB);            // the largest small request
  CHECK(segment_for(1 * MiB + 1) == 20 * MiB);       // large pool, shared 20 MiB segments
  CHECK(segment_for(10 * MiB - 512) == 20 * MiB);
  CHECK(segment_for(10 * MiB) == 10 * MiB);          // from 10 MiB: the request rounded to 2 MiB
  CHECK(segment_for(10 * MiB + 1) == 12 * MiB);
  CHECK(segment_for(33 * MiB) == 34 * MiB);
}

TEST_CASE("device allocator: the pools do not serve each other's requests", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* small = a.allocate(512);
  a.release(small);  // a wholly free 2 MiB block in the small pool
  void* large = a.allocate(3 * MiB / 2);  // would fit in it, but takes a 20 MiB large segment
  CHECK(f.ledger->requests == std::vector<std::size_t>{2 * MiB, 20 * MiB});
  void* s1 = a.allocate(1 * MiB);  // the two halves of the small segment
  void* s2 = a.allocate(1 * MiB);
  CHECK(s1 == small);
  CHECK(distance(s1, s2) == static_cast<std::ptrdiff_t>(1 * MiB));
  CHECK(f.ledger->requests.size() == 2);
  // The small pool is full; the large segment has 18.5 MiB free, yet a small request takes a
  // new small segment.
  void* s3 = a.allocate(512);
  CHECK(f.ledger->requests == std::vector<std::size_t>{2 * MiB, 20 * MiB, 2 * MiB});
  for (void* p : {large, s1, s2, s3}) a.release(p);
}

TEST_CASE("device allocator: a freed block is reused without a new segment (cache hit)", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* p = a.allocate(1000);
  a.release(p);
  const auto before = a.stats();
  void* q = a.allocate(1000);
  const auto after = a.stats();
  CHECK(q == p);
  CHECK(after.cache_hits == before.cache_hits + 1);
  CHECK(after.segments == before.segments);
  CHECK(after.reserved_bytes == before.reserved_bytes);
  CHECK(f.ledger->requests.size() == 1);
  a.release(q);
}

TEST_CASE("device allocator: a request takes the smallest free block that fits", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  // Free blocks of 4 KiB, 1 KiB and 2 KiB, kept apart by blocks in use, then the segment's tail.
  void* b4 = a.allocate(4 * KiB);
  void* s1 = a.allocate(512);
  void* b1 = a.allocate(1 * KiB);
  void* s2 = a.allocate(512);
  void* b2 = a.allocate(2 * KiB);
  void* s3 = a.allocate(512);
  a.release(b4);
  a.release(b1);
  a.release(b2);
  void* c2 = a.allocate(1536);  // 2 KiB fits best (4 KiB and the tail fit too)
  void* c1 = a.allocate(1 * KiB);
  void* c4 = a.allocate(3 * KiB);
  CHECK(c2 == b2);
  CHECK(c1 == b1);
  CHECK(c4 == b4);
  CHECK(f.ledger->requests.size() == 1);
  for (void* p : {s1, s2, s3, c1, c2, c4}) a.release(p);
}

TEST_CASE("device allocator: the small pool splits off any remainder", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* p = a.allocate(1 * MiB);
  CHECK(a.stats().allocated_bytes == 1 * MiB);  // not the whole 2 MiB segment
  void* q = a.allocate(1 * MiB - 512);
  CHECK(distance(p, q) == static_cast<std::ptrdiff_t>(1 * MiB));
  CHECK(a.stats().allocated_bytes == 2 * MiB - 512);
  void* r = a.allocate(512);  // the last 512 B were split off too
  CHECK(distance(p, r) == static_cast<std::ptrdiff_t>(2 * MiB - 512));
  CHECK(a.stats().segments == 1);
  for (void* x : {p, q, r}) a.release(x);
}

TEST_CASE("device allocator: the large pool splits only remainders over 1 MiB", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* whole = a.allocate(19 * MiB);  // a 20 MiB segment; 1 MiB left is not worth a block
  CHECK(f.ledger->requests.back() == 20 * MiB);
  CHECK(a.stats().allocated_bytes == 20 * MiB);
  a.release(whole);
  a.empty_cache();

  void* part = a.allocate(19 * MiB - 512);  // leaves 1 MiB + 512 B: split off and kept
  CHECK(f.ledger->requests.back() == 20 * MiB);
  CHECK(a.stats().allocated_bytes == 19 * MiB - 512);
  void* rest = a.allocate(1 * MiB + 512);  // the remainder serves a large request
  CHECK(distance(part, rest) == static_cast<std::ptrdiff_t>(19 * MiB - 512));
  CHECK(a.stats().segments == 1);
  a.release(part);
  a.release(rest);
}

TEST_CASE("device allocator: a freed block merges with its free neighbours", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* p1 = a.allocate(1 * KiB);
  void* p2 = a.allocate(1 * KiB);
  void* p3 = a.allocate(1 * KiB);
  void* guard = a.allocate(1 * KiB);  // keeps the segment's free tail out of the merge
  a.release(p2);
  a.release(p1);  // merges with the free block after it
  a.release(p3);  // merges with the free block before it
  // Only a merged 3 KiB block at p1 fits 3 KiB this snugly (the tail is ~2 MiB).
  CHECK(a.allocate(3 * KiB) == p1);
  CHECK(a.stats().segments == 1);
  a.release(p1);
  a.release(guard);
  // Everything merged back into one block: the segment is wholly free and can go.
  a.empty_cache();
  CHECK(f.ledger->outstanding_bytes == 0);
}

TEST_CASE("device allocator: empty_cache returns only wholly free segments", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* a1 = a.allocate(1 * MiB);  // two 1 MiB blocks fill small segment A
  void* a2 = a.allocate(1 * MiB);
  void* b1 = a.allocate(1 * MiB);  // small segment B, half used
  void* c1 = a.allocate(5 * MiB);  // large segment C
  REQUIRE(f.ledger->requests == std::vector<std::size_t>{2 * MiB, 2 * MiB, 20 * MiB});
  a.release(a1);
  a.release(a2);
  a.release(c1);
  a.empty_cache();
  const auto s = a.stats();
  CHECK(s.segments == 1);
  CHECK(s.reserved_bytes == 2 * MiB);
  CHECK(s.allocated_bytes == 1 * MiB);
  CHECK(f.ledger->live.size() == 1);
  CHECK(f.ledger->outstanding_bytes == 2 * MiB);
  std::memset(b1, 0x5a, 1 * MiB);  // still ours
  a.release(b1);
  a.empty_cache();
  CHECK(a.stats().reserved_bytes == 0);
  CHECK(f.ledger->outstanding_bytes == 0);
  CHECK(f.ledger->bad_releases == 0);
}

TEST_CASE("device allocator: on backend OOM the cache is emptied and the allocation retried", "[allocator]") {
  Fixture f(20 * MiB);
  auto& a = *f.alloc;
  a.release(a.allocate(5 * MiB));  // the whole 20 MiB capacity now sits in the cache
  REQUIRE(a.stats().cached_bytes == 20 * MiB);
  void* p = a.allocate(512);  // needs a 2 MiB small segment: fails, frees the cache, succeeds
  CHECK(p != nullptr);
  const auto s = a.stats();
  CHECK(s.alloc_retries == 1);
  CHECK(s.ooms == 0);
  CHECK(s.reserved_bytes == 2 * MiB);
  CHECK(s.segments == 1);
  CHECK(f.ledger->failures == 1);
  CHECK(f.ledger->outstanding_bytes == 2 * MiB);
  a.release(p);
}

TEST_CASE("device allocator: OOM with the memory in use throws OutOfMemoryError with the figures",
          "[allocator]") {
  Fixture f(1 * GiB + 22 * MiB, "cuda:3");
  auto& a = *f.alloc;
  void* big = a.allocate(5 * MiB);  // 20 MiB segment: 5 MiB in use, 15 MiB cached
  void* small = a.allocate(512);    // 2 MiB segment: 512 B in use, 2 MiB - 512 B cached
  std::string message;
  try {
    a.allocate(2 * GiB);
    FAIL("allocate(2 GiB) did not throw");
  } catch (const OutOfMemoryError& e) {
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains("cuda:3"));
  CHECK_THAT(message, Catch::Contains("allocating 2.00 GiB"));
  CHECK_THAT(message, Catch::Contains("5.00 MiB in use"));   // 5 MiB + 512 B
  CHECK_THAT(message, Catch::Contains("17.00 MiB cached"));  // 22 MiB reserved - the above
  CHECK_THAT(message, Catch::Contains("1.00 GiB free"));
  const auto s = a.stats();
  CHECK(s.alloc_retries == 1);
  CHECK(s.ooms == 1);
  CHECK(f.ledger->failures == 2);  // the first try and the retry
  CHECK(s.reserved_bytes == 22 * MiB);  // nothing was wholly free, nothing released
  // The allocator stays usable, and OutOfMemoryError is a zkynet::Error.
  CHECK_THROWS_AS(a.allocate(2 * GiB), zkynet::Error);
  void* more = a.allocate(1 * MiB);
  CHECK(more != nullptr);
  for (void* p : {big, small, more}) a.release(p);
}

TEST_CASE("device allocator: a request too large to round throws OutOfMemoryError without asking the backend",
          "[allocator]") {
  Fixture f;
  CHECK_THROWS_AS(f.alloc->allocate(std::numeric_limits<std::size_t>::max()), OutOfMemoryError);
  CHECK_THROWS_AS(f.alloc->allocate(std::numeric_limits<std::size_t>::max() - 100), OutOfMemoryError);
  CHECK(f.ledger->requests.empty());
  CHECK(f.alloc->stats().ooms == 2);
}

TEST_CASE("device allocator: byte counts read as in PyTorch's messages", "[allocator]") {
  CHECK(format_bytes(0) == "0 bytes");
  CHECK(format_bytes(1023) == "1023 bytes");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(20 * MiB) == "20.00 MiB");
  CHECK(format_bytes(2 * GiB) == "2.00 GiB");
  CHECK(format_bytes(3 * GiB / 2 * 1024) == "1.50 TiB");
}

TEST_CASE("device allocator: stats follow allocated and reserved bytes and their peaks", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  void* p = a.allocate(3000);    // 3072 in a 2 MiB segment
  void* q = a.allocate(5 * MiB);  // a 20 MiB segment
  auto s = a.stats();
  CHECK(s.allocated_bytes == 3072 + 5 * MiB);
  CHECK(s.reserved_bytes == 22 * MiB);
  CHECK(s.cached_bytes == 22 * MiB - 3072 - 5 * MiB);
  CHECK(s.peak_allocated_bytes == 3072 + 5 * MiB);
  CHECK(s.peak_reserved_bytes == 22 * MiB);
  CHECK(s.allocations == 2);
  CHECK(s.segments == 2);
  a.release(q);
  a.empty_cache();
  s = a.stats();
  CHECK(s.allocated_bytes == 3072);
  CHECK(s.reserved_bytes == 2 * MiB);
  CHECK(s.peak_allocated_bytes == 3072 + 5 * MiB);  // peaks stay until reset
  CHECK(s.peak_reserved_bytes == 22 * MiB);
  a.reset_peak_stats();
  s = a.stats();
  CHECK(s.peak_allocated_bytes == 3072);
  CHECK(s.peak_reserved_bytes == 2 * MiB);
  void* r = a.allocate(1000);
  CHECK(a.stats().peak_allocated_bytes == 3072 + 1024);
  a.release(p);
  a.release(r);
  s = a.stats();
  CHECK(s.allocated_bytes == 0);
  CHECK(s.cached_bytes == 2 * MiB);
  CHECK(s.peak_allocated_bytes == 3072 + 1024);
}

TEST_CASE("device allocator: releasing an unknown or already released pointer is a UsageError", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  int on_stack = 0;
  CHECK_THROWS_AS(a.release(&on_stack), UsageError);
  void* p = a.allocate(2048);
  CHECK_THROWS_AS(a.release(static_cast<char*>(p) + 512), UsageError);  // inside a block
  a.release(p);
  CHECK_THROWS_WITH(a.release(p), Catch::Contains("cuda:0") && Catch::Contains("already released"));
  CHECK(a.stats().allocated_bytes == 0);  // the books were not touched
  CHECK(a.allocate(2048) == p);
}

TEST_CASE("device allocator: the destructor returns every segment to the backend", "[allocator]") {
  Fixture f;
  void* kept = f.alloc->allocate(100);    // still handed out
  void* big = f.alloc->allocate(30 * MiB);
  f.alloc->release(f.alloc->allocate(3 * MiB));  // cached in a 20 MiB segment
  f.alloc->release(big);
  REQUIRE(f.ledger->live.size() == 3);
  (void)kept;
  f.alloc.reset();
  CHECK(f.ledger->live.empty());
  CHECK(f.ledger->outstanding_bytes == 0);
  CHECK(f.ledger->bad_releases == 0);
}

TEST_CASE("device allocator: threads allocating and releasing together keep the books balanced", "[allocator]") {
  Fixture f;
  auto& a = *f.alloc;
  constexpr int kThreads = 4;
  constexpr int kIterations = 3000;
  std::atomic<int> corrupted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 1);
      std::vector<std::pair<unsigned char*, std::size_t>> held;
      const auto drop = [&](std::size_t i) {
        auto [ptr, size] = held[i];
        // Each block carries its owner's tag at both ends: overlapping blocks would clobber it.
        if (ptr[0] != static_cast<unsigned char>(t) || ptr[size - 1] != static_cast<unsigned char>(t)) ++corrupted;
        a.release(ptr);
        held[i] = held.back();
        held.pop_back();
      };
      for (int i = 0; i < kIterations; ++i) {
        const unsigned pick = rng() % 100;
        const std::size_t size = pick < 85 ? 1 + rng() % (64 * KiB)     // small pool
                                 : pick < 98 ? MiB + rng() % (4 * MiB)  // 20 MiB segments
                                             : 10 * MiB + rng() % (4 * MiB);
        auto* ptr = static_cast<unsigned char*>(a.allocate(size));
        ptr[0] = ptr[size - 1] = static_cast<unsigned char>(t);
        held.emplace_back(ptr, size);
        if (held.size() > 8 || rng() % 2 == 0) drop(rng() % held.size());
        if (i % 500 == 0) a.empty_cache();
      }
      while (!held.empty()) drop(held.size() - 1);
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(corrupted == 0);
  auto s = a.stats();
  CHECK(s.allocated_bytes == 0);
  CHECK(s.allocations == static_cast<std::size_t>(kThreads * kIterations));
  CHECK(s.reserved_bytes == f.ledger->outstanding_bytes);
  CHECK(s.segments == f.ledger->live.size());
  a.empty_cache();  // every block merged back: every segment is wholly free
  CHECK(a.stats().reserved_bytes == 0);
  CHECK(f.ledger->outstanding_bytes == 0);
  CHECK(f.ledger->bad_releases == 0);
}
