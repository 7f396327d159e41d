"""Property-based fuzzing of every operator in zkynet's Python operator list (op.__all__).

Each operator gets random arguments: arrays of random shapes (empty and 0-d included), of
the dtypes zkynet uses (float32, float64, int64), converts (bool, int8..int32, uint8..uint64,
float16, longdouble) or refuses (complex, object, uint64 values >= 2**63), in either byte
order, contiguous or not (reversed axes: negative strides, stepped and transposed views,
zero-stride broadcasts), and random argument values (axes out of range, negative or repeated,
reshape sizes, indices outside the axis, bad reductions, strides, paddings ...).

The outcome must be one of:
  * a zkynet exception (ShapeError, DTypeError, IndexError, UsageError), or
  * a result equal to PyTorch's (numpy's for dot and slice) on the values zkynet sees (the
    arrays converted by zkynet's rules) — shape, dtype and values; where the reference itself
    refuses the arguments, zkynet must have refused them too.
Never a crash: a segfault here kills pytest, which is the point.

Deterministic (derandomize=True, no example database) and bounded (MAX_EXAMPLES per
operator: about 35 s for all of them on 2 cores); the cases it found that crashed or went wrong
are kept in EXAMPLES (explicit @example cases, run first every time).
"""
import os
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from zkynet.framework import op  # noqa: E402
from zkynet._zkynet import DTypeError, ShapeError, UsageError  # noqa: E402
from zkynet._zkynet import IndexError as ZkIndexError  # noqa: E402

F = torch.nn.functional
ZK_ERRORS = (ShapeError, DTypeError, ZkIndexError, UsageError)
# What a reference may raise when it refuses its arguments.
REF_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)

MAX_EXAMPLES = int(os.environ.get("ZKYNET_FUZZ_EXAMPLES", "200"))
# ZKYNET_FUZZ_EXAMPLES=2000 ZKYNET_FUZZ_RANDOM=1 explores further (new seeds each run).
FUZZ = settings(derandomize=not os.environ.get("ZKYNET_FUZZ_RANDOM"), max_examples=MAX_EXAMPLES, deadline=None,
                database=None, suppress_health_check=list(HealthCheck), print_blob=False)


# ---- values ------------------------------------------------------------------------------------

NATIVE = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)]
CONVERTED = [np.dtype(t) for t in (np.bool_, np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32,
                                   np.uint64, np.float16, np.longdouble)]
REFUSED = [np.dtype(np.complex64), np.dtype(np.complex128), np.dtype(object)]
FLOATS = [np.dtype(np.float32), np.dtype(np.float64)]


def zk_view(a):
    """The array zkynet computes with for `a` (numpy's conversion rules), or None if refused."""
    a = np.asarray(a)
    kind = a.dtype.kind
    if kind == "f":
        return a.astype(np.float32 if a.dtype.itemsize == 4 else np.float64)
    if kind in "biu":
        if kind == "u" and a.size and int(a.max()) > 2**63 - 1:
            return None
        return a.astype(np.int64)
    return None


def elements(dtype):
    if dtype.kind in "fc":
        return st.floats(-4, 4, width=32)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind == "u":
        if dtype.itemsize == 8:
            return st.one_of(st.integers(0, 8), st.just(2**63 + 5))
        return st.integers(0, 8)
    return st.integers(-4, 4)


@st.composite
def shapes(draw, min_dims=0, max_dims=4, min_side=0, max_side=4):
    return draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side))


@st.composite
def tensors(draw, shape=None, dtypes=None, min_dims=0, max_dims=4, min_side=0, max_side=4):
    """A numpy array of a random dtype, byte order and memory layout."""
    if shape is None:
        shape = draw(shapes(min_dims, max_dims, min_side, max_side))
    if dtypes is None:
        dtype = draw(st.one_of(st.sampled_from(NATIVE), st.sampled_from(NATIVE + CONVERTED + REFUSED)))
    else:
        dtype = draw(st.sampled_from(dtypes))
    store = np.float64 if dtype.kind in "fc" else (np.uint64 if dtype.kind == "u" else
                                                  (np.bool_ if dtype.kind == "b" else np.int64))
    a = draw(hnp.arrays(store, shape, elements=elements(dtype))).astype(dtype)
    if dtype.kind == "c":
        a = a + 1j
    if a.dtype.itemsize > 1 and dtype.kind != "O" and draw(st.integers(0, 4)) == 0:
        a = a.astype(a.dtype.newbyteorder(">"))  # non-native byte order (x86 is little-endian)
    layout = draw(st.sampled_from(["contiguous", "contiguous", "reversed", "stepped", "transposed", "broadcast"]))
    if a.ndim == 0 or layout == "contiguous":
        return a
    axis = draw(st.integers(0, a.ndim - 1))
    if layout == "reversed":  # same values, negative stride along `axis`
        return np.flip(np.flip(a, axis).copy(), axis)
    if layout == "stepped":  # same values, every other element of a bigger buffer
        big_shape = list(a.shape)
        big_shape[axis] *= 2
        big = np.zeros(big_shape, dtype=a.dtype)
        index = tuple(slice(None, None, 2) if i == axis else slice(None) for i in range(a.ndim))
        big[index] = a
        return big[index]
    if layout == "transposed":  # same values, Fortran order
        return np.asfortranarray(a)
    if a.shape[axis] == 0:
        return a
    first = tuple(slice(0, 1) if i == axis else slice(None) for i in range(a.ndim))
    return np.broadcast_to(a[first], a.shape)  # zero stride along `axis`, read-only


