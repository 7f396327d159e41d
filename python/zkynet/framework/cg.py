"""zkynet's computational-graph framework, as documented:

    from zkynet.framework import cg, op

    class SimpleModel(cg.Module):
        def __init__(self, w0=1):
            super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", w0),))

        def call(self, x):
            return op.mult(op.add(x, self.param("w")), op.square(x))

    m = SimpleModel()
    result = m(3)            # a ModuleGraph: result.value == 36
    result.back()
    result.grad(m.param("w")), result.grad(m.input("x"))     # 9, 33

Operators written in Python define only their forward (`_op_impl`, with numpy); their exact
derivatives come from the complex step (see `Operator`).
"""
import numpy as np

from .._zkynet import framework as _fw

Variable = _fw.Variable
Parameter = _fw.Parameter
Input = _fw.Input
Node = _fw.Node
ModuleGraph = _fw.ModuleGraph
Function = _fw.Function
gradcheck = _fw.gradcheck


class ValueArray(np.ndarray):
    """The numpy array zkynet returns values and gradients as: a read-only view of zkynet's memory.

    It is read-only because the graph shares it (writing would corrupt the graph; take a copy()
    to modify). It exports itself through DLPack without a copy, which numpy's own `__dlpack__`
    refuses for read-only arrays: `torch.from_dlpack(result.value)` shares the memory (do not
    write through the tensor either). numpy functions on it give plain arrays.
    """

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = tuple(x.view(np.ndarray) if isinstance(x, ValueArray) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, ValueArray) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if copy:
            return np.array(self).__dlpack__()
        return _fw._to_dlpack(self)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


_fw._set_value_array_type(ValueArray)


