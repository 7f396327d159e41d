#include <zkynet/internal/caching_allocator.h>

#include <zkynet/framework/error.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <utility>
#include <vector>

namespace zkynet::detail {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kMinBlockSize = 512;       // every block is a multiple of this
constexpr std::size_t kSmallSize = 1 * kMiB;     // largest request of the small pool
constexpr std::size_t kSmallBuffer = 2 * kMiB;   // segment size of the small pool
constexpr std::size_t kMinLargeAlloc = 10 * kMiB;  // below this, large requests share...
constexpr std::size_t kLargeBuffer = 20 * kMiB;    // ...20 MiB segments
constexpr std::size_t kRoundLarge = 2 * kMiB;      // beyond it, segments are rounded to this
// No device has this much; refusing larger requests up front keeps every rounding below exact.
constexpr std::size_t kMaxRequest = std::numeric_limits<std::size_t>::max() / 2;

std::size_t round_up(std::size_t n, std::size_t unit) { return (n + unit - 1) / unit * unit; }

std::size_t segment_size(std::size_t size) {
  if (size <= kSmallSize) return kSmallBuffer;
  if (size < kMinLargeAlloc) return kLargeBuffer;
  return round_up(size, kRoundLarge);
}

// A piece of a segment. The blocks of a segment form an address-ordered list; its first block
// lives as long as the segment (merging keeps the lower block), so it stands for the segment.
struct Block {
  std::size_t size;
  char* ptr;
  bool small;  // which pool
  bool allocated = false;
  Block* prev = nullptr;
  Block* next = nullptr;
};

// Free blocks by (size, address): lower_bound on a size finds the best fit, the lowest address
// among equals (which keeps allocations packed towards the start of segments).
struct BySizeThenAddress {
  bool operator()(const Block* a, const Block* b) const {
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<std::uintptr_t>(a->ptr) < reinterpret_cast<std::uintptr_t>(b->ptr);
  }
};
using Pool = std::set<Block*, BySizeThenAddress>;

}  // namespace

std::string format_bytes(std::size_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.2f %s", value, kUnits[unit]);
  return text;
}

struct CachingAllocator::State {
  std::unique_ptr<MemoryBackend> backend;
  std::string device;
  mutable std::mutex mutex;
  Pool small_pool;  // free blocks of 2 MiB segments
  Pool large_pool;  // free blocks of the larger segments
  std::unordered_map<void*, Block*> live;  // blocks handed out, by address
  std::vector<Block*> segments;            // the first block of each segment held
  DeviceMemoryStats counters;              // cached_bytes is derived in stats()

  Pool& pool_of(const Block* block) { return block->small ? small_pool : large_pool; }

  // Removes and returns the smallest free block of `pool` holding `size` bytes, or nullptr.
  static Block* take_best_fit(Pool& pool, std::size_t size) {
    Block key{size, nullptr, false};
    auto it = pool.lower_bound(&key);
    if (it == pool.end()) return nullptr;
    Block* block = *it;
    pool.erase(it);
    return block;
  }

  // Hands the wholly free segments back to the backend. A free segment is a single block: a
  // released block always merges with its free neighbours.
  void release_free_segments() {
    std::erase_if(segments, [&](Block* head) {
      if (head->allocated || head->next != nullptr) return false;
      pool_of(head).erase(head);
      backend->release(head->ptr);
      counters.reserved_bytes -= head->size;
      --counters.segments;
      delete head;
      return true;
    });
  }

  [[noreturn]] void throw_out_of_memory(std::size_t nbytes, std::size_t segment) {
    ++counters.ooms;
    std::ostringstream message;
    message << device << ": out of memory allocating " << format_bytes(nbytes) << " (" << nbytes << " bytes";
    if (segment != 0) message << ", a new " << format_bytes(segment) << " segment";
    message << "): " << format_bytes(counters.allocated_bytes) << " in use (allocated), "
            << format_bytes(counters.reserved_bytes - counters.allocated_bytes)
            << " cached (reserved but free, in partly used segments), " << format_bytes(backend->free_bytes())
            << " free on the device";
    throw OutOfMemoryError(message.str());
  }

  // A new segment for a request of `size` rounded bytes; on failure, empties the cache and
  // retries once, then throws.
  Block* new_segment(std::size_t nbytes, std::size_t size) {
    const std::size_t bytes = segment_size(size);
    auto head = std::make_unique<Block>(Block{bytes, nullptr, size <= kSmallSize});
    segments.reserve(segments.size() + 1);  // so recording the segment below cannot throw
    void* memory = backend->allocate(bytes);
    if (memory == nullptr) {
      // Cached segments may be what fills the device: return them and try again, as PyTorch does.
      ++counters.alloc_retries;
      release_free_segments();
      memory = backend->allocate(bytes);
      if (memory == nullptr) throw_out_of_memory(nbytes, bytes);
    }
    head->ptr = static_cast<char*>(memory);
    segments.push_back(head.get());
    counters.reserved_bytes += bytes;
    counters.peak_reserved_bytes = std::max(counters.peak_reserved_bytes, counters.reserved_bytes);
    ++counters.segments;
    return head.release();
  }