def float_tensors(**kwargs):
    """Mostly float32/float64, sometimes anything (to see dtypes refused)."""
    return st.one_of(tensors(dtypes=FLOATS, **kwargs), tensors(dtypes=FLOATS, **kwargs), tensors(**kwargs))


def index_tensors(shape, size):
    """int64 (sometimes other) indices in [-1, size]: mostly valid, sometimes out of range."""
    count = int(np.prod(shape))
    values = st.lists(st.one_of(st.integers(0, max(size - 1, 0)), st.integers(-1, size + 1)),
                      min_size=count, max_size=count)
    dtypes = st.sampled_from([np.int64, np.int64, np.int64, np.int32, np.float32])
    return st.builds(lambda v, dtype: np.asarray(v, dtype=np.int64).reshape(shape).astype(dtype), values, dtypes)


# int64's extremes and values whose products overflow it.
EXTREME_INTS = st.sampled_from([-2**63, 2**63 - 1, 2**62, -2**62, 2**32 + 1, 2**31])


def axis_values(ndim):
    return st.one_of(st.integers(-ndim - 2, ndim + 1), st.integers(-ndim - 2, ndim + 1), EXTREME_INTS)


def axes_arguments(ndim):
    """None, an int, or a list/tuple of ints (out of range, negative and repeated included)."""
    ints = axis_values(ndim)
    return st.one_of(st.none(), ints, st.lists(ints, max_size=3), st.lists(ints, max_size=3).map(tuple))


# ---- the operators: argument strategies and references -----------------------------------------

def t(a):
    """The torch tensor of what zkynet sees for an array argument."""
    return torch.from_numpy(np.array(zk_view(a)))


def as_torch(value):
    if isinstance(value, np.ndarray):
        return t(value)
    if isinstance(value, list):
        return [as_torch(v) for v in value]
    return value


@st.composite
def unary_args(draw):
    return (draw(tensors()),), {}


@st.composite
def binary_args(draw):
    if draw(st.integers(0, 3)) > 0:
        a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, min_side=0,
                                                                  max_side=4)).input_shapes
    else:
        a_shape, b_shape = draw(shapes(max_dims=3)), draw(shapes(max_dims=3))
    a = draw(tensors(shape=a_shape))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        # A Python number (exact in float32: torch computes with it in float32, zkynet in float64).
        b = draw(st.one_of(st.integers(-3, 3), st.sampled_from([-2.5, -1.0, 0.0, 0.25, 1.5, 3.0])))
    else:
        b = draw(tensors(shape=b_shape, dtypes=[a.dtype] if kind < 3 else None))
    return ((a, b) if draw(st.booleans()) else (b, a)), {}


@st.composite
def matmul_args(draw, max_batch_dims=2):
    n, k, m = draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.integers(0, 4))
    k2 = k if draw(st.integers(0, 4)) > 0 else draw(st.integers(0, 4))
    batch = draw(shapes(max_dims=max_batch_dims, max_side=3))
    a_shape = draw(st.sampled_from([(k,), (n, k), batch + (n, k)]))
    b_batch = batch if draw(st.booleans()) else draw(shapes(max_dims=max_batch_dims, max_side=3))
    b_shape = draw(st.sampled_from([(k2,), (k2, m), b_batch + (k2, m)]))
    dtype = draw(st.sampled_from(FLOATS))
    a = draw(st.one_of(tensors(shape=a_shape, dtypes=[dtype]), tensors(shape=a_shape)))
    b = draw(st.one_of(tensors(shape=b_shape, dtypes=[dtype]), tensors(shape=b_shape)))
    return (a, b), {}


