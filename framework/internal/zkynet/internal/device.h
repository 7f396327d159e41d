// What framework/ and ops/ kernels need of a device beyond the public API: raw memory, copies
// and the per-device stream. CUDA builds implement it in framework/src/cuda/, others in
// framework/src/no_cuda.cpp (every call there throws "... has no CUDA implementation in this
// build"). Never installed; no CUDA header here, so .cpp kernels may include it.
#pragma once

#include <zkynet/framework/tensor.h>

#include <cstddef>
#include <string_view>

namespace zkynet::detail {

// Memory of a CUDA device, from its caching allocator.
void* device_allocate(std::size_t nbytes, Device device);
void device_release(void* ptr, Device device);

// Copies nbytes between any two devices (host included); returns once dst holds the bytes
// when dst is the host, else once the copy is queued on dst's stream.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes);

// Tensor kernels of the framework itself on a CUDA tensor: any strides, dtype conversion in
// copy. Operands are on one device, shapes equal (the caller checked).
void cuda_fill(const Tensor& t, double value);
void cuda_copy(const Tensor& dst, const Tensor& src);
void cuda_add_inplace(const Tensor& dst, const Tensor& src);

// The stream every kernel of `device` runs on (a cudaStream_t, opaque here); makes `device` the
// calling thread's current device, so that the launch that follows goes to it.
void* cuda_stream(Device device);

// Pinned (page-locked) host memory from the pinned pool (host_pool.h, src/cuda/pinned.cpp).
// pinned_allocate throws UsageError "pin_memory needs a CUDA device: ..." in builds without
// CUDA and on machines where no device answers; is_pinned is then always false.
void* pinned_allocate(std::size_t nbytes);
void pinned_release(void* ptr);
bool is_pinned(const void* ptr);

// Queues a copy between the host and a CUDA device on that device's copy stream, after the
// work queued so far on its compute stream (so a reused device block is free and a source
// written by kernels is complete), and returns without waiting. A pinned host side is kept
// from reuse until the copy completes. Returns the copy's event: await_copy(event, device)
// makes the compute stream wait for it (without blocking the host) and frees it; every event
// must be awaited, also when the copied tensor is dropped unused, before its memory is freed.
void* copy_async(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes);
void await_copy(void* event, Device device);

[[noreturn]] void throw_no_cuda(std::string_view what);

}  // namespace zkynet::detail
