#include <zkynet/internal/caching_allocator.h>
#include <zkynet/internal/host_pool.h>

#include <zkynet/framework/error.h>

#include <bit>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace zkynet::detail {
namespace {

constexpr std::size_t kMinBlock = 512;
constexpr std::size_t kMaxRequest = std::size_t{1} << 62;  // beyond it the rounding overflows

std::size_t rounded(std::size_t nbytes) { return std::bit_ceil(std::max(nbytes, kMinBlock)); }

struct Block {
  std::size_t size = 0;
  bool in_use = false;
  std::vector<void*> events;  // uses recorded and not yet seen complete
};

}  // namespace

struct HostPool::State {
  std::unique_ptr<HostPoolBackend> backend;
  mutable std::mutex mutex;
  std::map<std::uintptr_t, Block> blocks;                   // every buffer, by start address
  std::unordered_map<std::size_t, std::vector<void*>> free;  // reusable now, by size
  std::vector<void*> waiting;                               // released, uses still pending
  HostPoolStats stats;

  Block& block(void* ptr) { return blocks.at(reinterpret_cast<std::uintptr_t>(ptr)); }

  // Drops the events of `b` that have completed; true when none is left.
  bool settle(Block& b) {
    std::erase_if(b.events, [&](void* e) {
      if (!backend->event_done(e)) return false;
      backend->destroy_event(e);
      return true;
    });
    return b.events.empty();
  }

  // Moves the waiting blocks whose uses have all completed to the free lists.
  void collect() {
    std::erase_if(waiting, [&](void* ptr) {
      Block& b = block(ptr);
      if (!settle(b)) return false;
      free[b.size].push_back(ptr);
      return true;
    });
    stats.waiting_blocks = waiting.size();
  }

  void release_free() {
    for (auto& [size, ptrs] : free) {
      for (void* ptr : ptrs) {
        backend->release(ptr);
        blocks.erase(reinterpret_cast<std::uintptr_t>(ptr));
        stats.cached_bytes -= size;
      }
    }
    free.clear();
  }

  Block* holding(const void* ptr) {
    const auto addr = reinterpret_cast<std::uintptr_t>(ptr);
    auto it = blocks.upper_bound(addr);
    if (it == blocks.begin()) return nullptr;
    --it;
    if (addr >= it->first + it->second.size || !it->second.in_use) return nullptr;
    return &it->second;
  }
};

HostPool::HostPool(std::unique_ptr<HostPoolBackend> backend) : state_(std::make_unique<State>()) {
  state_->backend = std::move(backend);
}

HostPool::~HostPool() {
  for (auto& [addr, b] : state_->blocks) {
    for (void* e : b.events) state_->backend->destroy_event(e);
    state_->backend->release(reinterpret_cast<void*>(addr));
  }
}

void* HostPool::allocate(std::size_t nbytes) {
  if (nbytes > kMaxRequest) {
    throw OutOfMemoryError("pinned host memory: a request of " + format_bytes(nbytes) + " exceeds any host");
  }
  const std::size_t size = rounded(nbytes);
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  ++s.stats.allocations;
  s.collect();
  void* ptr = nullptr;
  if (auto it = s.free.find(size); it != s.free.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    s.stats.cached_bytes -= size;
    ++s.stats.cache_hits;
  } else {
    ptr = s.backend->allocate(size);
    if (ptr == nullptr) {  // pinned pages are scarce: give back what is cached, then retry once
      s.release_free();
      ptr = s.backend->allocate(size);
    }
    if (ptr == nullptr) {
      throw OutOfMemoryError("pinned host memory: could not pin " + format_bytes(size) + " (" +
                             format_bytes(s.stats.allocated_bytes) + " pinned and in use, " +
                             format_bytes(s.stats.cached_bytes) + " waiting for copies to finish)");
    }
    s.blocks[reinterpret_cast<std::uintptr_t>(ptr)] = Block{size, false, {}};
  }
  s.block(ptr).in_use = true;
  s.stats.allocated_bytes += size;
  return ptr;
}

void HostPool::release(void* ptr) {
  if (ptr == nullptr) return;
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  auto it = s.blocks.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == s.blocks.end() || !it->second.in_use) {
    throw UsageError("pinned host memory: releasing a pointer that is not a live pinned block");
  }
  Block& b = it->second;
  b.in_use = false;
  s.stats.allocated_bytes -= b.size;
  s.stats.cached_bytes += b.size;
  if (s.settle(b)) {
    s.free[b.size].push_back(ptr);
  } else {
    s.waiting.push_back(ptr);
    s.stats.waiting_blocks = s.waiting.size();
  }
}

bool HostPool::record_use(const void* ptr, void* stream) {
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  Block* b = s.holding(ptr);
  if (b == nullptr) return false;
  s.settle(*b);  // a buffer copied every step would otherwise pile up completed events
  b->events.push_back(s.backend->record_event(stream));
  return true;
}

bool HostPool::contains(const void* ptr) const {
  std::lock_guard lock(state_->mutex);
  return state_->holding(ptr) != nullptr;
}

void HostPool::empty_cache() {
  std::lock_guard lock(state_->mutex);
  state_->collect();
  state_->release_free();
}

HostPoolStats HostPool::stats() const {
  std::lock_guard lock(state_->mutex);
  return state_->stats;
}

}  // namespace zkynet::detail
