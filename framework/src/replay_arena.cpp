#include "replay_arena.h"

#include <zkynet/framework/error.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ZKYNET_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define ZKYNET_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ZKYNET_POISON(p, n) ((void)(p), (void)(n))
#define ZKYNET_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace zkynet::detail {

namespace {
constexpr std::size_t kUnit = 64;  // the caching allocator's alignment and granularity
std::size_t units_of(std::size_t nbytes) { return (std::max<std::size_t>(nbytes, 1) + kUnit - 1) / kUnit; }
}  // namespace

// One plan's memory. busy marks the units of live buffers (a request is served only on free
// units: a plan that no longer matches can never hand out memory twice); start maps a buffer's
// first unit to its size in units, for release.
struct ArenaBlock {
  char* base = nullptr;
  std::size_t units = 0;
  std::vector<std::uint8_t> busy;
  std::vector<std::uint32_t> start;
  std::size_t live = 0;
  bool orphaned = false;  // its arena dropped it: freed with its last live buffer

  explicit ArenaBlock(std::size_t n) : units(n), busy(n, 0), start(n, 0) {
    base = static_cast<char*>(std::aligned_alloc(kUnit, std::max<std::size_t>(n, 1) * kUnit));
    if (base == nullptr) throw Error("replay arena: out of memory allocating " + std::to_string(n * kUnit) + " bytes");
    ZKYNET_POISON(base, n * kUnit);
  }
  ~ArenaBlock() {
    ZKYNET_UNPOISON(base, units * kUnit);
    std::free(base);
  }
  ArenaBlock(const ArenaBlock&) = delete;
  ArenaBlock& operator=(const ArenaBlock&) = delete;
  bool holds(const void* p) const {
    const char* c = static_cast<const char*>(p);
    return c >= base && c < base + units * kUnit;
  }
};

namespace {

// Every block that may hold live buffers, for releases from any thread.
std::mutex g_mutex;
std::vector<std::shared_ptr<ArenaBlock>>& blocks() {
  static auto* b = new std::vector<std::shared_ptr<ArenaBlock>>();  // never destroyed: see allocator.cpp
  return *b;
}
std::atomic<std::size_t> g_block_count{0};
thread_local ReplayArena* t_open = nullptr;

void unregister(const ArenaBlock* block) {
  auto& all = blocks();
  all.erase(std::remove_if(all.begin(), all.end(), [&](const auto& b) { return b.get() == block; }), all.end());
  g_block_count.store(all.size(), std::memory_order_relaxed);
}

}  // namespace

struct ReplayArena::Recording {
  struct Request {
    std::size_t units = 0;
    void* ptr = nullptr;
    std::size_t allocated_at = 0;
    std::size_t released_at = std::numeric_limits<std::size_t>::max();  // max: escapes the replay
  };
  std::vector<Request> requests;
  std::size_t clock = 0;
};

struct ReplayArena::Plan {
  std::vector<std::size_t> units;    // per request
  std::vector<std::int64_t> offset;  // per request, in units; -1: escapes, from the cache
};

ReplayArena::ReplayArena() : recording_(std::make_unique<Recording>()) {}

ReplayArena::~ReplayArena() { drop(); }

ReplayArena::Scope::Scope(ReplayArena& arena) : arena_(&arena), previous_(t_open) {
  t_open = arena.stats_.dropped ? nullptr : &arena;
  arena.failed_ = false;
  arena.next_ = 0;
}

ReplayArena::Scope::~Scope() {
  t_open = previous_;
  arena_->finish(completed_);
}

void* ReplayArena::allocate(std::size_t nbytes) {
  const std::size_t k = next_++;
  if (recording_) {
    void* p = cached_allocate(nbytes);
    recording_->requests.push_back({units_of(nbytes), p, recording_->clock++});
    return p;
  }
  if (failed_ || !plan_) return cached_allocate(nbytes);
  if (k >= plan_->units.size() || plan_->units[k] != units_of(nbytes)) {
    failed_ = true;  // another sequence of requests than the plan's
    return cached_allocate(nbytes);
  }
  if (plan_->offset[k] < 0) return cached_allocate(nbytes);
  const auto first = static_cast<std::size_t>(plan_->offset[k]);
  const std::size_t n = plan_->units[k];
  std::lock_guard lock(g_mutex);
  ArenaBlock& b = *block_;
  if (std::find(b.busy.begin() + static_cast<std::ptrdiff_t>(first), b.busy.begin() + static_cast<std::ptrdiff_t>(first + n),
                std::uint8_t{1}) != b.busy.begin() + static_cast<std::ptrdiff_t>(first + n)) {
    failed_ = true;  // a buffer the plan expected released is still live
    return cached_allocate(nbytes);
  }
  std::fill_n(b.busy.begin() + static_cast<std::ptrdiff_t>(first), n, std::uint8_t{1});
  b.start[first] = static_cast<std::uint32_t>(n);
  ++b.live;
  ++stats_.served;
  char* p = b.base + first * kUnit;
  ZKYNET_UNPOISON(p, n * kUnit);
  return p;
}

