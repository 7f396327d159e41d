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
import functools
import inspect

import numpy as np

from .._zkynet import framework as _fw
from . import _node_operators
from .op import stop_gradient

Variable = _fw.Variable
Parameter = _fw.Parameter
Input = _fw.Input
Node = _fw.Node
ModuleGraph = _fw.ModuleGraph
Function = _fw.Function
jacobian_limit = _fw.jacobian_limit
set_jacobian_limit = _fw.set_jacobian_limit

ModuleGraph.shape = property(lambda g: g.root.shape, doc="the root's shape")
ModuleGraph.dtype = property(lambda g: g.root.dtype, doc="the root's dtype")
ModuleGraph.ndim = property(lambda g: g.root.ndim, doc="the root's number of dimensions")
_node_operators.install(Node, ModuleGraph, Parameter)
_node_operators.install(Variable, with_shape=False)  # a Variable has a value only inside a call


def gradcheck(f, inputs, eps=1e-6, rtol=1e-5, atol=1e-7, dtype=None):
    """(ok, message): f's reverse-mode Jacobian at `inputs` against central differences.

    Floating inputs are converted to `dtype` ('float64' by default, so differences are
    accurate); a function with float32 parameters then fails with an error that says so:
    check with dtype='float32' and looser eps/rtol/atol, or convert the module first.
    """
    return _fw.gradcheck(f, list(inputs), eps, rtol, atol, dtype)


# ---- function transforms (JAX's names): one graph per call, numpy results ------------------

def _argnums(argnums, count, name):
    single = isinstance(argnums, int)
    nums = [argnums] if single else list(argnums)
    if not nums:
        raise ValueError(f"{name}: argnums is empty")
    for k in nums:
        if not isinstance(k, int) or not -count <= k < count:
            raise ValueError(f"{name}: argnums names argument {k} of a call with {count} arguments")
    return nums, single


def grad(fun, argnums=0):
    """The gradient of a scalar-valued `fun(*args)` (written with op.* on its arguments).

        df = cg.grad(lambda x, y: op.sum(x * op.exp(y)), argnums=(0, 1))
        dx, dy = df(a, b)

    An int argnums gives one array, a tuple a tuple of arrays. Each call grounds one graph;
    parameters `fun` uses accumulate nothing (torch.autograd.grad's rule).
    """
    def grad_fun(*args):
        nums, single = _argnums(argnums, len(args), "grad")
        grads = _fw._grad(fun, list(args), nums)
        return grads[0] if single else tuple(grads)
    return grad_fun


def value_and_grad(fun, argnums=0):
    """Like grad, returning (fun(*args), gradient(s))."""
    def value_and_grad_fun(*args):
        nums, single = _argnums(argnums, len(args), "value_and_grad")
        value, grads = _fw._value_and_grad(fun, list(args), nums)
        return value, (grads[0] if single else tuple(grads))
    return value_and_grad_fun


def jacobian(fun, argnums=0):
    """The full Jacobian(s) of `fun(*args)`: shape out.shape + arg.shape, one reverse pass per
    output element."""
    def jacobian_fun(*args):
        nums, single = _argnums(argnums, len(args), "jacobian")
        jacobians = _fw._jacobian(fun, list(args), nums)
        return jacobians[0] if single else tuple(jacobians)
    return jacobian_fun


