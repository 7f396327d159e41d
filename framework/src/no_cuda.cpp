// A build without CUDA: no device answers, and every device operation says so.
#include <zkynet/framework/cuda.h>
#include <zkynet/framework/error.h>
#include <zkynet/internal/device.h>

#include <string>

namespace zkynet {
namespace detail {

void throw_no_cuda(std::string_view what) {
  throw UsageError(std::string(what) + " has no CUDA implementation in this build (built without CUDA: ZKYNET_CUDA=OFF "
                   "or no toolkit found)");
}

void* device_allocate(std::size_t, Device device) { throw_no_cuda("allocating on " + device.str()); }
void device_release(void*, Device) {}
void copy_bytes(void*, Device dst, const void*, Device src, std::size_t) {
  throw_no_cuda("copying " + src.str() + " -> " + dst.str());
}
void cuda_fill(const Tensor&, double) { throw_no_cuda("fill_"); }
void cuda_copy(const Tensor&, const Tensor&) { throw_no_cuda("copy_"); }
void cuda_add_inplace(const Tensor&, const Tensor&) { throw_no_cuda("add_"); }
void* cuda_stream(Device device) { throw_no_cuda("a stream on " + device.str()); }
void* pinned_allocate(std::size_t) {
  throw UsageError("pin_memory needs a CUDA device: this build has no CUDA (ZKYNET_CUDA=OFF or no toolkit found)");
}
void pinned_release(void*) {}
bool is_pinned(const void*) { return false; }
void* copy_async(void*, Device dst, const void*, Device src, std::size_t) {
  throw_no_cuda("copying " + src.str() + " -> " + dst.str());
}
void await_copy(void*, Device) {}

}  // namespace detail

namespace cuda {

bool built() { return false; }
bool is_available() { return false; }
int device_count() { return 0; }
void synchronize(int) {}
void* stream(int device) { detail::throw_no_cuda("a stream on " + Device::cuda(device).str()); }
MemoryStats memory_stats(int) { return {}; }
void empty_cache(int) {}
void reset_peak_memory_stats(int) {}
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }

}  // namespace cuda
}  // namespace zkynet