@st.composite
def dot_args(draw):
    n, k, m = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    k2 = k if draw(st.integers(0, 4)) > 0 else draw(st.integers(0, 3))
    a_shape = draw(st.sampled_from([(), (k,), (n, k)]))
    b_shape = draw(st.sampled_from([(), (k2,), (k2, m), (2, k2, m)]))
    dtype = draw(st.sampled_from(FLOATS))
    return (draw(tensors(shape=a_shape, dtypes=[dtype])), draw(tensors(shape=b_shape, dtypes=[dtype]))), {}


@st.composite
def bmm_args(draw):
    b, n, k, m = (draw(st.integers(0, 3)) for _ in range(4))
    a_shape = draw(st.sampled_from([(b, n, k), (n, k), (b, n, k, 1)]))
    b_shape = (draw(st.sampled_from([b, b, b + 1])), k if draw(st.integers(0, 4)) else k + 1, m)
    dtype = draw(st.sampled_from(FLOATS))
    return (draw(float_tensors(shape=a_shape)), draw(tensors(shape=b_shape, dtypes=[dtype]))), {}


@st.composite
def linear_args(draw):
    batch = draw(shapes(max_dims=2, max_side=3))
    n_in, n_out = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(FLOATS))
    x = draw(float_tensors(shape=batch + (n_in,)))
    w = draw(tensors(shape=(n_out, n_in if draw(st.integers(0, 4)) else n_in + 1), dtypes=[dtype]))
    bias = draw(st.one_of(st.none(), tensors(shape=(n_out,), dtypes=[dtype]),
                          tensors(shape=(n_out + 1,), dtypes=[dtype])))
    return (x, w, bias), {}


@st.composite
def reduce_args(draw, floats=False):
    x = draw(float_tensors() if floats else tensors())
    return (x, draw(axes_arguments(x.ndim)), draw(st.booleans())), {}


@st.composite
def var_args(draw):
    x = draw(float_tensors())
    return (x, draw(axes_arguments(x.ndim)), draw(st.booleans()), draw(st.booleans())), {}


@st.composite
def logsumexp_args(draw):
    x = draw(float_tensors())
    dim = draw(st.one_of(axis_values(x.ndim), st.lists(axis_values(x.ndim), max_size=3)))
    return (x, dim, draw(st.booleans())), {}


@st.composite
def reshape_args(draw):
    x = draw(tensors(max_dims=3))
    n = x.size
    valid = [[n], [-1], [1, n], [n, 1, -1], list(x.shape[::-1]), [-1, 1] + list(x.shape)]
    shape = draw(st.one_of(st.sampled_from(valid), st.lists(st.integers(-2, 6), max_size=4),
                           st.lists(st.one_of(st.integers(-1, 3), EXTREME_INTS), max_size=4)))
    return (x, shape), {}


@st.composite
def transpose_args(draw):
    x = draw(tensors())
    return (x, draw(axis_values(x.ndim)), draw(axis_values(x.ndim))), {}


@st.composite
def dim_args(draw, floats=True):
    x = draw(float_tensors() if floats else tensors())
    return (x, draw(axis_values(x.ndim))), {}


@st.composite
def dim_keepdim_args(draw):
    x = draw(tensors())
    return (x, draw(axis_values(x.ndim)), draw(st.booleans())), {}


REDUCTIONS = st.sampled_from(["mean", "sum", "none", "mean", "batchmean"])


@st.composite
def class_loss_args(draw):
    n, c = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    logits = draw(float_tensors(shape=draw(st.sampled_from([(n, c), (c,), (n, c, 2)]))))
    target_shape = draw(st.sampled_from([(n,), (n,), (), (n, 1)]))
    target = draw(index_tensors(target_shape, c))
    return (logits, target, draw(REDUCTIONS)), {}


@st.composite
def pointwise_loss_args(draw, probabilities=False):
    shape = draw(shapes(max_dims=3))
    other = shape if draw(st.integers(0, 4)) else draw(shapes(max_dims=3))
    x = draw(float_tensors(shape=shape))
    y = draw(tensors(shape=other, dtypes=[x.dtype] if x.dtype.kind == "f" and draw(st.integers(0, 3)) else None))
    if probabilities and y.dtype.kind == "f":
        y = np.asarray(np.abs(y) / 4, dtype=y.dtype)
    return (x, y, draw(REDUCTIONS)), {}


@st.composite
def join_args(draw):
    base = list(draw(shapes(max_dims=3)))
    count = draw(st.integers(0, 3))
    dtype = draw(st.sampled_from(NATIVE))
    xs = []
    for _ in range(count):
        shape = list(base)
        if shape and draw(st.booleans()):
            shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(0, 3))
        xs.append(draw(st.one_of(tensors(shape=tuple(shape), dtypes=[dtype]), tensors(shape=tuple(shape)))))
    return (xs, draw(axis_values(len(base) + 1))), {}


