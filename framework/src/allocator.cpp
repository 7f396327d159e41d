#include <zkynet/framework/allocator.h>
#include <zkynet/framework/error.h>

#include "replay_arena.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

namespace zkynet {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCaching = false;
#else
constexpr bool kCaching = true;
#endif

constexpr std::size_t kAlignment = 64;  // a cache line; AVX-512 loads stay aligned
constexpr std::size_t kHugePage = std::size_t{2} << 20;

std::size_t rounded_size(std::size_t nbytes) {
  const std::size_t unit = nbytes >= kHugePage ? kHugePage : kAlignment;
  return (std::max<std::size_t>(nbytes, 1) + unit - 1) / unit * unit;
}

void* system_allocate(std::size_t size) {
  const std::size_t alignment = size >= kHugePage ? kHugePage : kAlignment;
  void* ptr = std::aligned_alloc(alignment, size);
  if (ptr == nullptr) {
    throw Error("cpu allocator: out of memory allocating " + std::to_string(size) + " bytes");
  }
  // Huge pages cut the first-touch cost of big buffers ~40x on our VMs.
  if (size >= kHugePage) madvise(ptr, size, MADV_HUGEPAGE);
  return ptr;
}

class CachingAllocator {
 public:
  void* allocate(std::size_t nbytes) {
    const std::size_t size = rounded_size(nbytes);
    {
      std::lock_guard lock(mutex_);
      stats_.allocated_bytes += size;
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* ptr = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= size;
        ++stats_.hits;
        return ptr;
      }
      ++stats_.misses;
    }
    return system_allocate(size);
  }

  void release(void* ptr, std::size_t nbytes) {
    const std::size_t size = rounded_size(nbytes);
    {
      std::lock_guard lock(mutex_);
      stats_.allocated_bytes -= size;
      if (kCaching && stats_.cached_bytes + size <= limit_) {
        free_[size].push_back(ptr);
        stats_.cached_bytes += size;
        return;
      }
    }
    std::free(ptr);
  }

  void empty() {
    std::lock_guard lock(mutex_);
    for (auto& [size, ptrs] : free_) {
      for (void* ptr : ptrs) std::free(ptr);
    }
    free_.clear();
    stats_.cached_bytes = 0;
  }

  AllocatorStats stats() {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  void set_limit(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    limit_ = bytes;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
  std::size_t limit_ = std::size_t{4} << 30;
};

// Never destroyed: tensors in static objects may be freed after main returns.
CachingAllocator& allocator() {
  static auto* instance = new CachingAllocator();
  return *instance;
}

}  // namespace

// A compiled call's replay serves its planned buffers from its arena (replay_arena.h).
void* cpu_allocate(std::size_t nbytes) {
  if (detail::ReplayArena* arena = detail::open_arena()) return arena->allocate(nbytes);
  return allocator().allocate(nbytes);
}
void cpu_release(void* ptr, std::size_t nbytes) {
  if (!detail::arena_release(ptr)) allocator().release(ptr, nbytes);
}
void* detail::cached_allocate(std::size_t nbytes) { return allocator().allocate(nbytes); }
void detail::cached_release(void* ptr, std::size_t nbytes) { allocator().release(ptr, nbytes); }
AllocatorStats cpu_allocator_stats() { return allocator().stats(); }
void empty_cpu_cache() { allocator().empty(); }
void set_cpu_cache_limit(std::size_t bytes) { allocator().set_limit(bytes); }
bool cpu_allocator_caching() { return kCaching; }

}  // namespace zkynet