void ReplayArena::note_release(void* ptr) {
  if (!recording_) return;
  auto& reqs = recording_->requests;
  for (auto it = reqs.rbegin(); it != reqs.rend(); ++it) {
    if (it->ptr == ptr && it->released_at == std::numeric_limits<std::size_t>::max()) {
      it->released_at = recording_->clock++;
      it->ptr = nullptr;
      return;
    }
  }
}

void ReplayArena::finish(bool completed) {
  if (recording_) {
    if (completed) {
      build_plan();
    } else {
      recording_->requests.clear();  // an interrupted replay: record the next one
    }
    return;
  }
  if (!plan_) return;
  if (!completed || failed_ || next_ != plan_->units.size()) {
    drop();
    return;
  }
  ++stats_.planned_replays;
}

// First fit over the ranges freed so far, in the recorded order of requests and releases.
void ReplayArena::build_plan() {
  auto plan = std::make_unique<Plan>();
  const auto& reqs = recording_->requests;
  struct Event {
    std::size_t time;
    std::size_t request;
    bool release;
  };
  std::vector<Event> events;
  for (std::size_t k = 0; k < reqs.size(); ++k) {
    plan->units.push_back(reqs[k].units);
    plan->offset.push_back(-1);
    if (reqs[k].released_at == std::numeric_limits<std::size_t>::max()) continue;  // escapes
    events.push_back({reqs[k].allocated_at, k, false});
    events.push_back({reqs[k].released_at, k, true});
  }
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.time < b.time; });
  std::map<std::size_t, std::size_t> holes;  // offset -> units
  std::size_t top = 0;
  for (const Event& e : events) {
    const std::size_t n = reqs[e.request].units;
    if (e.release) {
      auto [it, inserted] = holes.emplace(static_cast<std::size_t>(plan->offset[e.request]), n);
      if (auto next = std::next(it); next != holes.end() && it->first + it->second == next->first) {
        it->second += next->second;
        holes.erase(next);
      }
      if (it != holes.begin()) {
        auto prev = std::prev(it);
        if (prev->first + prev->second == it->first) {
          prev->second += it->second;
          holes.erase(it);
        }
      }
      continue;
    }
    auto fit = std::find_if(holes.begin(), holes.end(), [&](const auto& h) { return h.second >= n; });
    if (fit == holes.end()) {
      plan->offset[e.request] = static_cast<std::int64_t>(top);
      top += n;
    } else {
      plan->offset[e.request] = static_cast<std::int64_t>(fit->first);
      const std::size_t rest = fit->second - n;
      const std::size_t at = fit->first + n;
      holes.erase(fit);
      if (rest > 0) holes.emplace(at, rest);
    }
    ++stats_.planned_buffers;
    stats_.planned_bytes += n * kUnit;
  }
  stats_.escaping = reqs.size() - stats_.planned_buffers;
  recording_.reset();
  if (stats_.planned_buffers == 0) return;  // nothing to serve: every replay uses the cache
  block_ = std::make_shared<ArenaBlock>(top);
  stats_.block_bytes = top * kUnit;
  plan_ = std::move(plan);
  std::lock_guard lock(g_mutex);
  blocks().push_back(block_);
  g_block_count.store(blocks().size(), std::memory_order_relaxed);
}

void ReplayArena::drop() {
  stats_.dropped = stats_.dropped || plan_ != nullptr;
  plan_.reset();
  recording_.reset();
  if (!block_) return;
  std::lock_guard lock(g_mutex);
  if (block_->live == 0) {
    unregister(block_.get());
  } else {
    block_->orphaned = true;  // freed by arena_release with its last buffer
  }
  block_.reset();
}

ReplayArena* open_arena() { return t_open; }

bool arena_release(void* ptr) {
  if (t_open != nullptr) t_open->note_release(ptr);
  if (g_block_count.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard lock(g_mutex);
  for (const auto& b : blocks()) {
    if (!b->holds(ptr)) continue;
    const auto first = static_cast<std::size_t>(static_cast<char*>(ptr) - b->base) / kUnit;
    const std::size_t n = b->start[first];
    std::fill_n(b->busy.begin() + static_cast<std::ptrdiff_t>(first), n, std::uint8_t{0});
    b->start[first] = 0;
    ZKYNET_POISON(ptr, n * kUnit);
    if (--b->live == 0 && b->orphaned) unregister(b.get());
    return true;
  }
  return false;
}

}  // namespace zkynet::detail
