// The caching pool of pinned (page-locked) host buffers, written against a backend so the same
// code manages cudaHostAlloc'd memory on a GPU machine and malloc'd memory with hand-completed
// "events" in the tests. Private to framework/; never installed; no CUDA here (the CUDA backend
// lives in src/cuda/pinned.cpp).
//
// Why pin, why cache: a copy from pageable memory goes through the driver's own pinned bounce
// buffer and blocks the host; from pinned memory the DMA engine reads the buffer directly and
// the host returns at once, so copies overlap compute. But cudaHostAlloc/cudaFreeHost are
// slow (they map pages and synchronise the device), so freed buffers stay here for reuse.
//
// The trap a cache adds: an asynchronous copy may still read (or write) a buffer its tensor
// has already released. So every queued use is recorded as an event on its stream
// (record_use), and a released block is handed out again only once all its events have
// completed (PyTorch's CachingHostAllocator does the same).
//
//   HostPool pool(std::make_unique<PinnedBackend>());
//   void* a = pool.allocate(3000);        // rounds to 4096: a new cudaHostAlloc
//   pool.record_use(a + 100, stream);     // a copy reading a is queued on stream
//   pool.release(a);                      // its tensor dies; the copy may not have run yet
//   void* b = pool.allocate(4000);        // b != a while the copy is pending
//   ... the copy completes ...
//   void* c = pool.allocate(4096);        // c == a: a cache hit
#pragma once

#include <cstddef>
#include <memory>

namespace zkynet::detail {

struct HostPoolBackend {
  virtual ~HostPoolBackend() = default;
  // Called with the pool's mutex held: implementations need no locking of their own.
  // A new buffer of `bytes`, or nullptr when the host cannot pin that much.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* ptr) = 0;
  // An event marking the work queued on `stream` so far.
  virtual void* record_event(void* stream) = 0;
  // True once everything queued before the event has run.
  virtual bool event_done(void* event) = 0;
  virtual void destroy_event(void* event) = 0;
};

struct HostPoolStats {
  std::size_t allocated_bytes = 0;  // blocks handed out, not yet released
  std::size_t cached_bytes = 0;     // released blocks (reusable or waiting for their copies)
  std::size_t allocations = 0;      // calls to allocate()
  std::size_t cache_hits = 0;       // served by a released block
  std::size_t waiting_blocks = 0;   // released blocks whose recorded uses have not completed
};

// Sizes round up to a power of two (at least 512 B): batches of one loader have one size, so
// the buckets are few and every reuse is an exact fit. Thread-safe: one mutex.
class HostPool {
 public:
  explicit HostPool(std::unique_ptr<HostPoolBackend> backend);
  // Frees every buffer, handed out or not; pending events are destroyed, not waited for.
  ~HostPool();
  HostPool(const HostPool&) = delete;
  HostPool& operator=(const HostPool&) = delete;

  // Throws OutOfMemoryError when the backend fails even after the free blocks are released.
  void* allocate(std::size_t nbytes);
  // UsageError for a pointer the pool did not hand out or that is released already.
  void release(void* ptr);
  // Work queued on `stream` reads or writes the block holding `ptr` (any address inside it):
  // the block is not reused before that work completes. False, and nothing recorded, when no
  // block handed out by this pool holds `ptr` (pageable memory needs no record).
  bool record_use(const void* ptr, void* stream);
  // True when `ptr` lies inside a block handed out by this pool.
  bool contains(const void* ptr) const;
  // Gives every released block whose uses have completed back to the backend.
  void empty_cache();
  HostPoolStats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace zkynet::detail