@st.composite
def split_args(draw):
    x = draw(tensors(min_dims=0, max_dims=3))
    dim = draw(axis_values(x.ndim))
    size = x.shape[dim] if -x.ndim <= dim < x.ndim else 3
    sections = draw(st.one_of(st.integers(-1, 4), EXTREME_INTS,
                              st.lists(st.integers(0, 3), max_size=3),
                              st.lists(st.one_of(st.integers(-1, 3), EXTREME_INTS), max_size=3),
                              st.just([size]), st.just([0, size])))
    return (x, sections, dim), {}


@st.composite
def slice_args(draw):
    x = draw(tensors(min_dims=0, max_dims=3))
    ints = st.one_of(st.integers(-6, 6), st.integers(-6, 6), EXTREME_INTS)
    return (x, draw(axis_values(x.ndim)), draw(ints), draw(ints), draw(st.one_of(st.integers(-1, 3), EXTREME_INTS))), {}


@st.composite
def index_select_args(draw):
    x = draw(tensors(max_dims=3))
    dim = draw(axis_values(x.ndim))
    size = x.shape[dim] if -x.ndim <= dim < x.ndim else 2
    index = draw(index_tensors(draw(st.sampled_from([(draw(st.integers(0, 4)),), (), (2, 2)])), size))
    return (x, dim, index), {}


@st.composite
def gather_args(draw):
    x = draw(tensors(max_dims=3))
    dim = draw(axis_values(x.ndim))
    size = x.shape[dim] if -x.ndim <= dim < x.ndim else 2
    shape = tuple(draw(st.integers(0, s + (1 if draw(st.integers(0, 5)) == 0 else 0))) for s in x.shape)
    if draw(st.integers(0, 5)) == 0:
        shape = shape + (1,)
    return (x, dim, draw(index_tensors(shape, size))), {}


@st.composite
def embedding_args(draw):
    rows, dim = draw(st.integers(0, 4)), draw(st.integers(0, 3))
    weight = draw(float_tensors(shape=draw(st.sampled_from([(rows, dim), (rows, dim), (rows,)]))))
    indices = draw(index_tensors(draw(shapes(max_dims=2, max_side=3)), rows))
    return (indices, weight), {}


@st.composite
def where_args(draw):
    c_shape, a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, min_side=0,
                                                                       max_side=3)).input_shapes
    a = draw(tensors(shape=a_shape))
    b = draw(st.one_of(tensors(shape=b_shape, dtypes=[a.dtype]), tensors(shape=b_shape), st.sampled_from([-1.5, 0.5])))
    return (draw(tensors(shape=c_shape)), a, b), {}


@st.composite
def clamp_args(draw):
    bound = st.one_of(st.none(), st.integers(-3, 3).map(float), st.floats(-3, 3),
                      st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300]))
    return (draw(tensors()), draw(bound), draw(bound)), {}


@st.composite
def pair(draw, low, high):
    value = st.one_of(st.integers(low, high), st.integers(low, high), st.integers(low, high), EXTREME_INTS)
    return draw(st.one_of(value, st.tuples(value, value)))


@st.composite
def conv2d_args(draw):
    groups = draw(st.sampled_from([1, 1, 2, 0]))
    n, c, h, w = draw(st.integers(0, 2)), draw(st.integers(0, 4)), draw(st.integers(0, 5)), draw(st.integers(0, 5))
    out = draw(st.integers(0, 4))
    kh, kw = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    cw = c // groups if groups and c % groups == 0 and draw(st.integers(0, 4)) else draw(st.integers(0, 3))
    x = draw(float_tensors(shape=draw(st.sampled_from([(n, c, h, w), (c, h, w)]))))
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    weight = draw(tensors(shape=(out, cw, kh, kw), dtypes=[dtype]))
    bias = draw(st.one_of(st.none(), tensors(shape=(out,), dtypes=[dtype])))
    return (x, weight, bias, draw(pair(0, 2)), draw(pair(0, 2)), draw(pair(0, 2)), groups), {}


@st.composite
def pool_args(draw, avg):
    x = draw(float_tensors(shape=(draw(st.integers(0, 2)), draw(st.integers(0, 2)), draw(st.integers(0, 5)),
                                  draw(st.integers(0, 5)))))
    kernel = draw(pair(0, 3))
    stride = draw(st.one_of(st.none(), pair(0, 2)))
    padding = draw(pair(0, 2))
    last = draw(st.booleans()) if avg else draw(pair(0, 2))
    return (x, kernel, stride, padding, last), {}


