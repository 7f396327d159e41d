"""Every operator at extreme inputs against PyTorch: no silent wrong result.

For each operator in zkynet's Python operator list (op.__all__), each extreme input (±1e3,
±1e30, 0, ±inf, NaN) and each floating dtype, the table below places the extreme value in an
ordinary operand and compares zkynet's value and vector-Jacobian product (the gradient for
the same seed) with torch's, element by element:
  * where torch's result is finite, ours is finite and equal within the dtype's tolerance;
  * where torch's is ±inf, ours is the same infinity;
  * where torch's is NaN, ours is NaN.
(±1e3 lies past exp's range in both dtypes: sigmoid's gradient used to be NaN from -710 in
float64, -89 in float32.) In float32, torch's float64 result on the same values, rounded to
float32, is accepted too: torch computes some float32 operators in float32 throughout and
overflows inside where the answer is representable (layer_norm and batch_norm of a row holding
1e30 square it: NaN or 0 in torch float32, the float64 answer in zkynet, which normalizes in
double).
"""
import math

import numpy as np
import pytest

from zkynet.framework import cg, op

torch = pytest.importorskip("torch")
F = torch.nn.functional

EXTREMES = [1e3, -1e3, 1e30, -1e30, 0.0, math.inf, -math.inf, math.nan]
DTYPES = [np.float32, np.float64]
# (rtol, atol) per dtype; atol covers values torch computes as tiny and we as 0, or back.
TOLERANCE = {np.float32: (2e-5, 1e-6), np.float64: (1e-9, 1e-12)}


# ---- operands, each holding the extreme value `v` once ------------------------------------------

def vec(v, dt):  # (4,): the extreme at index 1
    return np.array([0.5, v, -1.5, 2.0], dt)


def pos(v, dt):  # (4,) with positive ordinary entries (pow's base, log, sqrt)
    return np.array([0.5, v, 1.5, 2.0], dt)


def other(dt):  # (4,): the ordinary second operand
    return np.array([1.25, -2.0, 0.75, 3.0], dt)


def mat(v, dt):  # (2, 3): the extreme in row 0, column 1
    return np.array([[0.5, v, -1.5], [2.0, 1.0, -0.5]], dt)


def mat_other(dt, shape=(2, 3)):
    return (np.arange(np.prod(shape), dtype=dt).reshape(shape) - 2.5) / 4


def image(v, dt):  # (1, 2, 4, 4): the extreme at channel 0, (1, 2)
    x = (np.arange(32, dtype=dt).reshape(1, 2, 4, 4) % 7 - 3) / 2
    x[0, 0, 1, 2] = v
    return x


def kernel(dt):  # conv2d weight (2, 2, 2, 2)
    return (np.arange(16, dtype=dt).reshape(2, 2, 2, 2) % 5 - 2) / 3


def kernel_with(v, dt):
    w = kernel(dt)
    w[1, 0, 1, 0] = v
    return w


# ---- the table: op name -> cases (id, inputs(v, dtype), zkynet f, torch f) ----------------------
# Inputs are the differentiable operands; anything else (targets, indices, options) is fixed
# inside the functions.

def unary(name, torch_f, operand=vec):
    return [(name, lambda v, dt: [operand(v, dt)], getattr(op, name), torch_f)]


def binary(name, torch_f, zk_f=None, first=vec, second=other):
    zk_f = zk_f or getattr(op, name)
    return [(name + "[a]", lambda v, dt: [first(v, dt), second(dt)], zk_f, torch_f),
            (name + "[b]", lambda v, dt: [second(dt), first(v, dt)], zk_f, torch_f)]


I64 = np.int64


def labels():
    return np.array([1, 0], I64)  # row 0's target is the extreme logit


def labels_other():
    return np.array([2, 0], I64)  # row 0's target is an ordinary logit


