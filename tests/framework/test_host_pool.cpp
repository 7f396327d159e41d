// The pinned host pool, run over malloc'd memory: a backend whose "events" complete only when
// the test says so stands for cudaHostAlloc and cudaEventRecord/Query on a copy stream.
#include <zkynet/framework/error.h>
#include <zkynet/internal/host_pool.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <vector>

using zkynet::OutOfMemoryError;
using zkynet::UsageError;
using zkynet::detail::HostPool;
using zkynet::detail::HostPoolBackend;

namespace {

// What the backend saw; outlives the pool, which owns the backend.
struct Ledger {
  std::size_t capacity = std::numeric_limits<std::size_t>::max();
  std::size_t outstanding = 0;
  std::size_t allocations = 0;
  std::map<void*, std::size_t> live;
  // An event per recorded use: its stream, and whether the work before it has run.
  struct Event {
    void* stream;
    bool done = false;
  };
  std::vector<std::unique_ptr<Event>> events;
  std::size_t destroyed_events = 0;

  // The stream has run everything queued on it so far.
  void finish(void* stream) {
    for (auto& e : events) {
      if (e->stream == stream) e->done = true;
    }
  }
};

class FakeBackend final : public HostPoolBackend {
 public:
  explicit FakeBackend(Ledger& ledger) : ledger_(ledger) {}
  void* allocate(std::size_t bytes) override {
    if (ledger_.outstanding + bytes > ledger_.capacity) return nullptr;
    void* p = std::malloc(bytes);
    ledger_.live[p] = bytes;
    ledger_.outstanding += bytes;
    ++ledger_.allocations;
    return p;
  }
  void release(void* ptr) override {
    ledger_.outstanding -= ledger_.live.at(ptr);
    ledger_.live.erase(ptr);
    std::free(ptr);
  }
  void* record_event(void* stream) override {
    ledger_.events.push_back(std::make_unique<Ledger::Event>(Ledger::Event{stream}));
    return ledger_.events.back().get();
  }
  bool event_done(void* event) override { return static_cast<Ledger::Event*>(event)->done; }
  void destroy_event(void*) override { ++ledger_.destroyed_events; }

 private:
  Ledger& ledger_;
};

void* const kCopyStream = reinterpret_cast<void*>(0x10);

}  // namespace

TEST_CASE("host pool: sizes round up to powers of two of at least 512 bytes", "[host_pool]") {
  Ledger ledger;
  {
    HostPool pool(std::make_unique<FakeBackend>(ledger));
    void* a = pool.allocate(3000);
    void* b = pool.allocate(1);
    CHECK(ledger.live.at(a) == 4096);
    CHECK(ledger.live.at(b) == 512);
    CHECK(pool.stats().allocated_bytes == 4096 + 512);
    pool.release(a);
    pool.release(b);
  }
  CHECK(ledger.live.empty());  // the destructor gives everything back
}

TEST_CASE("host pool: a released block without pending copies is reused at once", "[host_pool]") {
  Ledger ledger;
  HostPool pool(std::make_unique<FakeBackend>(ledger));
  void* a = pool.allocate(4096);
  pool.release(a);
  CHECK(pool.allocate(4000) == a);
  CHECK(ledger.allocations == 1);
  CHECK(pool.stats().cache_hits == 1);
}

TEST_CASE("host pool: a block is not handed out again before the copies recorded on it complete", "[host_pool]") {
  Ledger ledger;
  HostPool pool(std::make_unique<FakeBackend>(ledger));
  char* a = static_cast<char*>(pool.allocate(4096));
  REQUIRE(pool.record_use(a + 100, kCopyStream));  // an address inside the block counts
  pool.release(a);
  CHECK(pool.stats().waiting_blocks == 1);
  void* b = pool.allocate(4096);
  CHECK(b != a);  // the copy may still read a
  ledger.finish(kCopyStream);
  void* c = pool.allocate(4096);
  CHECK(c == a);
  CHECK(pool.stats().waiting_blocks == 0);
  CHECK(ledger.destroyed_events == 1);
  pool.release(b);
  pool.release(c);
}

TEST_CASE("host pool: every recorded use must complete, not only the first", "[host_pool]") {
  Ledger ledger;
  HostPool pool(std::make_unique<FakeBackend>(ledger));
  void* const other_stream = reinterpret_cast<void*>(0x20);
  void* a = pool.allocate(1024);
  pool.record_use(a, kCopyStream);
  pool.record_use(a, other_stream);
  pool.release(a);
  ledger.finish(kCopyStream);
  void* b = pool.allocate(1024);
  CHECK(b != a);
  ledger.finish(other_stream);
  void* c = pool.allocate(1024);
  CHECK(c == a);
  pool.release(b);
  pool.release(c);
}

TEST_CASE("host pool: pageable memory and released blocks record nothing", "[host_pool]") {
  Ledger ledger;
  HostPool pool(std::make_unique<FakeBackend>(ledger));
  std::vector<char> pageable(4096);
  CHECK_FALSE(pool.record_use(pageable.data(), kCopyStream));
  CHECK_FALSE(pool.contains(pageable.data()));
  char* a = static_cast<char*>(pool.allocate(512));
  CHECK(pool.contains(a + 511));
  CHECK_FALSE(pool.contains(a + 512));
  pool.release(a);
  CHECK_FALSE(pool.contains(a));
  CHECK_FALSE(pool.record_use(a, kCopyStream));
  CHECK(ledger.events.empty());
}

TEST_CASE("host pool: out of pinned memory, free blocks go back and the request is retried", "[host_pool]") {
  Ledger ledger;
  ledger.capacity = 8192;
  HostPool pool(std::make_unique<FakeBackend>(ledger));
  void* a = pool.allocate(4096);
  void* b = pool.allocate(4096);
  pool.release(a);
  pool.record_use(b, kCopyStream);
  pool.release(b);
  // 8192 B do not fit beside the cached blocks: a (free) goes back, b (copy pending) stays.
  CHECK_THROWS_AS(pool.allocate(8192), OutOfMemoryError);
  CHECK(ledger.live.size() == 1);
  CHECK(ledger.live.count(b) == 1);
  ledger.finish(kCopyStream);
  pool.empty_cache();
  CHECK(ledger.live.empty());
  void* c = pool.allocate(8192);
  CHECK(c != nullptr);
  pool.release(c);
}

TEST_CASE("host pool: releasing a foreign or already released pointer is refused", "[host_pool]") {
  Ledger ledger;
  HostPool pool(std::make_unique<FakeBackend>(ledger));
  int x = 0;
  CHECK_THROWS_AS(pool.release(&x), UsageError);
  void* a = pool.allocate(512);
  pool.release(a);
  CHECK_THROWS_AS(pool.release(a), UsageError);
  pool.release(nullptr);  // as free(nullptr)
}

TEST_CASE("host pool: events of a buffer copied again and again do not pile up", "[host_pool]") {
  Ledger ledger;
  HostPool pool(std::make_unique<FakeBackend>(ledger));
  void* a = pool.allocate(512);
  for (int i = 0; i < 5; ++i) {
    pool.record_use(a, kCopyStream);
    ledger.finish(kCopyStream);
  }
  CHECK(ledger.destroyed_events == 4);  // each record settles the completed ones first
  pool.release(a);
  CHECK(ledger.destroyed_events == 5);
}
