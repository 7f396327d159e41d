// Internal: the memory plan of a compiled call's replays (compile.h).
//
// A replay runs the same kernels on the same shapes every time, so the sequence of buffer
// requests and releases it makes on its thread is the same every time. The first replay under
// an arena records that sequence; its buffers come from the caching allocator as usual. From
// it the arena plans offsets in one block: a buffer requested and released within the replay
// (a gradient in back(), a kernel's scratch) gets a range that only buffers with disjoint
// lifetimes share (first fit over the ranges freed so far); a buffer still live when the
// replay ends (a node's value, kept by the tape until the next replay; a gradient or optimizer
// state created on first use) escapes the plan and keeps coming from the caching allocator,
// so a tensor the user keeps is never overwritten.
//
// Later replays are served from the block, request by request. Each request is verified
// against the plan: its size, and that every planned buffer whose range it shares has been
// released. A mismatch drops the plan for good for this schedule (replays continue with the
// caching allocator); a buffer already served stays valid, its block freed with its last
// buffer. Nothing is ever handed out twice.
//
// The block's addresses stay fixed across replays: what a CUDA Graph capture of the replay
// needs (compile.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace zkynet::detail {

struct ArenaBlock;

class ReplayArena {
 public:
  ReplayArena();
  ~ReplayArena();
  ReplayArena(const ReplayArena&) = delete;
  ReplayArena& operator=(const ReplayArena&) = delete;

  // While a Scope lives, this thread's CPU buffer requests and releases go through the arena.
  // complete() marks the replay finished; a scope left without it (an exception) drops the
  // recording or the plan.
  class Scope {
   public:
    explicit Scope(ReplayArena& arena);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    void complete() { completed_ = true; }

   private:
    ReplayArena* arena_;
    ReplayArena* previous_;
    bool completed_ = false;
  };

  struct Stats {
    std::size_t planned_replays = 0;  // replays served by the plan from start to end
    std::size_t served = 0;           // buffers served from the block, all replays
    std::size_t planned_buffers = 0;  // buffers the plan serves per replay
    std::size_t escaping = 0;         // buffers per replay left to the caching allocator
    std::size_t block_bytes = 0;      // the block's size (0 before a plan)
    std::size_t planned_bytes = 0;    // the planned buffers' sizes added up (what reuse saves)
    bool dropped = false;             // a mismatch dropped the plan for good
  };
  const Stats& stats() const { return stats_; }

  void* allocate(std::size_t nbytes);  // for cpu_allocate while this arena's scope is open
  void note_release(void* ptr);        // a release during the recording replay

 private:
  struct Plan;
  struct Recording;
  void finish(bool completed);
  void build_plan();
  void drop();

  std::unique_ptr<Recording> recording_;  // the first replay's requests; null once planned
  std::unique_ptr<Plan> plan_;
  std::shared_ptr<ArenaBlock> block_;
  Stats stats_;
  bool failed_ = false;   // this replay left the plan: its remaining requests go to the cache
  std::size_t next_ = 0;  // the next request's index within the replay
};

// The hooks of allocator.cpp. open_arena(): the arena of this thread's replay, or null.
// arena_release(): whether `ptr` was served by an arena (any thread, any arena), released now.
ReplayArena* open_arena();
bool arena_release(void* ptr);
// The caching allocator itself (allocator.cpp), for requests an arena does not serve.
void* cached_allocate(std::size_t nbytes);
void cached_release(void* ptr, std::size_t nbytes);

}  // namespace zkynet::detail