TABLE = {
    "add": binary("add", torch.add),
    "sub": binary("sub", torch.sub),
    "mult": binary("mult", torch.mul),
    "div": binary("div", torch.div),
    "pow": [("pow[base]", lambda v, dt: [pos(v, dt), np.array([2.0, 2.5, 0.5, -1.0], dt)], op.pow, torch.pow),
            ("pow[exponent]", lambda v, dt: [np.array([0.5, 1.5, 2.0, 3.0], dt), vec(v, dt)], op.pow, torch.pow),
            ("pow[negative base]", lambda v, dt: [np.array([-1.5, -2.0, 0.0, 2.0], dt), vec(v, dt)], op.pow,
             torch.pow)],
    "matmul": binary("matmul", torch.matmul, first=mat, second=lambda dt: mat_other(dt, (3, 2))),
    "linear": [("linear[x]", lambda v, dt: [mat(v, dt), mat_other(dt, (4, 3)), np.ones(4, dt)], op.linear, F.linear),
               ("linear[weight]", lambda v, dt: [mat_other(dt, (2, 3)), mat(v, dt), np.ones(2, dt)], op.linear,
                F.linear)],
    "dot": binary("dot", torch.dot),
    "neg": unary("neg", torch.neg),
    "square": unary("square", torch.square),
    "exp": unary("exp", torch.exp),
    "log": unary("log", torch.log, operand=pos) + [("log[negative]", lambda v, dt: [vec(v, dt)], op.log, torch.log)],
    "sqrt": unary("sqrt", torch.sqrt, operand=pos) + [("sqrt[negative]", lambda v, dt: [vec(v, dt)], op.sqrt,
                                                       torch.sqrt)],
    "tanh": unary("tanh", torch.tanh),
    "relu": unary("relu", torch.relu),
    "abs": unary("abs", torch.abs),
    "sigmoid": unary("sigmoid", torch.sigmoid),
    "sum": [("sum", lambda v, dt: [mat(v, dt)], op.sum, torch.sum),
            ("sum[axis]", lambda v, dt: [mat(v, dt)], lambda x: op.sum(x, 1), lambda x: torch.sum(x, 1))],
    "mean": [("mean", lambda v, dt: [mat(v, dt)], op.mean, torch.mean),
             ("mean[axis]", lambda v, dt: [mat(v, dt)], lambda x: op.mean(x, 0), lambda x: torch.mean(x, 0))],
    "reshape": [("reshape", lambda v, dt: [mat(v, dt)], lambda x: op.reshape(x, [3, 2]),
                 lambda x: torch.reshape(x, (3, 2)))],
    "transpose": [("transpose", lambda v, dt: [mat(v, dt)], op.transpose, lambda x: torch.transpose(x, -2, -1))],
    "softmax": [("softmax", lambda v, dt: [mat(v, dt)], op.softmax, lambda x: F.softmax(x, -1)),
                ("softmax[dim 0]", lambda v, dt: [mat(v, dt)], lambda x: op.softmax(x, 0),
                 lambda x: F.softmax(x, 0))],
    "log_softmax": [("log_softmax", lambda v, dt: [mat(v, dt)], op.log_softmax, lambda x: F.log_softmax(x, -1)),
                    ("log_softmax[dim 0]", lambda v, dt: [mat(v, dt)], lambda x: op.log_softmax(x, 0),
                     lambda x: F.log_softmax(x, 0))],
    "logsumexp": [("logsumexp", lambda v, dt: [mat(v, dt)], lambda x: op.logsumexp(x, [1]),
                   lambda x: torch.logsumexp(x, 1)),
                  ("logsumexp[all]", lambda v, dt: [mat(v, dt)], lambda x: op.logsumexp(x, [0, 1]),
                   lambda x: torch.logsumexp(x, (0, 1)))],
    "cross_entropy": [("cross_entropy[target]", lambda v, dt: [mat(v, dt)], lambda x: op.cross_entropy(x, labels()),
                       lambda x: F.cross_entropy(x, torch.from_numpy(labels()))),
                      ("cross_entropy[other]", lambda v, dt: [mat(v, dt)],
                       lambda x: op.cross_entropy(x, labels_other()),
                       lambda x: F.cross_entropy(x, torch.from_numpy(labels_other())))],
    "nll_loss": [("nll_loss", lambda v, dt: [mat(v, dt)], lambda x: op.nll_loss(x, labels()),
                  lambda x: F.nll_loss(x, torch.from_numpy(labels())))],
    "mse_loss": binary("mse_loss", F.mse_loss),
    "binary_cross_entropy_with_logits": [
        ("bce_with_logits[input, target 1]", lambda v, dt: [vec(v, dt), np.array([0.0, 1.0, 0.5, 1.0], dt)],
         op.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
        ("bce_with_logits[input, target 0]", lambda v, dt: [vec(v, dt), np.array([1.0, 0.0, 0.5, 1.0], dt)],
         op.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
        ("bce_with_logits[target]", lambda v, dt: [other(dt), vec(v, dt)],
         op.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits)],
    "cat": [("cat", lambda v, dt: [vec(v, dt), other(dt)], lambda a, b: op.cat([a, b]), lambda a, b: torch.cat([a, b]))],
    "stack": [("stack", lambda v, dt: [vec(v, dt), other(dt)], lambda a, b: op.stack([a, b], 1),
               lambda a, b: torch.stack([a, b], 1))],
    "split": [("split", lambda v, dt: [vec(v, dt)], lambda x: op.split(x, 2)[0], lambda x: torch.split(x, 2)[0])],
    "slice": [("slice", lambda v, dt: [vec(v, dt)], lambda x: op.slice(x, 0, 1, 4, 2), lambda x: x[1:4:2])],
    "index_select": [("index_select", lambda v, dt: [mat(v, dt)],
                      lambda x: op.index_select(x, 1, np.array([1, 0, 1], I64)),
                      lambda x: torch.index_select(x, 1, torch.tensor([1, 0, 1])))],
    "gather": [("gather", lambda v, dt: [mat(v, dt)], lambda x: op.gather(x, 1, np.array([[1, 1], [0, 2]], I64)),
                lambda x: torch.gather(x, 1, torch.tensor([[1, 1], [0, 2]])))],
    "embedding": [("embedding", lambda v, dt: [mat(v, dt)], lambda w: op.embedding(np.array([0, 1, 0], I64), w),
                   lambda w: F.embedding(torch.tensor([0, 1, 0]), w))],
    "where": [("where[a]", lambda v, dt: [vec(v, dt), other(dt)],
               lambda a, b: op.where(np.array([True, True, False, True]), a, b),
               lambda a, b: torch.where(torch.tensor([True, True, False, True]), a, b)),
              ("where[not taken]", lambda v, dt: [vec(v, dt), other(dt)],
               lambda a, b: op.where(np.array([True, False, False, True]), a, b),
               lambda a, b: torch.where(torch.tensor([True, False, False, True]), a, b))],
    "clamp": [("clamp", lambda v, dt: [vec(v, dt)], lambda x: op.clamp(x, -1.0, 1.0),
               lambda x: torch.clamp(x, -1.0, 1.0)),
              ("clamp[min]", lambda v, dt: [vec(v, dt)], lambda x: op.clamp(x, min=0.0),
               lambda x: torch.clamp(x, min=0.0))],
    "maximum": binary("maximum", torch.maximum),
    "minimum": binary("minimum", torch.minimum),
    "max": [("max", lambda v, dt: [mat(v, dt)], lambda x: op.max(x, 1), lambda x: torch.max(x, 1).values),
            ("max[dim 0]", lambda v, dt: [mat(v, dt)], lambda x: op.max(x, 0), lambda x: torch.max(x, 0).values)],
    "argmax": [("argmax", lambda v, dt: [mat(v, dt)], lambda x: op.argmax(x, 1), lambda x: torch.argmax(x, 1))],
    "var": [("var", lambda v, dt: [mat(v, dt)], lambda x: op.var(x, 1), lambda x: torch.var(x, 1)),
            ("var[all, biased]", lambda v, dt: [mat(v, dt)], lambda x: op.var(x, unbiased=False),
             lambda x: torch.var(x, unbiased=False))],
    "std": [("std", lambda v, dt: [mat(v, dt)], lambda x: op.std(x, 1), lambda x: torch.std(x, 1)),
            ("std[all, biased]", lambda v, dt: [mat(v, dt)], lambda x: op.std(x, unbiased=False),
             lambda x: torch.std(x, unbiased=False))],
    "conv2d": [("conv2d[input]", lambda v, dt: [image(v, dt), kernel(dt), np.array([0.5, -0.5], dt)],
                lambda x, w, b: op.conv2d(x, w, b, padding=1), lambda x, w, b: F.conv2d(x, w, b, padding=1)),
               ("conv2d[weight]", lambda v, dt: [image(0.25, dt), kernel_with(v, dt)],
                lambda x, w: op.conv2d(x, w, stride=2), lambda x, w: F.conv2d(x, w, stride=2))],
    "max_pool2d": [("max_pool2d", lambda v, dt: [image(v, dt)], lambda x: op.max_pool2d(x, 2),
                    lambda x: F.max_pool2d(x, 2)),
                   ("max_pool2d[3x3 stride 1 padding 1]", lambda v, dt: [image(v, dt)],
                    lambda x: op.max_pool2d(x, 3, stride=1, padding=1),
                    lambda x: F.max_pool2d(x, 3, stride=1, padding=1))],
    "avg_pool2d": [("avg_pool2d", lambda v, dt: [image(v, dt)], lambda x: op.avg_pool2d(x, 2),
                    lambda x: F.avg_pool2d(x, 2)),
                   ("avg_pool2d[3x3 padding 1]", lambda v, dt: [image(v, dt)],
                    lambda x: op.avg_pool2d(x, 3, stride=1, padding=1),
                    lambda x: F.avg_pool2d(x, 3, stride=1, padding=1))],
    "layer_norm": [("layer_norm", lambda v, dt: [mat(v, dt), np.array([1.0, 2.0, 0.5], dt), np.zeros(3, dt)],
                    lambda x, w, b: op.layer_norm(x, [3], w, b), lambda x, w, b: F.layer_norm(x, [3], w, b))],
    "batch_norm": [("batch_norm", lambda v, dt: [mat(v, dt).T.copy(), np.array([1.0, 2.0], dt), np.zeros(2, dt)],
                    lambda x, w, b: op.batch_norm(x, weight=w, bias=b, training=True),
                    lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True))],
    "dropout": [("dropout[eval]", lambda v, dt: [vec(v, dt)], lambda x: op.dropout(x, 0.5, False),
                 lambda x: F.dropout(x, 0.5, False)),
                ("dropout[p=0]", lambda v, dt: [vec(v, dt)], lambda x: op.dropout(x, 0.0, True),
                 lambda x: F.dropout(x, 0.0, True)),
                ("dropout[p=1]", lambda v, dt: [vec(v, dt)], lambda x: op.dropout(x, 1.0, True),
                 lambda x: F.dropout(x, 1.0, True))],
    # Comparisons: masks of 1/0 in the operands' dtype against torch's bools (values only).
    "greater": [("greater", lambda v, dt: [vec(v, dt), other(dt)], op.greater, torch.gt)],
    "greater_equal": [("greater_equal", lambda v, dt: [vec(v, dt), vec(v, dt)], op.greater_equal, torch.ge)],
    "less": [("less", lambda v, dt: [vec(v, dt), other(dt)], op.less, torch.lt)],
    "less_equal": [("less_equal", lambda v, dt: [other(dt), vec(v, dt)], op.less_equal, torch.le)],
    "equal": [("equal", lambda v, dt: [vec(v, dt), vec(v, dt)], op.equal, torch.eq)],
    "not_equal": [("not_equal", lambda v, dt: [vec(v, dt), vec(v, dt)], op.not_equal, torch.ne)],
    # No gradient through the stopped operand (torch: detach), b's gradient is a's value.
    "stop_gradient": [("stop_gradient", lambda v, dt: [vec(v, dt), other(dt)],
                       lambda a, b: op.stop_gradient(a) * b, lambda a, b: a.detach() * b)],
    "detach": [("detach", lambda v, dt: [vec(v, dt), other(dt)], lambda a, b: op.detach(a) * b,
                lambda a, b: a.detach() * b)],
    "bmm": [("bmm[input]", lambda v, dt: [mat(v, dt)[None], mat_other(dt, (1, 3, 2))], op.bmm, torch.bmm),
            ("bmm[mat2]", lambda v, dt: [mat_other(dt, (1, 3, 2)), mat(v, dt)[None]], op.bmm, torch.bmm)],
    "gelu": [("gelu", lambda v, dt: [vec(v, dt)], op.gelu, F.gelu),
             ("gelu[tanh]", lambda v, dt: [vec(v, dt)], lambda x: op.gelu(x, approximate="tanh"),
              lambda x: F.gelu(x, approximate="tanh"))],
    # The extreme in the query (then the key), against the math path softmax(q k^T / sqrt(E)) v.
    "scaled_dot_product_attention": [
        ("sdpa[query]", lambda v, dt: [mat(v, dt), mat_other(dt, (4, 3)), mat_other(dt, (4, 2))],
         op.scaled_dot_product_attention, lambda q, k, v: torch.softmax(q @ k.T / math.sqrt(3), -1) @ v),
        ("sdpa[key]", lambda v, dt: [mat_other(dt), mat(v, dt), mat_other(dt, (2, 2))],
         op.scaled_dot_product_attention, lambda q, k, v: torch.softmax(q @ k.T / math.sqrt(3), -1) @ v)],
}

CASES = [case for name in TABLE for case in TABLE[name]]


def test_the_table_covers_every_operator_in_the_python_list():
    assert sorted(TABLE) == sorted(op.__all__)


# ---- running one case ---------------------------------------------------------------------------

class _Function(cg.Module):
    def __init__(self, f, n):
        super().__init__(inputs=tuple(cg.Variable(f"x{i}") for i in range(n)))
        self._f = f

    def call(self, *xs):
        return self._f(*xs)


def seed_like(value):
    """A seed without zeros and not uniform (a uniform one hides softmax's gradient)."""
    return ((np.arange(value.size) % 3 + 1) * 0.5).reshape(value.shape).astype(value.dtype)


def run_zkynet(f, inputs):
    m = _Function(f, len(inputs))
    result = m(*inputs)
    value = np.array(result.value)
    if value.dtype.kind != "f":
        return value, None
    result.back(seed_like(value))
    return value, [np.array(result.grad(m.input(f"x{i}"))) for i in range(len(inputs))]


def run_torch(f, inputs):
    xs = [torch.tensor(x, requires_grad=True) for x in inputs]
    out = f(*xs)
    value = out.detach().numpy()
    if not out.dtype.is_floating_point:
        return value, None
    out.backward(torch.from_numpy(seed_like(value)))
    return value, [x.grad.numpy() if x.grad is not None else np.zeros_like(i) for x, i in zip(xs, inputs)]


def agrees(a, b, dt):
    """Our element `a` against torch's `b`: NaN for NaN, the same infinity, else finite and close."""
    if math.isnan(b):
        return math.isnan(a)
    if math.isinf(b):
        return a == b
    rtol, atol = TOLERANCE[dt]
    return math.isfinite(a) and abs(a - b) <= atol + rtol * abs(b)


def mismatches(ours, theirs, dt, theirs_wide=None):
    """Descriptions of the elements where `ours` agrees neither with torch's `theirs` nor with
    torch's float64 result `theirs_wide` (rounded to dt) when given."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape:
        return [f"shape {ours.shape} vs torch {theirs.shape}"]
    if theirs.dtype.kind != "f":
        return [] if np.array_equal(ours, theirs) else [f"{ours.tolist()} vs torch {theirs.tolist()}"]
    with np.errstate(over="ignore"):  # beyond float32's range: inf, as a float32 result would be
        wide = None if theirs_wide is None else np.asarray(theirs_wide).astype(dt)
    bad = []
    for index in np.ndindex(theirs.shape):
        a, b = float(ours[index]), float(theirs[index])
        if not (agrees(a, b, dt) or (wide is not None and agrees(a, float(wide[index]), dt))):
            also = "" if wide is None else f" (float64 {float(wide[index])!r})"
            bad.append(f"[{', '.join(map(str, index))}] {a!r} vs torch {b!r}{also}")
    return bad


@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("v", EXTREMES, ids=[repr(v) for v in EXTREMES])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient_match_torch_at_extreme_inputs(case, v, dt):
    name, make, zk_f, torch_f = case
    inputs = make(v, dt)
    value, grads = run_zkynet(zk_f, inputs)
    t_value, t_grads = run_torch(torch_f, inputs)
    w_value, w_grads = t_value, t_grads
    if dt == np.float32:
        w_value, w_grads = run_torch(torch_f, [x.astype(np.float64) for x in inputs])
    problems = [f"value {p}" for p in mismatches(value, t_value, dt, w_value)]
    if t_grads is not None:
        for i, (g, tg, wg) in enumerate(zip(grads, t_grads, w_grads)):
            problems += [f"gradient of input {i} {p}" for p in mismatches(g, tg, dt, wg)]
    assert not problems, f"{name} at {v!r} ({np.dtype(dt).name}): " + "; ".join(problems)


# ---- window arguments: no silent reinterpretation -----------------------------------------------

_IMAGE = np.ones((1, 1, 4, 4))
_WEIGHT = np.ones((1, 1, 2, 2))


@pytest.mark.parametrize("call, operator, argument", [
    (lambda: op.max_pool2d(_IMAGE, 2, stride=0), "max_pool2d", "stride"),  # used to mean "the kernel size"
    (lambda: op.max_pool2d(_IMAGE, 2, stride=(0, 1)), "max_pool2d", "stride"),
    (lambda: op.max_pool2d(_IMAGE, 2, padding=-1), "max_pool2d", "padding"),
    (lambda: op.max_pool2d(_IMAGE, 2, dilation=0), "max_pool2d", "dilation"),
    (lambda: op.avg_pool2d(_IMAGE, 2, stride=0), "avg_pool2d", "stride"),
    (lambda: op.avg_pool2d(_IMAGE, 2, stride=-1), "avg_pool2d", "stride"),
    (lambda: op.avg_pool2d(_IMAGE, 2, padding=-1), "avg_pool2d", "padding"),
    (lambda: op.conv2d(_IMAGE, _WEIGHT, stride=0), "conv2d", "stride"),
    (lambda: op.conv2d(_IMAGE, _WEIGHT, padding=-1), "conv2d", "padding"),
    (lambda: op.conv2d(_IMAGE, _WEIGHT, dilation=0), "conv2d", "dilation"),
], ids=["max_pool2d stride 0", "max_pool2d stride (0, 1)", "max_pool2d padding -1", "max_pool2d dilation 0",
        "avg_pool2d stride 0", "avg_pool2d stride -1", "avg_pool2d padding -1", "conv2d stride 0",
        "conv2d padding -1", "conv2d dilation 0"])
def test_non_positive_strides_and_dilations_and_negative_padding_are_refused(call, operator, argument):
    with pytest.raises(RuntimeError) as error:  # torch raises RuntimeError too
        call()
    assert operator in str(error.value) and argument in str(error.value)


def test_pooling_without_a_stride_strides_by_the_kernel_size():
    assert op.max_pool2d(_IMAGE, 2).value.shape == (1, 1, 2, 2)
    assert op.avg_pool2d(_IMAGE, (2, 1)).value.shape == (1, 1, 2, 4)
