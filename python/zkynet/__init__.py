"""zkynet: a deep-learning framework whose every call grounds an explicit, inspectable graph.

    from zkynet.framework import cg, op
    from zkynet.visual import plot_cg

Tensors on the CPU or a CUDA device (zkynet.Tensor; zkynet.tensor, zeros, randn, ...,
from_dlpack): see zkynet.tensors.
"""
from . import _zkynet
from ._zkynet import num_threads, set_num_threads
from .framework import cg, op  # noqa: F401
from . import cuda, data, nn, optim  # noqa: F401
from .tensors import (  # noqa: F401
    Tensor, arange, as_tensor, empty, eye, float32, float64, from_dlpack, full, int64, ones, ones_like, rand,
    randn, tensor, zeros, zeros_like,
)

__all__ = ["cg", "op", "nn", "optim", "data", "cuda", "num_threads", "set_num_threads",
           "Tensor", "tensor", "as_tensor", "from_dlpack", "zeros", "ones", "empty", "full", "zeros_like",
           "ones_like", "arange", "eye", "randn", "rand", "float32", "float64", "int64"]
__version__ = "0.1.0"
