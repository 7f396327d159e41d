// Between the CUDA files of framework/: the pinned pool's record of a queued copy.
#pragma once

namespace zkynet::detail {

// A copy queued on `stream` (a cudaStream_t) reads or writes host memory at `ptr`: when that
// memory is a pinned block, it is not reused before the copy completes. Pageable memory needs
// nothing (the driver has staged it before cudaMemcpyAsync returns).
void record_pinned_use(const void* ptr, void* stream);

}  // namespace zkynet::detail
