"""Operators on graph values: inside a Module's call() they record nodes in the call's graph;
on plain values they just compute.

    a = op.add(x, self.param("w"))
    c = op.mult(a, op.square(x))
"""
from .._zkynet import ops as _ops

# Names follow torch.nn.functional where one exists; zkynet's own: mult, dot.
__all__ = ["add", "sub", "mult", "div", "pow", "matmul", "linear", "dot", "neg", "square", "exp", "log", "sqrt",
           "tanh", "relu", "abs", "sigmoid", "sum", "mean", "reshape", "transpose",
           "softmax", "log_softmax", "logsumexp", "cross_entropy", "nll_loss", "mse_loss",
           "binary_cross_entropy_with_logits", "cat", "stack", "split", "slice", "index_select", "gather",
           "embedding", "where", "clamp", "maximum", "minimum", "max", "argmax", "var", "std",
           "conv2d", "max_pool2d", "avg_pool2d", "layer_norm", "batch_norm", "dropout", "bmm",
           "greater", "greater_equal", "less", "less_equal", "equal", "not_equal"]

# The compiled functions themselves, one list naming them (no wrapper: per-op overhead matters).
globals().update({name: getattr(_ops, name) for name in __all__})
