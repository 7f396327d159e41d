"""Operators on graph values: inside a Module's call() they record nodes in the call's graph;
on plain values they just compute.

    a = op.add(x, self.param("w"))
    c = op.mult(a, op.square(x))

Also reachable as `zkynet.op` (the same module). Names follow torch.nn.functional where one
exists; zkynet's own: mult, dot. Python's operators on nodes (x * w + 1, x @ w, x[0], x > 0)
record these same operators.
"""
from .._zkynet import ops as _ops
from .._zkynet import linalg  # torch.linalg's operators: op.linalg.solve, op.linalg.cholesky, ...

# The compiled functions themselves (no wrapper: per-operator overhead matters).
add = _ops.add
sub = _ops.sub
mult = _ops.mult
div = _ops.div
pow = _ops.pow
matmul = _ops.matmul
linear = _ops.linear
dot = _ops.dot
neg = _ops.neg
square = _ops.square
exp = _ops.exp
log = _ops.log
sqrt = _ops.sqrt
tanh = _ops.tanh
relu = _ops.relu
abs = _ops.abs
sigmoid = _ops.sigmoid
sum = _ops.sum
mean = _ops.mean
reshape = _ops.reshape
transpose = _ops.transpose
stop_gradient = _ops.stop_gradient
detach = _ops.detach
softmax = _ops.softmax
log_softmax = _ops.log_softmax
logsumexp = _ops.logsumexp
cross_entropy = _ops.cross_entropy
nll_loss = _ops.nll_loss
mse_loss = _ops.mse_loss
binary_cross_entropy_with_logits = _ops.binary_cross_entropy_with_logits
cat = _ops.cat
stack = _ops.stack
split = _ops.split
slice = _ops.slice
index_select = _ops.index_select
gather = _ops.gather
embedding = _ops.embedding
where = _ops.where
clamp = _ops.clamp
maximum = _ops.maximum
minimum = _ops.minimum
max = _ops.max
argmax = _ops.argmax
var = _ops.var
std = _ops.std
conv2d = _ops.conv2d
max_pool2d = _ops.max_pool2d
avg_pool2d = _ops.avg_pool2d
layer_norm = _ops.layer_norm
batch_norm = _ops.batch_norm
dropout = _ops.dropout
bmm = _ops.bmm
greater = _ops.greater
greater_equal = _ops.greater_equal
less = _ops.less
less_equal = _ops.less_equal
equal = _ops.equal
not_equal = _ops.not_equal
scaled_dot_product_attention = _ops.scaled_dot_product_attention
gelu = _ops.gelu

__all__ = [
    "add",
    "sub",
    "mult",
    "div",
    "pow",
    "matmul",
    "linear",
    "dot",
    "neg",
    "square",
    "exp",
    "log",
    "sqrt",
    "tanh",
    "relu",
    "abs",
    "sigmoid",
    "sum",
    "mean",
    "reshape",
    "transpose",
    "stop_gradient",
    "detach",
    "softmax",
    "log_softmax",
    "logsumexp",
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "binary_cross_entropy_with_logits",
    "cat",
    "stack",
    "split",
    "slice",
    "index_select",
    "gather",
    "embedding",
    "where",
    "clamp",
    "maximum",
    "minimum",
    "max",
    "argmax",
    "var",
    "std",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "layer_norm",
    "batch_norm",
    "dropout",
    "bmm",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "equal",
    "not_equal",
    "scaled_dot_product_attention",
    "gelu",
]