  // Cuts `block` down to `size`, returning the remainder to the pool when it is worth keeping:
  // in the small pool any remainder is (all are multiples of 512 B); in the large pool only one
  // over 1 MiB, since every large request is over 1 MiB and a smaller piece could serve none.
  void split(Block* block, std::size_t size) {
    const std::size_t remainder = block->size - size;
    if (block->small ? remainder < kMinBlockSize : remainder <= kSmallSize) return;
    auto* rest = new Block{remainder, block->ptr + size, block->small, false, block, block->next};
    if (block->next != nullptr) block->next->prev = rest;
    block->next = rest;
    block->size = size;
    pool_of(rest).insert(rest);
  }

  // Merges the free `block` with its free neighbours; returns the surviving (lowest) block.
  Block* merge(Block* block) {
    Pool& pool = pool_of(block);
    if (Block* prev = block->prev; prev != nullptr && !prev->allocated) {
      pool.erase(prev);  // before its size (a key of the pool) changes
      prev->size += block->size;
      prev->next = block->next;
      if (block->next != nullptr) block->next->prev = prev;
      delete block;
      block = prev;
    }
    if (Block* next = block->next; next != nullptr && !next->allocated) {
      pool.erase(next);
      block->size += next->size;
      block->next = next->next;
      if (next->next != nullptr) next->next->prev = block;
      delete next;
    }
    return block;
  }
};

CachingAllocator::CachingAllocator(std::unique_ptr<MemoryBackend> backend, std::string device_name)
    : state_(std::make_unique<State>()) {
  if (backend == nullptr) throw UsageError("caching allocator for " + device_name + ": no memory backend");
  state_->backend = std::move(backend);
  state_->device = std::move(device_name);
}

CachingAllocator::~CachingAllocator() {
  State& s = *state_;
  for (Block* head : s.segments) {
    try {
      s.backend->release(head->ptr);
    } catch (...) {
      // A destructor must not throw; a failing device is past saving here anyway.
    }
    for (Block* block = head; block != nullptr;) {
      Block* next = block->next;
      delete block;
      block = next;
    }
  }
}

void* CachingAllocator::allocate(std::size_t nbytes) {
  if (nbytes == 0) return nullptr;
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  ++s.counters.allocations;
  if (nbytes > kMaxRequest) s.throw_out_of_memory(nbytes, 0);
  const std::size_t size = round_up(nbytes, kMinBlockSize);
  const bool small = size <= kSmallSize;
  s.live.reserve(s.live.size() + 1);  // so recording the block below cannot throw
  Block* block = State::take_best_fit(small ? s.small_pool : s.large_pool, size);
  if (block != nullptr) {
    ++s.counters.cache_hits;
  } else {
    block = s.new_segment(nbytes, size);
  }
  s.split(block, size);
  block->allocated = true;
  s.live.emplace(block->ptr, block);
  s.counters.allocated_bytes += block->size;
  s.counters.peak_allocated_bytes = std::max(s.counters.peak_allocated_bytes, s.counters.allocated_bytes);
  return block->ptr;
}

void CachingAllocator::release(void* ptr) {
  if (ptr == nullptr) return;
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  const auto it = s.live.find(ptr);
  if (it == s.live.end()) {
    std::ostringstream message;
    message << s.device << ": release of " << ptr
            << ", which this allocator did not hand out or which was already released";
    throw UsageError(message.str());
  }
  Block* block = it->second;
  s.live.erase(it);
  s.counters.allocated_bytes -= block->size;
  block->allocated = false;
  block = s.merge(block);
  s.pool_of(block).insert(block);
}

void CachingAllocator::empty_cache() {
  std::lock_guard lock(state_->mutex);
  state_->release_free_segments();
}

DeviceMemoryStats CachingAllocator::stats() const {
  std::lock_guard lock(state_->mutex);
  DeviceMemoryStats stats = state_->counters;
  stats.cached_bytes = stats.reserved_bytes - stats.allocated_bytes;
  return stats;
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard lock(state_->mutex);
  auto& c = state_->counters;
  c.peak_allocated_bytes = c.allocated_bytes;
  c.peak_reserved_bytes = c.reserved_bytes;
}

}  // namespace zkynet::detail
