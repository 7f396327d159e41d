// The one CPU thread pool kernels share (blocking workers, sized by OMP_NUM_THREADS or the core count).
//
//   zkynet::parallel_for(n, [&](std::int64_t begin, std::int64_t end) { ... });
#pragma once

#include <cstdint>
#include <functional>

namespace zkynet {

// Below this many elements a loop runs on the calling thread: waking threads costs more.
inline constexpr std::int64_t kParallelGrain = std::int64_t{1} << 16;

// Splits [0, n) into contiguous chunks run on the pool; serial when n < grain.
void parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& body,
                  std::int64_t grain = kParallelGrain);
int num_threads();
void set_num_threads(int n);

}  // namespace zkynet