def vjp(fun, *primals):
    """(fun(*primals), pullback): pullback(cotangent) gives one vector-Jacobian product per
    primal, as a tuple; it may be called many times on the one graph."""
    value, pull = _fw._vjp(fun, list(primals))
    return value, lambda cotangent: tuple(pull(cotangent))


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

    `nondiff` lists the arguments no gradient flows to (Yota's @nodiff), e.g. `nondiff = (1,)`
    for an integer exponent: vjp is never asked for them, and they alone do not make the output
    require a gradient.
    """

    elementwise = False
    nondiff = ()
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

    def _vjp_signature(self):
        names = [v.name for v in self.inputs]
        return (f"def vjp(self, grad, output, {', '.join(names)}):\n"
                f"        return ({''.join('grad_' + n + ', ' for n in names)})  # one per input, None for none")

    def _evaluate(self, args, output):
        name = type(self).__name__
        rule = "define vjp in the class:\n    " + self._vjp_signature()
        try:
            out = np.asarray(self._op_impl(*[np.asarray(a).view(_ComplexProbe) for a in args]))
        except _NonAnalytic as error:
            raise TypeError(f"{name}: _op_impl uses numpy.{error.ufunc}, which is not analytic, so its derivative "
                            f"cannot be derived by the complex step; {rule}") from None
        except TypeError as error:
            raise TypeError(f"{name}: _op_impl does not accept complex inputs, so its derivative cannot be "
                            f"derived by the complex step ({error}); {rule}") from error
        if not np.iscomplexobj(out):
            raise TypeError(f"{name}: _op_impl dropped the imaginary part of a complex input (a non-analytic "
                            "function such as abs, maximum, sign or a comparison?); its derivative cannot be "
                            f"derived by the complex step: {rule}")
        real = np.real(out)
        # The forward ran in the output's precision, the complex step in float64.
        rtol, atol = (1e-9, 1e-12) if np.asarray(output).dtype != np.float32 else (1e-5, 1e-6)
        if real.shape != np.shape(output) or not np.allclose(real, output, rtol=rtol, atol=atol, equal_nan=True):
            raise TypeError(f"{name}: _op_impl gives different values on complex inputs (a non-analytic "
                            f"function?); {rule}")
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


class CustomVjp:
    """A function with its own derivative rule (see custom_vjp)."""

    def __init__(self, fn, name=None, nondiff_argnums=()):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom_vjp")
        self.nondiff_argnums = tuple(int(i) for i in nondiff_argnums)
        self.fwd = self.bwd = None
        functools.update_wrapper(self, fn)

    def defvjp(self, fwd, bwd):
        """Sets the rule: fwd(*args) -> (output, residuals); bwd(residuals, grad) -> one gradient
        per argument (None for none). Returns fwd, so that it can decorate."""
        if not callable(fwd) or not callable(bwd):
            raise TypeError(f"custom_vjp '{self.name}': defvjp(fwd, bwd) needs two callables")
        self.fwd, self.bwd = fwd, bwd
        return fwd

    def __call__(self, *args):
        return _fw._call_custom_vjp(self, *args)

    def __repr__(self):
        return f"custom_vjp({self.name}{', no rule yet' if self.fwd is None else ''})"

    def _argument_names(self):
        try:
            return [p.name for p in inspect.signature(self.fn).parameters.values()]
        except (TypeError, ValueError):
            return ["x"]

    def _rule(self):
        names = self._argument_names()
        args = ", ".join(names)
        grads = "".join(f"grad_{n}, " for n in names)
        return (f"    def {self.name}_fwd({args}):\n        return output, residuals\n"
                f"    def {self.name}_bwd(residuals, grad):\n        return ({grads})  # one per argument, None for none\n"
                f"    {self.name}.defvjp({self.name}_fwd, {self.name}_bwd)")

    def _missing_rule_message(self):
        return f"custom_vjp '{self.name}' has no derivative rule; define one:\n{self._rule()}"

    def _wrong_count_message(self, count):
        return (f"custom_vjp '{self.name}': bwd returned {count} gradient(s) for "
                f"{len(self._argument_names())} argument(s); the rule is\n{self._rule()}")


def custom_vjp(fn=None, *, name=None, nondiff_argnums=()):
    """JAX's custom_vjp: `fn` (made of zkynet operators) with a derivative rule of your own.

        f = cg.custom_vjp(fn, name="log1pexp")      # or @cg.custom_vjp above a def
        f.defvjp(fwd, bwd)                          # fwd(*args) -> (output, residuals)
                                                    # bwd(residuals, grad) -> (grad_arg0, ...)

    In a graph, f records one node named `name` whose backward is bwd; fwd and bwd run without
    recording (their operators compute values), bwd gets the output's gradient as an array and
    returns one gradient per argument (an array, a node, or None for none). Outside a graph f is
    fn itself. nondiff_argnums: arguments no gradient flows to (Yota's @nodiff)."""
    if fn is None:
        return lambda f: CustomVjp(f, name, nondiff_argnums)
    return CustomVjp(fn, name, nondiff_argnums)


__all__ = ["Module", "Operator", "Variable", "Parameter", "Input", "Node", "ModuleGraph", "Function",
           "no_grad", "gradcheck", "grad", "value_and_grad", "jacobian", "vjp", "jacobian_limit",
           "set_jacobian_limit", "custom_vjp", "CustomVjp", "stop_gradient", "compile", "CompiledModule",
           "Schedule"]


# ---- capture and replay (framework/include/zkynet/framework/compile.h) ---------------------

CompiledModule = _fw.CompiledModule
Schedule = _fw.Schedule


def compile(target, check=False, cache_size=8, memory_plan=True):  # noqa: A001 (the issue's name, like torch.compile)
    """Capture and replay: a callable with `target`'s signature whose first call with a given
    signature runs dynamically and records the tape, and whose later calls replay it.

        fast = cg.compile(model)                 # a Module (put the loss inside it)
        g = fast(x, y)                           # a ModuleGraph: .value, .back(), .grad(...)
        fast = cg.compile(lambda a, b: op.sum(a * op.exp(b)))
        g = fast(a, b); g.back(); g.grad(fast.input("a"))

        def train_step(x, y):                    # a whole training step
            opt.zero_grad()
            loss = op.cross_entropy(model(x), y)
            loss.back()
            opt.step()
            return loss                          # return a node
        step = cg.compile(train_step)            # replays: forward, back(), the update

    A step's effects outside its graph (zero_grad, back(), an optimizer's step, a scheduler's
    step, clip_grad_norm) are recorded at capture and replayed in order (schedule.effects); an
    optimizer reads its learning rate at each replay, so schedulers work. Effects of your own
    Python code (writing a parameter by hand) happen at capture only.

    A replay runs no Python (but for the forwards of Python-defined operators and custom_vjp
    rules in the graph, which it runs again): the captured operators are recomputed from the
    new inputs and the parameters' current values, bit for bit as a dynamic call computes them. The signature
    (input shapes, dtypes, devices, requires_grad; training mode; the module tree's structure)
    picks one of `cache_size` schedules (LRU). check=True re-traces every call and raises
    RuntimeError at the first node where the graph differs (value-dependent control flow) or
    where a value frozen at capture changed.

    What capture cannot see: Python control flow on values (the captured branch is replayed
    unless check=True); Python numbers and attributes a call reads are constants frozen at
    capture (so is float(node) or .value read during capture); every graph a replay returns is
    overwritten by the next call of that signature (copy values you keep); operators applied to
    the result outside the module (a loss) are refused at the next call (compile a module that
    computes the loss); stateful recurrent layers and dropout in training mode are refused.
    Calls under no_grad, inside another module's call, or with nodes as arguments run
    dynamically. check=True on a step compares its effects too and runs them once (the trace's).

    memory_plan: the first replay records its buffer requests; later replays take the buffers
    that live only within the replay (back()'s gradients, kernels' scratch) from one block
    planned by lifetime (schedule.memory_plan). Values that outlive it (node values, gradients,
    optimizer state) come from the caching allocator as before. A replay that departs from the
    plan drops it, never corrupting a buffer.
    Not in this version: fusion, CSE, dead-node elimination, CUDA Graphs.
    """
    if isinstance(target, _fw.ModuleBase):
        return _fw.CompiledModule(target, check, cache_size, memory_plan)
    if not callable(target):
        raise TypeError(f"compile: expected a Module or a function of nodes, got '{type(target).__name__}'")
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        raise TypeError("compile: cannot read the function's parameters; wrap it in a cg.Module") from None
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise TypeError("compile: the function must take fixed positional arguments (no *args, **kwargs or "
                        "keyword-only ones): each becomes an input of the compiled module")
    name = getattr(target, "__name__", "function")

    def body(*args):
        out = target(*args)
        if out is None:
            raise TypeError(f"compile({name}): the function returned None; return a node (a training step: its "
                            "loss), which each call of the compiled function returns")
        return out

    module = _fw._Lambda(body, [p.name for p in params], "<lambda>" if name == "<lambda>" else name)
    return _fw.CompiledModule(module, check, cache_size, memory_plan)