@st.composite
def layer_norm_args(draw):
    x = draw(float_tensors(max_dims=3))
    k = draw(st.integers(0, x.ndim))
    normalized = list(x.shape[x.ndim - k:]) if draw(st.integers(0, 4)) else draw(st.lists(st.integers(0, 3), max_size=2))
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    weight = draw(st.one_of(st.none(), tensors(shape=tuple(normalized), dtypes=[dtype])))
    bias = draw(st.one_of(st.none(), tensors(shape=tuple(normalized), dtypes=[dtype])))
    return (x, normalized, weight, bias, draw(st.sampled_from([1e-5, 1e-3]))), {}


@st.composite
def batch_norm_args(draw):
    n, c = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    x = draw(float_tensors(shape=draw(st.sampled_from([(n, c), (n, c, 2), (n, c, 2, 2), (c,)]))))
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    stats = st.one_of(st.none(), tensors(shape=(c,), dtypes=[dtype]))
    rm = draw(stats)
    rv = draw(stats)
    if rv is not None:
        rv = np.abs(rv) + 0.5
    weight = draw(st.one_of(st.none(), tensors(shape=(c,), dtypes=[dtype])))
    bias = draw(st.one_of(st.none(), tensors(shape=(c,), dtypes=[dtype])))
    return (x, rm, rv, weight, bias, draw(st.booleans()), draw(st.sampled_from([0.1, 0.5])), 1e-5), {}


@st.composite
def dropout_args(draw):
    return (draw(float_tensors()), draw(st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5, float("nan")])),
            draw(st.booleans())), {}


@st.composite
def sdpa_args(draw):
    batch = draw(shapes(max_dims=2, max_side=3))
    L, S, E, Ev = draw(st.integers(0, 5)), draw(st.integers(0, 5)), draw(st.integers(1, 4)), draw(st.integers(0, 3))
    dtype = draw(st.sampled_from(FLOATS))
    k_batch = batch if draw(st.integers(0, 3)) else draw(shapes(max_dims=2, max_side=3))
    q = draw(float_tensors(shape=batch + (L, E)))
    k = draw(tensors(shape=k_batch + (S, E if draw(st.integers(0, 5)) else E + 1), dtypes=[dtype]))
    v = draw(tensors(shape=batch + (S, Ev), dtypes=[dtype]))
    kind = draw(st.sampled_from(["none", "none", "bool", "float", "causal"]))
    kwargs = {}
    if kind == "bool":
        kwargs["attn_mask"] = draw(hnp.arrays(np.bool_, (L, S)))
    elif kind == "float":
        kwargs["attn_mask"] = draw(tensors(shape=(L, S), dtypes=[dtype]))
    elif kind == "causal":
        kwargs["is_causal"] = True
    return (q, k, v), kwargs


def ref_sdpa(q, k, v, attn_mask=None, is_causal=False):
    """The math path torch documents for scaled_dot_product_attention (torch 1.13 has no public one)."""
    L, S = q.size(-2), k.size(-2)
    bias = torch.zeros(L, S, dtype=q.dtype)
    if is_causal:
        bias.masked_fill_(torch.ones(L, S, dtype=torch.bool).tril().logical_not(), float("-inf"))
    if attn_mask is not None:
        m = torch.from_numpy(np.array(zk_view(attn_mask)))
        bias = bias.masked_fill(m == 0, float("-inf")) if attn_mask.dtype == np.bool_ else bias + m
    return torch.softmax(q @ k.transpose(-2, -1) / np.sqrt(q.size(-1)) + bias, dim=-1) @ v


def ref_sum_like(fn):
    def ref(x, axis=None, keepdim=False):
        if axis is None:
            axis = tuple(range(x.ndim))
        return fn(x, dim=axis, keepdim=keepdim)
    return ref


def ref_var_like(fn):
    def ref(x, dim=None, unbiased=True, keepdim=False):
        if dim is None:
            dim = tuple(range(x.ndim))
        if isinstance(dim, (list, tuple)) and len(dim) == 0:
            dim = tuple(range(x.ndim))
        return fn(x, dim=dim, unbiased=unbiased, keepdim=keepdim)
    return ref


def ref_logsumexp(x, dim, keepdim=False):
    if isinstance(dim, list) and not dim:  # zkynet: all axes (torch 1.13 fails on dim=[])
        if x.ndim == 0:
            return x.clone()
        dim = list(range(x.ndim))
    return torch.logsumexp(x, dim, keepdim)


def ref_dot(a, b):
    return np.dot(a.numpy(), b.numpy())


def ref_slice(x, dim, start, stop, step):
    x = x.numpy()
    if not -x.ndim <= dim < x.ndim or step <= 0:
        raise ValueError("refused")
    dim %= x.ndim
    return x[(slice(None),) * dim + (slice(start, stop, step),)]


