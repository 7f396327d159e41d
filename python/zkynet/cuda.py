"""CUDA devices, as torch.cuda names them.

    from zkynet import cuda
    if cuda.is_available():
        model.to("cuda")
        print(cuda.memory_stats()["peak_allocated_bytes"])

is_available() is False in builds without CUDA and on machines without a GPU or a driver.
"""
from ._zkynet.cuda import (  # noqa: F401
    allow_tf32, device_count, empty_cache, is_available, is_built, memory_stats, reset_peak_memory_stats,
    set_allow_tf32, stream, synchronize,
)

__all__ = ["is_available", "is_built", "device_count", "synchronize", "stream", "memory_stats", "empty_cache",
           "reset_peak_memory_stats", "set_allow_tf32", "allow_tf32"]
