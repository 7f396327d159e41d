"""zkynet: a deep-learning framework whose every call grounds an explicit, inspectable graph.

    from zkynet.framework import cg, op
    from zkynet.visual import plot_cg
"""
from . import _zkynet
from ._zkynet import num_threads, set_num_threads
from .framework import cg, op  # noqa: F401
from . import cuda, data, nn, optim  # noqa: F401

__all__ = ["cg", "op", "nn", "optim", "data", "cuda", "num_threads", "set_num_threads"]
__version__ = "0.1.0"