def ref_elementwise(fn):
    """torch.maximum / minimum take tensors only: a Python number becomes a 0-d tensor."""
    def ref(a, b):
        if not isinstance(a, torch.Tensor):
            a = torch.tensor(a, dtype=b.dtype if isinstance(a, int) else None)
        if not isinstance(b, torch.Tensor):
            b = torch.tensor(b, dtype=a.dtype if isinstance(b, int) else None)
        return fn(a, b)
    return ref


def ref_where(c, a, b):
    return torch.where(c != 0, a, b)


def ref_clamp(x, lo, hi):
    if not x.is_floating_point() and any(v is not None and not (abs(v) < 2**53 and v == int(v)) for v in (lo, hi)):
        return SKIP  # zkynet documents converting the bounds to int64 (torch promotes to float)
    if not x.is_floating_point():
        lo, hi = (None if v is None else int(v) for v in (lo, hi))
    elif x.dtype == torch.float32:  # torch refuses bounds beyond float32; zkynet clamps in double
        lo, hi = (None if v is None else float(np.clip(v, -np.inf, np.inf).astype(np.float32)) for v in (lo, hi))
    return torch.clamp(x, lo, hi)


def ref_max(x, dim, keepdim=False):
    return torch.max(x, dim, keepdim).values


def ref_split(x, sections, dim):
    return list(torch.split(x, sections, dim))


def ref_conv2d(x, w, b, stride, padding, dilation, groups):
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


def ref_max_pool2d(x, k, stride, padding, dilation):
    return F.max_pool2d(x, k, stride, padding, dilation)


def ref_avg_pool2d(x, k, stride, padding, count_include_pad):
    return F.avg_pool2d(x, k, stride, padding, count_include_pad=count_include_pad)


def ref_layer_norm(x, shape, w, b, eps):
    return F.layer_norm(x, shape, w, b, eps)


def ref_batch_norm(x, rm, rv, w, b, training, momentum, eps):
    return F.batch_norm(x, rm, rv, w, b, training, momentum, eps)


def ref_loss(fn):
    def ref(x, y, reduction):
        if x.shape != y.shape:
            raise ValueError("zkynet's pointwise losses take one shape (torch broadcasts with a warning)")
        return fn(x, y, reduction=reduction)
    return ref


SKIP = object()
SCALAR_OPERANDS = {"add", "sub", "mult", "div", "pow", "maximum", "minimum", "where",
                   "greater", "greater_equal", "less", "less_equal", "equal", "not_equal"}


def ref_mask(fn):
    """torch's comparisons give bools; zkynet's, 1/0 in the operands' dtype."""
    return ref_elementwise(lambda a, b: fn(a, b).to(torch.result_type(a, b)))


SPECS = {
    "add": (binary_args(), torch.add),
    "sub": (binary_args(), torch.sub),
    "mult": (binary_args(), torch.mul),
    "div": (binary_args(), torch.div),
    "pow": (binary_args(), torch.pow),
    "greater": (binary_args(), ref_mask(torch.gt)),
    "greater_equal": (binary_args(), ref_mask(torch.ge)),
    "less": (binary_args(), ref_mask(torch.lt)),
    "less_equal": (binary_args(), ref_mask(torch.le)),
    "equal": (binary_args(), ref_mask(torch.eq)),
    "not_equal": (binary_args(), ref_mask(torch.ne)),
    "maximum": (binary_args(), ref_elementwise(torch.maximum)),
    "minimum": (binary_args(), ref_elementwise(torch.minimum)),
    "matmul": (matmul_args(), torch.matmul),
    "dot": (dot_args(), ref_dot),
    "bmm": (bmm_args(), torch.bmm),
    "linear": (linear_args(), F.linear),
    "neg": (unary_args(), torch.neg),
    "stop_gradient": (unary_args(), torch.Tensor.detach),
    "detach": (unary_args(), torch.Tensor.detach),
    "square": (unary_args(), torch.square),
    "exp": (unary_args(), torch.exp),
    "log": (unary_args(), torch.log),
    "sqrt": (unary_args(), torch.sqrt),
    "tanh": (unary_args(), torch.tanh),
    "relu": (unary_args(), torch.relu),
    "abs": (unary_args(), torch.abs),
    "sigmoid": (unary_args(), torch.sigmoid),
    "sum": (reduce_args(), ref_sum_like(torch.sum)),
    "mean": (reduce_args(floats=True), ref_sum_like(torch.mean)),
    "var": (var_args(), ref_var_like(torch.var)),
    "std": (var_args(), ref_var_like(torch.std)),
    "logsumexp": (logsumexp_args(), ref_logsumexp),
    "reshape": (reshape_args(), torch.reshape),
    "transpose": (transpose_args(), torch.transpose),
    "softmax": (dim_args(), torch.softmax),
    "log_softmax": (dim_args(), torch.log_softmax),
    "max": (dim_keepdim_args(), ref_max),
    "argmax": (dim_keepdim_args(), torch.argmax),
    "cross_entropy": (class_loss_args(), lambda x, y, reduction: F.cross_entropy(x, y, reduction=reduction)),
    "nll_loss": (class_loss_args(), lambda x, y, reduction: F.nll_loss(x, y, reduction=reduction)),
    "mse_loss": (pointwise_loss_args(), ref_loss(F.mse_loss)),
    "binary_cross_entropy_with_logits": (pointwise_loss_args(probabilities=True),
                                         ref_loss(F.binary_cross_entropy_with_logits)),
    "cat": (join_args(), torch.cat),
    "stack": (join_args(), torch.stack),
    "split": (split_args(), ref_split),
    "slice": (slice_args(), ref_slice),
    "index_select": (index_select_args(), torch.index_select),
    "gather": (gather_args(), torch.gather),
    "embedding": (embedding_args(), F.embedding),
    "where": (where_args(), ref_where),
    "clamp": (clamp_args(), ref_clamp),
    "conv2d": (conv2d_args(), ref_conv2d),
    "max_pool2d": (pool_args(avg=False), ref_max_pool2d),
    "avg_pool2d": (pool_args(avg=True), ref_avg_pool2d),
    "layer_norm": (layer_norm_args(), ref_layer_norm),
    "batch_norm": (batch_norm_args(), ref_batch_norm),
    "dropout": (dropout_args(), None),  # random: its properties are checked in check_dropout
    "scaled_dot_product_attention": (sdpa_args(), ref_sdpa),
    "gelu": (unary_args(), F.gelu),
}


