// The caching allocator for device memory (PyTorch's scheme), written against a MemoryBackend so
// the same code manages cudaMalloc'd memory on a GPU and malloc'd memory in the tests. Private to
// framework/ and the kernels; never installed; no CUDA here (the CUDA backend lives in src/cuda/).
//
// Why cache: cudaFree synchronises the device and cudaMalloc is a driver call far slower than a
// kernel launch, so a training step that allocated its temporaries afresh would stall on both.
// Freed blocks stay with the allocator and serve later requests; memory goes back to the device
// only on empty_cache(), the destructor, or when a cudaMalloc fails (empty the cache, retry once).
//
// Worked example (sizes in bytes; "segment" = one backend allocation, "block" = a piece of one):
//   CachingAllocator cuda(std::make_unique<CudaBackend>(0), "cuda:0");
//   void* a = cuda.allocate(1000);  // rounds to 1024; small (<= 1 MiB): a new 2 MiB segment is
//                                   //   split into a 1024 B block (a) and a free remainder
//   void* b = cuda.allocate(3000);  // 3072, cut from that remainder: b == a + 1024, no cudaMalloc
//   cuda.release(a);                // a's 1024 B go back to the small pool; the segment stays
//   void* c = cuda.allocate(600);   // 1024 again: best fit is a's old block, a cache hit: c == a
//   cuda.release(b);
//   cuda.release(c);                // b and c merge with the remainder: one free 2 MiB block
//   cuda.empty_cache();             // wholly free, so it goes back: stats().reserved_bytes == 0
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace zkynet::detail {

// Where raw memory comes from: cudaMalloc/cudaFree for a GPU, malloc/free in tests. Called with
// the allocator's mutex held, so an implementation needs no locking of its own.
struct MemoryBackend {
  virtual ~MemoryBackend() = default;
  // A new segment of `bytes`, or nullptr when the device is out of memory (never throws for
  // OOM: the allocator then empties its cache and retries before it reports the failure).
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* ptr) = 0;
  // What the device reports free; used only in out-of-memory messages.
  virtual std::size_t free_bytes() const = 0;
};

// Counters in the spirit of torch.cuda.memory_stats(); byte counts are of rounded blocks.
struct DeviceMemoryStats {
  std::size_t allocated_bytes = 0;       // blocks handed out and not yet released
  std::size_t reserved_bytes = 0;        // all segments held from the backend
  std::size_t cached_bytes = 0;          // reserved - allocated: free, kept for reuse
  std::size_t peak_allocated_bytes = 0;  // since construction or reset_peak_stats()
  std::size_t peak_reserved_bytes = 0;
  std::size_t allocations = 0;    // calls to allocate() for a non-zero size, served or not
  std::size_t cache_hits = 0;     // allocations served from a cached block (no backend call)
  std::size_t segments = 0;       // segments held now
  std::size_t alloc_retries = 0;  // backend failures answered by emptying the cache and retrying
  std::size_t ooms = 0;           // allocations that failed with OutOfMemoryError
};

// Round requests to 512 B; requests <= 1 MiB come from 2 MiB segments (the small pool), larger
// ones from the large pool, whose segments are 20 MiB for requests under 10 MiB and the request
// rounded up to 2 MiB beyond. A request takes the smallest free block of its pool that fits
// (best fit), split when the remainder is worth keeping: any remainder in the small pool
// (>= 512 B), only one over 1 MiB in the large pool (a smaller tail would mostly fragment it).
// A released block merges with its free neighbours in its segment, so a segment whose blocks
// are all free is one block again and can go back to the backend.
//
// Blocks start at multiples of 512 B from their segment's start, so they are aligned as the
// backend's segments are, up to 512 B (cudaMalloc gives 256 B). Thread-safe: one mutex.
class CachingAllocator {
 public:
  // `device_name` ("cuda:0") names the device in error messages.
  CachingAllocator(std::unique_ptr<MemoryBackend> backend, std::string device_name);
  // Releases every segment to the backend, including blocks still handed out.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `nbytes`. Zero bytes give nullptr (as cudaMalloc's 0-byte case gives no
  // usable memory), and release(nullptr) does nothing, so zero-sized tensors need no special case.
  // Throws OutOfMemoryError (naming the device, the request, the bytes in use, cached and free)
  // when the backend fails even after the cache is emptied.
  void* allocate(std::size_t nbytes);
  // Returns a block from allocate() to the cache. Throws UsageError for a pointer this allocator
  // did not hand out or that is already released (releasing it would corrupt the pools).
  void release(void* ptr);
  // Returns every wholly free segment to the backend; partly used segments stay.
  void empty_cache();
  DeviceMemoryStats stats() const;
  // Sets the peaks to the current values.
  void reset_peak_stats();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// "512 bytes", "1.50 KiB", "2.00 GiB": byte counts as out-of-memory messages show them.
std::string format_bytes(std::size_t bytes);

}  // namespace zkynet::detail
