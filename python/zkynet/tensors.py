"""zkynet.Tensor and its factories, named and shaped like torch's.

    x = zkynet.randn(64, 3, device="cuda")           # on the GPU (dtype float32 by default)
    y = model(x)                                       # no copy: the value stays on the device
    y.tensor                                           # the result, a zkynet.Tensor on cuda:0
    y.value                                            # an explicit host copy (numpy)
    t = torch.from_dlpack(y.tensor)                    # shares the GPU memory
    z = zkynet.from_dlpack(torch_cuda_tensor)          # shares it the other way

Factories default to float32, as torch's do (`arange` and `full` with integers give int64);
`zkynet.tensor(data)` keeps zkynet's conversions (Python floats and float lists float64, ints
int64, numpy dtypes kept) and always copies; `as_tensor` and `from_dlpack` share memory.
`randn` and `rand` draw from the generator that `nn.manual_seed` seeds, on the host, so a seed
gives the same values on every device.
"""
import numbers

from . import _zkynet as _z

Tensor = _z.Tensor
from_dlpack = _z.from_dlpack

# dtype=zkynet.float32 reads like torch; the names are the strings zkynet uses everywhere.
float32 = "float32"
float64 = "float64"
int64 = "int64"


def tensor(data, dtype=None, device=None):
    """A new tensor holding a copy of `data` (numbers, nested lists, numpy arrays, zkynet.Tensor,
    DLPack producers), converted to `dtype` and placed on `device` ('cpu', 'cuda', 'cuda:N')."""
    return _z._convert(_z._as_tensor(data), dtype, device, True)


def as_tensor(data, dtype=None, device=None):
    """`data` as a tensor, sharing its memory when no conversion or move is asked for (numpy
    arrays of float32/float64/int64, zkynet.Tensor, DLPack producers on either device)."""
    return _z._convert(_z._as_tensor(data), dtype, device, False)


def zeros(*size, dtype=None, device=None):
    """zeros(2, 3) or zeros((2, 3)): float32 unless dtype says otherwise."""
    return _z._full(size, 0.0, dtype, device)


def ones(*size, dtype=None, device=None):
    return _z._full(size, 1.0, dtype, device)


def empty(*size, dtype=None, device=None):
    """Uninitialized memory of that shape."""
    return _z._empty(size, dtype, device)


def full(size, fill_value, dtype=None, device=None):
    """A tensor of `size` filled with `fill_value`: int64 for an integer (or bool), else float32."""
    size = tuple(size) if isinstance(size, (list, tuple)) else (size,)
    if isinstance(fill_value, numbers.Integral):
        return _z._full_int(size, int(fill_value), dtype, device)
    return _z._full(size, float(fill_value), dtype, device)


def zeros_like(input, dtype=None, device=None):
    """Zeros of `input`'s shape, dtype and device (each overridable)."""
    t = as_tensor(input)
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device)


def ones_like(input, dtype=None, device=None):
    t = as_tensor(input)
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device)


def arange(start, end=None, step=1, *, dtype=None, device=None):
    """[start, end) by step: int64 when all three are integers, else float32 (as torch)."""
    if end is None:
        start, end = 0, start
    integral = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    return _z._arange(float(start), float(end), float(step), integral, dtype, device)


def eye(n, m=None, *, dtype=None, device=None):
    """The n x m (default n x n) identity, float32 unless dtype says otherwise."""
    return _z._eye(n, n if m is None else m, dtype, device)


def randn(*size, dtype=None, device=None):
    """Normal(0, 1) samples, float32 unless dtype says otherwise (seeded by nn.manual_seed)."""
    return _z._randn(size, dtype, device)


def rand(*size, dtype=None, device=None):
    """Uniform [0, 1) samples, float32 unless dtype says otherwise (seeded by nn.manual_seed)."""
    return _z._rand(size, dtype, device)


__all__ = ["Tensor", "tensor", "as_tensor", "from_dlpack", "zeros", "ones", "empty", "full", "zeros_like",
           "ones_like", "arange", "eye", "randn", "rand", "float32", "float64", "int64"]