class Module(_fw._Module):
    """A user-defined function: subclass it and define `call(self, *inputs)`.

    Calling the module with concrete values grounds a flat graph (a ModuleGraph) with its own
    call id; modules called inside `call` join it. Submodules held as attributes are registered
    under their attribute names, so `parameters()` and `named_parameters()` find theirs.
    """

    def __init__(self, inputs=(), params=()):
        super().__init__(list(inputs), list(params), type(self).__name__)

    def __setattr__(self, name, value):
        if isinstance(value, (_fw.ModuleBase, Parameter)) and not self._initialized():
            # As in PyTorch: the C++ module that registers them exists only after Module.__init__.
            kind = "module" if isinstance(value, _fw.ModuleBase) else "parameter"
            raise AttributeError(f"cannot assign {kind} '{name}' before Module.__init__() call: "
                                 f"call super().__init__(...) first in {type(self).__name__}.__init__")
        if isinstance(value, _fw.ModuleBase):
            self._register_module(name, value)
        super().__setattr__(name, value)

    def call(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define call(self, ...)")


class Operator(_fw._Operator):
    """An operator written in Python: define `_op_impl(self, *inputs)` with numpy.

    Derivatives are exact (to rounding), never finite differences: by default they come from
    the complex step, f'(x) = Im f(x + ih) / h with h = 1e-30, one evaluation per input element
    (a single evaluation per input when the class sets `elementwise = True`). This requires
    `_op_impl` to be real-analytic in its inputs and to accept complex arrays: numpy's
    arithmetic, exp, log, sin, tanh, sqrt, dot, sum ... qualify; abs, maximum, sign, comparisons,
    rounding and anything that drops the imaginary part do not, and are detected and refused
    with a TypeError (define `vjp` yourself for those): during the complex step, `_op_impl`
    sees arrays that accept only the analytic numpy ufuncs (see `_ANALYTIC_UFUNCS`).

    An operator may also define its own vector-Jacobian product:
        def vjp(self, grad, output, *inputs): return (grad_a, grad_b, ...)
    """

    elementwise = False
    _STEP = 1e-30

    def __init__(self, inputs=(), params=()):
        if params:
            raise ValueError(f"{type(self).__name__}: operators have no parameters; use a Module")
        super().__init__(list(inputs), type(self).__name__)

    def _op_impl(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define _op_impl(self, ...)")

    def _vjp_dispatch(self, grad, output, inputs, needs):
        own = getattr(type(self), "vjp", None)
        if own is not None:
            grads = own(self, grad, output, *inputs)
            if not isinstance(grads, (tuple, list)):
                grads = (grads,)
            return [g if need else None for g, need in zip(grads, needs)]
        return [self._complex_step(grad, output, inputs, i) if need else None for i, need in enumerate(needs)]

    def _complex_step(self, grad, output, inputs, index):
        name = type(self).__name__
        x = np.asarray(inputs[index])
        if x.dtype.kind != "f":
            return None
        base = [np.asarray(v, dtype=np.complex128) for v in inputs]
        grad = np.asarray(grad, dtype=np.float64)
        result = np.zeros(x.shape, dtype=np.float64)
        if self.elementwise:
            base[index] = base[index] + 1j * self._STEP
            out = self._evaluate(base, output)
            jac = np.broadcast_to(np.imag(out) / self._STEP, np.shape(grad))
            result = (grad * jac).reshape(np.broadcast_shapes(grad.shape, x.shape))
            return _sum_to(result, x.shape)
        flat = result.reshape(-1)
        for e in range(x.size):
            probe = base[index].copy().reshape(-1)
            probe[e] += 1j * self._STEP
            args = list(base)
            args[index] = probe.reshape(x.shape)
            out = self._evaluate(args, output)
            flat[e] = np.sum(grad * (np.imag(out) / self._STEP))
        return result

    def _evaluate(self, args, output):
        name = type(self).__name__
        try:
            out = np.asarray(self._op_impl(*[np.asarray(a).view(_ComplexProbe) for a in args]))
        except _NonAnalytic as error:
            raise TypeError(f"{name}: _op_impl uses numpy.{error.ufunc}, which is not analytic, so its derivative "
                            "cannot be derived by the complex step; define vjp(self, grad, output, *inputs)") from None
        except TypeError as error:
            raise TypeError(f"{name}: _op_impl does not accept complex inputs, so its derivative cannot be "
                            f"derived by the complex step ({error}); define vjp(self, grad, output, *inputs)") from error
        if not np.iscomplexobj(out):
            raise TypeError(f"{name}: _op_impl dropped the imaginary part of a complex input (a non-analytic "
                            "function such as abs, maximum, sign or a comparison?); its derivative cannot be "
                            "derived by the complex step: define vjp(self, grad, output, *inputs)")
        real = np.real(out)
        # The forward ran in the output's precision, the complex step in float64.
        rtol, atol = (1e-9, 1e-12) if np.asarray(output).dtype != np.float32 else (1e-5, 1e-6)
        if real.shape != np.shape(output) or not np.allclose(real, output, rtol=rtol, atol=atol, equal_nan=True):
            raise TypeError(f"{name}: _op_impl gives different values on complex inputs (a non-analytic "
                            "function?); define vjp(self, grad, output, *inputs)")
        return out


# numpy ufuncs that are analytic (holomorphic where defined): the complex step differentiates
# them exactly. Others (absolute, maximum, sign, comparisons, floor, conjugate ...) are refused.
_ANALYTIC_UFUNCS = frozenset({
    "add", "subtract", "multiply", "divide", "true_divide", "negative", "positive", "reciprocal",
    "power", "float_power", "square", "sqrt", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
    "arctanh", "matmul", "deg2rad", "rad2deg", "degrees", "radians",
})


class _NonAnalytic(TypeError):
    def __init__(self, ufunc):
        super().__init__(f"numpy.{ufunc} is not analytic")
        self.ufunc = ufunc


class _ComplexProbe(np.ndarray):
    """The complex inputs `_op_impl` sees during the complex step: they refuse non-analytic ufuncs."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc.__name__ not in _ANALYTIC_UFUNCS:
            raise _NonAnalytic(ufunc.__name__)
        inputs = tuple(x.view(np.ndarray) if isinstance(x, _ComplexProbe) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, _ComplexProbe) else x for x in kwargs["out"])
        result = getattr(ufunc, method)(*inputs, **kwargs)
        return np.asarray(result).view(_ComplexProbe) if isinstance(result, (np.ndarray, np.generic)) else result


def _sum_to(x, shape):
    """Sums a broadcast array back to `shape` (the adjoint of broadcasting)."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return np.sum(x, axis=axes).reshape(shape) if axes else x.reshape(shape)


class no_grad:
    """Context manager: operators compute values but record no graph."""

    def __enter__(self):
        self._guard = _fw._NoGradGuard()
        return self

    def __exit__(self, *exc):
        del self._guard
        return False


__all__ = ["Module", "Operator", "Variable", "Parameter", "Input", "Node", "ModuleGraph", "Function",
           "no_grad", "gradcheck"]
