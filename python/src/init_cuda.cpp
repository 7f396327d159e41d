// zkynet.cuda: whether a GPU answers, waiting for it, and the caching allocator's statistics.
// Answers False / 0 in builds without CUDA and on machines without a GPU or a driver.
#include <zkynet/framework/cuda.h>

#include <pybind11/pybind11.h>

#include <cstdint>

namespace py = pybind11;

namespace zkynet::python {

void init_cuda(py::module_& m) {
  m.def("is_built", &cuda::built, "whether this build has the CUDA kernels");
  m.def("is_available", &cuda::is_available, "whether a CUDA device answers (False without a GPU or a driver)");
  m.def("device_count", &cuda::device_count,
        "how many CUDA devices answer (0 without a driver or a GPU)");
  m.def("synchronize", &cuda::synchronize, py::arg("device") = 0, "waits for the device's queued kernels");
  m.def("stream", [](int device) { return reinterpret_cast<std::uintptr_t>(cuda::stream(device)); },
        py::arg("device") = 0,
        "the cudaStream_t (an int) zkynet queues every kernel of the device on, as torch's "
        "Stream.cuda_stream: for torch.cuda.ExternalStream or a DLPack __dlpack__(stream=...)");
  m.def("empty_cache", &cuda::empty_cache, py::arg("device") = 0, "returns wholly free cached segments to the device");
  m.def("reset_peak_memory_stats", &cuda::reset_peak_memory_stats, py::arg("device") = 0,
        "restarts the peak figures of memory_stats()");
  m.def("set_allow_tf32", &cuda::set_allow_tf32, py::arg("allow"), "TF32 tensor cores for float32 GEMMs (off by default)");
  m.def("allow_tf32", &cuda::allow_tf32,
        "whether float32 GEMMs may use TF32 tensor cores (off by default)");
  m.def(
      "memory_stats",
      [](int device) {
        const cuda::MemoryStats s = cuda::memory_stats(device);
        py::dict out;
        out["allocated_bytes"] = s.allocated_bytes;
        out["reserved_bytes"] = s.reserved_bytes;
        out["cached_bytes"] = s.cached_bytes;
        out["peak_allocated_bytes"] = s.peak_allocated_bytes;
        out["peak_reserved_bytes"] = s.peak_reserved_bytes;
        out["allocations"] = s.allocations;
        out["cache_hits"] = s.cache_hits;
        out["alloc_retries"] = s.alloc_retries;
        out["ooms"] = s.ooms;
        return out;
      },
      py::arg("device") = 0, "the caching allocator's figures, as torch.cuda.memory_stats() names them");
}

}  // namespace zkynet::python
