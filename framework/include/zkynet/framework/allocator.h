// The caching allocator behind every CPU tensor.
//
// Freed buffers are kept, keyed by size, and handed out again: a training loop that
// allocates the same shapes each step stops paying the ~10 us first-touch page fault
// per 4 KiB that fresh memory costs on our machines.
//
//   auto stats = zkynet::cpu_allocator_stats();
//   zkynet::empty_cpu_cache();   // give cached buffers back to the OS
#pragma once

#include <cstddef>

namespace zkynet {

struct AllocatorStats {
  std::size_t allocated_bytes = 0;  // held by live tensors
  std::size_t cached_bytes = 0;     // freed and kept for reuse
  std::size_t hits = 0;             // allocations served from the cache
  std::size_t misses = 0;           // allocations that went to the OS
};

void* cpu_allocate(std::size_t nbytes);
void cpu_release(void* ptr, std::size_t nbytes);
AllocatorStats cpu_allocator_stats();
void empty_cpu_cache();
// Upper bound of cached bytes; beyond it freed buffers go back to the OS (default 4 GiB).
void set_cpu_cache_limit(std::size_t bytes);

}  // namespace zkynet

namespace zkynet {
// False in sanitizer builds, where every buffer goes straight back to the OS so that
// AddressSanitizer sees use-after-free.
bool cpu_allocator_caching();
}  // namespace zkynet