# Where zkynet knowingly accepts what PyTorch refuses: the zkynet result is checked here instead.
def transpose_below_2d(out, x, axis0, axis1):
    # zkynet's rule (ops/src/shape.cpp, "as in numpy"): a tensor of < 2 dims is its own
    # transpose; the axes are then not checked.
    if x.ndim >= 2:
        return False
    np.testing.assert_array_equal(out.value, zk_view(x))
    return True


def empty_planes_with_padding(out, x, *_):
    # A plane of height or width 0 whose padding makes windows: zkynet convolves or pools the
    # padding (conv2d: the bias; max -inf; average 0 with count_include_pad); torch refuses
    # empty planes unless the batch or the channels are empty.
    return x.ndim == 4 and 0 in x.shape[2:]


EXTENSIONS = {"transpose": transpose_below_2d, "conv2d": empty_planes_with_padding,
              "max_pool2d": empty_planes_with_padding, "avg_pool2d": empty_planes_with_padding}


def empty_in_empty_out(out, *args):
    """Torch refuses some empty operands (conv2d of an empty batch, batch_norm without channels,
    conv2d without output channels ...) where zkynet returns an empty result: accepted."""
    outs = out if isinstance(out, list) else [out]
    return any(a.size == 0 for a in arrays_in(args)) and all(np.asarray(o.value).size == 0 for o in outs)


# ---- the property -------------------------------------------------------------------------------

def arrays_in(args):
    for a in args:
        if isinstance(a, np.ndarray):
            yield a
        elif isinstance(a, list):
            yield from arrays_in(a)


def ints_in(args):
    for a in args:
        if isinstance(a, (tuple, list)):
            yield from ints_in(a)
        elif isinstance(a, int):
            yield a


