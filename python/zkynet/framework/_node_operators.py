"""Python's operators on graph values (Node, ModuleGraph, Parameter, Variable): each records the
same operator as the `op.*` function it names, so `x * self.param("w") + 1` inside `call()` builds
the graph `op.add(op.mult(x, self.param("w")), 1)` does.

    y = x @ w.T + b          # op.matmul, op.transpose, op.add
    m = x > 0                # op.greater: a 0/1 mask in x's dtype (no gradient)
    r = x[:, 1:3]            # op.slice;  x[0] and x[idx] (integer arrays) likewise

`==` stays identity (graphs and nodes compare by what they are, as zkynet's documentation
shows); use op.equal for elementwise equality.
"""
import numbers

import numpy as np

from . import op


def _pow(a, b):
    if isinstance(b, numbers.Real) and not isinstance(b, bool) and b == 2:
        return op.square(a)
    return op.pow(a, b)


_BINARY = {
    "add": op.add, "sub": op.sub, "mul": op.mult, "truediv": op.div, "matmul": op.matmul, "pow": _pow,
}
_COMPARISONS = {"lt": op.less, "le": op.less_equal, "gt": op.greater, "ge": op.greater_equal}


def _binary(fn):
    def forward(a, b):
        return fn(a, b)

    def reflected(a, b):
        return fn(b, a)

    return forward, reflected


def _transpose_all(x):
    """x.T: the axes reversed (a matrix transposed; vectors and numbers unchanged)."""
    n = len(x.shape)
    out = x
    for i in range(n // 2):
        out = op.transpose(out, i, n - 1 - i)
    return out


def _index_array(key, size, dim):
    idx = np.asarray(key)
    if idx.dtype == np.bool_:
        raise IndexError(f"indexing: boolean masks give data-dependent shapes, which a graph cannot record; "
                         f"use op.where(mask, x, 0) or integer indices (numpy.nonzero(mask)) along dimension {dim}")
    if idx.dtype.kind not in "iu":
        raise IndexError(f"indexing: indices along dimension {dim} must be integers, got {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -size or idx.max() >= size):
        bad = idx[(idx < -size) | (idx >= size)][0]
        raise IndexError(f"index {bad} is out of bounds for dimension {dim} with size {size}")
    return np.where(idx < 0, idx + size, idx)


def _expand_ellipsis(key, ndim):
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("indexing: an index can only have a single ellipsis ('...')")
    if used > ndim:
        raise IndexError(f"too many indices: {used} for a value of {ndim} dimensions")
    out = []
    for k in key:
        if k is Ellipsis:
            out.extend([slice(None)] * (ndim - used))
        else:
            out.append(k)
    return out + [slice(None)] * (ndim - sum(1 for k in out if k is not None))


def _getitem(x, key):
    """x[key] with ints, slices (positive steps), None, ... and one integer array, as numpy."""
    shape = tuple(x.shape)
    key = _expand_ellipsis(key if isinstance(key, tuple) else (key,), len(shape))
    out, dim, final, arrays = x, 0, [], 0
    for k in key:
        if k is None:
            final.append(1)
            continue
        size = shape[dim]
        if isinstance(k, slice):
            start, stop, step = k.indices(size)
            if step <= 0:
                raise ValueError(f"indexing: slice steps must be positive, got {step} (dimension {dim})")
            stop = max(stop, start)
            if (start, stop, step) != (0, size, 1):
                out = op.slice(out, dim, start, stop, step)
            final.append(len(range(start, stop, step)))
        elif isinstance(k, (numbers.Integral, np.integer)) and not isinstance(k, bool):
            i = int(k)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {size}")
            i %= size
            out = op.slice(out, dim, i, i + 1)
        else:
            arrays += 1
            if arrays > 1:
                raise IndexError("indexing: one integer-array index per subscript is supported (numpy's advanced "
                                 "indexing with several arrays is not); index in two steps")
            idx = _index_array(k, size, dim)
            out = op.index_select(out, dim, idx.reshape(-1))
            final.extend(idx.shape)
        dim += 1
    return out if tuple(final) == tuple(out.shape) else op.reshape(out, final)


def _len(x):
    if not x.shape:
        raise TypeError("len() of a 0-d value")
    return x.shape[0]


def _detach(x):
    """x's value, through which no gradient flows (op.detach)."""
    return op.detach(x)


def install(*classes, with_shape=True):
    """Gives each class Python's arithmetic, comparison and (with_shape) indexing operators."""
    for cls in classes:
        for name, fn in _BINARY.items():
            forward, reflected = _binary(fn)
            setattr(cls, f"__{name}__", forward)
            setattr(cls, f"__r{name}__", reflected)
        for name, fn in _COMPARISONS.items():
            setattr(cls, f"__{name}__", _binary(fn)[0])
        cls.__array_ufunc__ = None  # numpy_array * node: numpy defers to the node's reflected operator
        cls.__neg__ = lambda x: op.neg(x)
        cls.__pos__ = lambda x: x
        cls.__abs__ = lambda x: op.abs(x)
        cls.detach = _detach
        if with_shape:
            cls.__getitem__ = _getitem
            cls.T = property(_transpose_all, doc="the axes reversed (op.transpose)")
            if not hasattr(cls, "ndim"):
                cls.ndim = property(lambda x: len(x.shape), doc="the number of dimensions")
            if "__len__" not in cls.__dict__:
                cls.__len__ = _len