def compare(name, got, expected, strict_dtype):
    if isinstance(expected, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(expected), f"{name}: {len(got)} pieces, torch {len(expected)}"
        for g, e in zip(got, expected):
            compare(name, g, e, strict_dtype)
        return
    value = np.asarray(got.value)
    want = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert value.shape == want.shape, f"{name}: shape {value.shape}, reference {want.shape}"
    if strict_dtype:
        assert value.dtype == want.dtype, f"{name}: dtype {value.dtype}, reference {want.dtype}"
    if want.dtype.kind == "f" or value.dtype.kind == "f":
        tol = 1e-4 if np.float32 in (value.dtype, want.dtype) else 1e-9
        np.testing.assert_allclose(value.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol,
                                   equal_nan=True, err_msg=name)
    else:
        np.testing.assert_array_equal(value, want, err_msg=name)


def check_dropout(out, x, p, training):
    value, x = np.asarray(out.value), zk_view(x)
    assert value.shape == x.shape
    if not training or p == 0:
        np.testing.assert_array_equal(value, x)
    elif p == 1:
        np.testing.assert_array_equal(value, np.zeros_like(x))
    else:
        kept = value != 0
        np.testing.assert_allclose(value[kept], (x / (1 - p))[kept], rtol=1e-6)


def check(name, args, kwargs):
    fn = getattr(op, name)
    _, reference = SPECS[name]
    arrays = list(arrays_in(args))
    refused = any(zk_view(a) is None for a in arrays)
    # Copies for the reference, taken first: batch_norm updates running statistics in place.
    torch_args = None if refused else [as_torch(a) for a in args]
    try:
        out = fn(*args, **kwargs)
        for o in out if isinstance(out, list) else [out]:
            o.value  # noqa: B018 (the values come out as numpy arrays; that may fail too)
    except ZK_ERRORS:
        return
    assert not refused, f"{name} accepted an array zkynet cannot convert ({[a.dtype for a in arrays]})"
    if name == "dropout":
        check_dropout(out, *args)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = reference(*torch_args, **kwargs)
        except REF_ERRORS as error:
            if (name in EXTENSIONS and EXTENSIONS[name](out, *args)) or empty_in_empty_out(out, *args):
                return
            if name in ("max_pool2d", "avg_pool2d") and any(abs(v) >= 2**31 for v in ints_in(args)):
                return  # torch's pooling takes 32-bit sizes (2**63 - 1 becomes -1): nothing to compare with
            pytest.fail(f"{name}: zkynet returned a result where the reference refuses: {error}")
    if expected is SKIP:
        return
    # Python numbers: zkynet's floats are float64 where torch's default dtype is float32.
    strict_dtype = name not in SCALAR_OPERANDS or all(isinstance(a, np.ndarray) for a in args)
    compare(name, out, expected, strict_dtype)
    if name == "batch_norm" and args[5] and args[1] is not None and args[2] is not None:
        # In training mode the running statistics are updated in place, as torch's (zkynet
        # refuses arrays it cannot update in place: read-only or converted).
        compare(name + " running_mean", _Value(args[1]), torch_args[1], True)
        compare(name + " running_var", _Value(args[2]), torch_args[2], True)


class _Value:
    def __init__(self, value):
        self.value = value


def test_every_operator_has_a_fuzz_spec():
    assert sorted(SPECS) == sorted(op.__all__)


# Cases the fuzzer found (wrong results before the fix named), run first every time.
EXAMPLES = {
    # A 0-d byte-swapped array became 1-d (numpy's ascontiguousarray makes 0-d arrays 1-d).
    "neg": [((np.array(1.5, dtype=">f4"),), {})],
    "add": [((0, np.array(2.0, dtype=">f8")), {})],
    # A stride near 2**63 overflowed the first valid output's computation: heap corruption.
    "conv2d": [((np.zeros((1, 2, 1, 4), np.float32), np.ones((4, 2, 1, 1), np.float32), np.zeros(4, np.float32),
                 (2**63 - 1, 1), 2, 1, 1), {})],
    # A dilated kernel beyond int64 wrapped around: one output instead of a ShapeError.
    "max_pool2d": [((np.zeros((1, 1, 1, 1), np.float32), 2**63 - 1, None, 0, 2), {})],
    # (0, 2**63 - 1) exists in zkynet and torch, not in numpy: .value raises ShapeError.
    "reshape": [((np.zeros(0, np.float32), [0, 2**63 - 1]), {})],
    # A step near 2**63 overflowed the slice's length (a negative dimension; numpy refused .value).
    "slice": [((np.arange(2.), 0, -2**63, 2**63 - 1, 2**63 - 1), {})],
    # A NaN bound next to another bound left values unchanged; torch 1.13 gives NaN (and
    # leaves them unchanged when the NaN bound is alone).
    "clamp": [((np.array([0., 1., 3.]), 0.0, float("nan")), {}), ((np.array([0., 1.]), float("nan"), 5.0), {}),
              ((np.array([0., 1.]), float("nan"), None), {})],
    # Read-only running statistics were written through in training mode (a zero-stride view:
    # every channel into one element); now a UsageError.
    "batch_norm": [((np.arange(6.).reshape(2, 3), np.broadcast_to(np.zeros(1), (3,)), np.ones(3), None, None, True,
                     0.1, 1e-5), {})],
}


@pytest.mark.parametrize("name", op.__all__)
def test_operator_is_correct_or_refuses(name):
    strategy, _ = SPECS[name]

    def fuzz(case):
        args, kwargs = case
        check(name, args, kwargs)

    for case in EXAMPLES.get(name, []):
        fuzz = example(case)(fuzz)
    FUZZ(given(strategy)(fuzz))()
